import KindlingCrypto
import Synchronization

/// Compressed chunks this process checked against their id a moment ago (received from a peer, or read from disk
/// and re-hashed to be served), kept so that serving one again costs no file read, no decompression and no hash.
/// In a swarm a node serves what it just received, often to several peers: re-verifying each serve from disk was
/// half the CPU a byte cost (Specs/store.md, "Reading").
///
/// Invariant 2 holds because what is served from here is exactly the bytes that were verified: they never left
/// memory. Bounded in bytes; the oldest entry leaves first.
final class VerifiedChunkCache: Sendable {
    struct Entry: Sendable {
        var compressed: [UInt8]
        var plainSize: Int
    }

    private struct State {
        var entries: [Digest: Entry] = [:]
        /// Insertion order, oldest at `head`; ids removed early stay here until they reach the head.
        var order: [Digest] = []
        var head = 0
        var bytes = 0
    }

    let capacityBytes: Int
    private let state = Mutex(State())

    init(capacityBytes: Int) {
        self.capacityBytes = capacityBytes
    }

    func entry(_ id: Digest) -> Entry? {
        state.withLock { $0.entries[id] }
    }

    /// Keeps a verified chunk; the caller checked that `compressed` decompresses to bytes whose hash is `id`.
    func insert(_ id: Digest, compressed: [UInt8], plainSize: Int) {
        guard compressed.count <= capacityBytes else { return }
        state.withLock { state in
            guard state.entries[id] == nil else { return }
            state.entries[id] = Entry(compressed: compressed, plainSize: plainSize)
            state.order.append(id)
            state.bytes += compressed.count
            while state.bytes > capacityBytes && state.head < state.order.count {
                let oldest = state.order[state.head]
                state.head += 1
                if let evicted = state.entries.removeValue(forKey: oldest) { state.bytes -= evicted.compressed.count }
            }
            // Drop the consumed prefix once it is most of the array, so appends stay amortised O(1).
            if state.head > 1024 && state.head * 2 > state.order.count {
                state.order.removeFirst(state.head)
                state.head = 0
            }
        }
    }

    /// Forgets chunks whose files were deleted (gc, repair, a discarded batch), so that the cache never serves
    /// what the store no longer holds.
    func remove<S: Sequence<Digest>>(_ ids: S) {
        state.withLock { state in
            for id in ids {
                if let removed = state.entries.removeValue(forKey: id) { state.bytes -= removed.compressed.count }
            }
            // Removed ids linger in `order` until the head reaches them: rebuild it before they outnumber the rest.
            if state.order.count - state.head > 2 * state.entries.count + 64 {
                state.order = state.order[state.head...].filter { state.entries[$0] != nil }
                state.head = 0
            }
        }
    }

    var count: Int { state.withLock { $0.entries.count } }
    var bytes: Int { state.withLock { $0.bytes } }
    /// Ids in the eviction queue, removed ones included: tests check that it stays bounded.
    var orderLength: Int { state.withLock { $0.order.count - $0.head } }
}
