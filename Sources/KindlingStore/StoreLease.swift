import KindlingSystem

/// A shared hold on a store that keeps garbage collection out while it lives.
///
/// A capture reuses chunks the store already has and only names them in a manifest at the end; a restore reads
/// chunks it checked for at the start. An eviction in between would leave a signed manifest naming a missing
/// chunk, or fail a restore halfway. So both hold a lease, and `collectGarbage` runs only when no lease is held,
/// in this process or any other: the lease is a shared `flock` on `leases.lock`, gc's is exclusive. The kernel
/// drops the lock when its holder dies, so a killed publisher never blocks gc for good.
public final class StoreLease: Sendable {
    private let lock: FileLock

    /// Takes a shared lease; waits only while a gc is running (gc holds its lock for one pass, not longer).
    init(root: String) throws(StoreError) {
        do throws(FileError) {
            // With `wait`, the lock is always taken: nil is never returned.
            guard let lock = try FileLock(path: root + "/" + Self.fileName, mode: .shared) else {
                throw FileError(call: "flock", "taking a lease on", root + "/" + Self.fileName, errno: .wouldBlock)
            }
            self.lock = lock
        } catch {
            throw .file(error)
        }
    }

    static let fileName = "leases.lock"
}

/// The exclusive side, held by `collectGarbage` for one pass.
final class GarbageCollectionLock {
    private let lock: FileLock

    /// Nil when a lease is held and `wait` is false.
    init?(root: String, wait: Bool) throws(StoreError) {
        let path = root + "/" + StoreLease.fileName
        do throws(FileError) {
            guard let lock = try FileLock(path: path, mode: .exclusive, wait: wait) else { return nil }
            self.lock = lock
        } catch {
            throw .file(error)
        }
    }
}

extension ChunkStore {
    /// A lease that keeps gc from evicting anything until it is released (dropped).
    public func lease() throws(StoreError) -> StoreLease {
        try StoreLease(root: root)
    }
}
