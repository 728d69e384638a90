import Synchronization

/// Reusable zstd decompression contexts for work that hops between threads (serving and receiving chunks on an
/// I/O pool): a context is checked out for one call and returned, so each is used by one thread at a time.
public final class DecompressorPool: @unchecked Sendable {
    // @unchecked: the contexts are only reachable through `lock`; one checked out is owned by a single caller.
    private let lock = Mutex<Void>(())
    private nonisolated(unsafe) var idle: [ZstdDecompressor] = []

    public init() {}

    public func with<R>(_ body: (ZstdDecompressor) throws -> R) rethrows -> R {
        let context = lock.withLock { _ in idle.popLast() } ?? ZstdDecompressor()
        defer { lock.withLock { _ in idle.append(context) } }
        return try body(context)
    }
}
