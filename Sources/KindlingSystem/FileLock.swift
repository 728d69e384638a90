import Glibc

/// An advisory whole-file lock (flock) on a lock file, held while the value lives: the kernel drops it when its
/// holder dies, so a killed process never keeps others out for good.
public final class FileLock: Sendable {
    private let file: Int32
    public let path: String

    public enum Mode: Sendable {
        /// Many holders at once (LOCK_SH).
        case shared
        /// One holder, and no shared one (LOCK_EX).
        case exclusive
    }

    /// Opens (creating with mode 0600) `path` and takes the lock, waiting while a conflicting one is held unless
    /// `wait` is false. Returns nil when `wait` is false and a conflicting lock is held.
    public init?(path: String, mode: Mode, wait: Bool = true) throws(FileError) {
        let descriptor = try Syscall.open(path, flags: O_RDWR | O_CREAT, mode: 0o600)
        let operation = (mode == .shared ? LOCK_SH : LOCK_EX) | (wait ? 0 : LOCK_NB)
        while flock(descriptor, operation) != 0 {
            let code = Errno.current
            if code == .interrupted { continue }
            Glibc.close(descriptor)
            if code == .wouldBlock { return nil }
            throw FileError(call: "flock", mode == .shared ? "taking a shared lock on" : "locking", path, errno: code)
        }
        self.file = descriptor
        self.path = path
    }

    deinit { Glibc.close(file) }
}
