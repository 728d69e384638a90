import Glibc

/// A shared hold on a store that keeps garbage collection out while it lives.
///
/// A capture reuses chunks the store already has and only names them in a manifest at the end; a restore reads
/// chunks it checked for at the start. An eviction in between would leave a signed manifest naming a missing
/// chunk, or fail a restore halfway. So both hold a lease, and `collectGarbage` runs only when no lease is held,
/// in this process or any other: the lease is a shared `flock` on `leases.lock`, gc's is exclusive. The kernel
/// drops the lock when its holder dies, so a killed publisher never blocks gc for good.
public final class StoreLease: Sendable {
    private let descriptor: Int32

    /// Takes a shared lease; waits only while a gc is running (gc holds its lock for one pass, not longer).
    init(root: String) throws(StoreError) {
        descriptor = try Self.openLockFile(root: root)
        guard Self.lock(descriptor, LOCK_SH) == 0 else {
            let error = FileError("taking a lease on", root + "/" + Self.fileName)
            close(descriptor)
            throw .file(error)
        }
    }

    deinit { close(descriptor) }

    static let fileName = "leases.lock"

    static func openLockFile(root: String) throws(StoreError) -> Int32 {
        let path = root + "/" + fileName
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw .file(FileError("opening", path)) }
        return descriptor
    }

    /// `flock`, retried on EINTR.
    static func lock(_ descriptor: Int32, _ operation: Int32) -> Int32 {
        while true {
            let result = flock(descriptor, operation)
            if result == 0 || errno != EINTR { return result }
        }
    }
}

/// The exclusive side, held by `collectGarbage` for one pass.
final class GarbageCollectionLock {
    private let descriptor: Int32

    /// Nil when a lease is held and `wait` is false.
    init?(root: String, wait: Bool) throws(StoreError) {
        let descriptor = try StoreLease.openLockFile(root: root)
        if StoreLease.lock(descriptor, LOCK_EX | (wait ? 0 : LOCK_NB)) != 0 {
            let code = errno
            close(descriptor)
            if code == EWOULDBLOCK { return nil }
            throw .file(FileError("locking", root + "/" + StoreLease.fileName, code: code))
        }
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }
}

extension ChunkStore {
    /// A lease that keeps gc from evicting anything until it is released (dropped).
    public func lease() throws(StoreError) -> StoreLease {
        try StoreLease(root: root)
    }
}
