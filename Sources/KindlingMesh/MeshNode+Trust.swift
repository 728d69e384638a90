import Foundation
import KindlingCrypto
public import KindlingManifest
import KindlingStore
import KindlingWire
import Logging
import NIOPosix
import Synchronization

/// A new trust policy, applied at once to a running node.
extension MeshNode {
    /// Applies a new trust policy (a reloaded trust file, a newer trust document). From the moment it is called,
    /// every announcement, fetched manifest and local publish is checked against `policy`. Then every manifest of
    /// the catalog and of the store is judged again: those the policy refuses (revoked key, key no longer listed,
    /// out of scope or validity, withdrawn) leave the catalog, are no longer listed, announced or served (a
    /// GetBody, or a GetChunk for a chunk no kept manifest has, gets "not held"), and their downloads stop; stored
    /// ones it accepts and the catalog lacks join it. Chunks stay on disk until gc. Nobody is struck or banned.
    public func applyTrust(_ policy: TrustPolicy) async {
        trust = policy
        trustGeneration += 1
        let generation = trustGeneration
        let store = self.store
        let catalogued = gossip.catalogHeaders
        let now = Date()
        let judged: (refused: [Digest: String], admitted: [(SignedHeader, Availability?, ChunkIndex?)])
        do {
            // Signature checks and store reads on the I/O pool, off the actor.
            judged = try await pool.runIfActive {
                var refused: [Digest: String] = [:]
                for signed in catalogued {
                    do throws(TrustError) { try policy.evaluate(signed, now: now) } catch {
                        refused[signed.id] = error.description
                    }
                }
                let known = Set(catalogued.map(\.id))
                var admitted: [(SignedHeader, Availability?, ChunkIndex?)] = []
                for summary in try store.manifestSummaries()
                where !known.contains(summary.id) && policy.isTrusted(summary.signed, now: now) {
                    guard summary.hasBody, let manifest = try? store.manifest(summary.id) else {
                        admitted.append((summary.signed, nil, nil))
                        continue
                    }
                    let index = ChunkIndex(manifest: manifest)
                    admitted.append((summary.signed, try Self.holding(of: index, in: store), index))
                }
                return (refused, admitted)
            }
        } catch {
            // The policy is in force for everything new; the catalog is judged again at the next change or start.
            logger.error(
                "could not judge the catalog against the new trust policy", metadata: ["error": "\(error)"])
            return
        }
        // A newer policy arrived meanwhile: its own call judges everything again.
        guard generation == trustGeneration else { return }
        let droppedIndexes = judged.refused.keys.compactMap { indexes[$0] }
        for (signed, _, index) in judged.admitted where gossip.signedHeader(signed.id) == nil {
            if let index { indexes[signed.id] = index }
        }
        applyGossip(
            gossip.trustChanged(
                refused: judged.refused,
                admitted: judged.admitted.map { (signed: $0.0, holding: $0.1, chunks: $0.2?.count) }, now: .now))
        // Chunks only dropped manifests have are withheld; those a kept manifest has are served again.
        let kept = Set(indexes.values.lazy.flatMap { $0.chunks.lazy.map(\.id) })
        withheldChunks.update(
            withhold: droppedIndexes.lazy.flatMap { $0.chunks.lazy.map(\.id) }.filter { !kept.contains($0) },
            release: kept)
        logger.notice(
            "trust policy applied",
            metadata: [
                "keys": "\(policy.trust.keys.count)", "dropped": "\(judged.refused.count)",
                "added": "\(judged.admitted.count)", "catalog": "\(gossip.catalogCount)",
            ])
    }

    /// Resumes the callers of `id`'s download with `error` (the download itself is cancelled separately).
    func failDownloadWaiters(_ id: Digest, _ error: MeshError) {
        guard let record = downloads.removeValue(forKey: id) else { return }
        for waiter in record.waiters { waiter.resume(throwing: error) }
    }

    /// A download task started; `cancel` stops it. One that gossip no longer wants is stopped at once.
    func downloadStarted(_ id: Digest, cancel: @escaping @Sendable () -> Void) {
        guard gossip.isDownloading(id) else { return cancel() }
        downloadCancels[id] = cancel
    }

    /// Says in `status` why the policy in force is not what is configured (nil: it is).
    public func setTrustProblem(_ problem: String?) {
        trustProblem = problem
    }

    /// Every equivocation in the catalog (for status).
    public var equivocations: [Equivocation] { gossip.equivocations }
}

/// Chunk ids not to serve: readable from connection tasks without a hop onto the actor.
final class WithheldChunks: Sendable {
    private let ids = Mutex<Set<Digest>>([])
    private let empty = Atomic<Bool>(true)

    func contains(_ id: Digest) -> Bool {
        if empty.load(ordering: .relaxed) { return false }
        return ids.withLock { $0.contains(id) }
    }

    func update(withhold: some Sequence<Digest>, release: Set<Digest>) {
        ids.withLock { set in
            set.formUnion(withhold)
            if !set.isEmpty && !release.isEmpty { set.subtract(release) }
            empty.store(set.isEmpty, ordering: .relaxed)
        }
    }

    /// The chunks of a manifest we keep (a download's, a local publish's) are served again.
    func release(_ chunks: some Sequence<Digest>) {
        guard !empty.load(ordering: .relaxed) else { return }
        ids.withLock { set in
            for id in chunks { set.remove(id) }
            empty.store(set.isEmpty, ordering: .relaxed)
        }
    }
}
