import Glibc

/// A failed system call on a path: which operation, which path, which errno.
public struct FileError: Error, Equatable, Sendable, CustomStringConvertible {
    public let operation: String
    public let path: String
    public let code: Int32

    /// `code` defaults to the current errno.
    public init(_ operation: String, _ path: String, code: Int32? = nil) {
        self.operation = operation
        self.path = path
        self.code = code ?? errno
    }

    public var isDiskFull: Bool { code == ENOSPC || code == EDQUOT }

    public var description: String {
        if isDiskFull {
            return "no space left on device while \(operation) \(path); free some space and retry"
        }
        return "\(operation) \(path) failed: \(String(cString: strerror(code)))"
    }
}
