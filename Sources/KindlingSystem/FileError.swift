/// A failed system call: which call, what it was doing in words, on which path (or, for a descriptor, the path the
/// caller opened it as), and the typed errno. Its text says what to do where there is something to do.
public struct FileError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The C function that failed (`openat2`, `renameat2`, `setrlimit`).
    public let call: String
    /// What was being done, in words ("opening", "renaming chunk into").
    public let operation: String
    /// The path it was about, as the caller names it (for a descriptor, what it was opened as; empty for none).
    public let path: String
    public let errno: Errno

    /// `errno` defaults to the calling thread's errno now: build the error right after the call that failed.
    public init(call: String, _ operation: String, _ path: String, errno: Errno? = nil) {
        self.call = call
        self.operation = operation
        self.path = path
        self.errno = errno ?? .current
    }

    /// The raw errno value (ENOENT, EFBIG...), for callers that compare with Glibc's constants.
    public var code: Int32 { errno.rawValue }

    public var isDiskFull: Bool { errno.isDiskFull }

    public var description: String {
        let subject = path.isEmpty ? operation : "\(operation) \(path)"
        if isDiskFull {
            return "no space left on device while \(subject); free some space and retry"
        }
        let advice = errno.advice.map { "; \($0)" } ?? ""
        return "\(subject) failed (\(call): \(errno))\(advice)"
    }
}
