import Glibc

/// An errno value as a type (the shape of swift-system's `Errno`): the code a failed call left, its text, and what
/// a user can do about the common ones.
public struct Errno: RawRepresentable, Error, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32

    public init(rawValue: Int32) {
        self.rawValue = rawValue
    }

    /// The calling thread's errno now: read it right after the call that failed, before anything else can change it.
    public static var current: Errno { Errno(rawValue: Glibc.errno) }

    public static let notPermitted = Errno(rawValue: EPERM)
    public static let noSuchFile = Errno(rawValue: ENOENT)
    public static let noSuchProcess = Errno(rawValue: ESRCH)
    public static let interrupted = Errno(rawValue: EINTR)
    public static let permissionDenied = Errno(rawValue: EACCES)
    public static let fileExists = Errno(rawValue: EEXIST)
    public static let crossDevice = Errno(rawValue: EXDEV)
    public static let notDirectory = Errno(rawValue: ENOTDIR)
    public static let isDirectory = Errno(rawValue: EISDIR)
    public static let invalidArgument = Errno(rawValue: EINVAL)
    public static let systemFileTableFull = Errno(rawValue: ENFILE)
    public static let tooManyOpenFiles = Errno(rawValue: EMFILE)
    public static let fileTooLarge = Errno(rawValue: EFBIG)
    public static let noSpace = Errno(rawValue: ENOSPC)
    public static let readOnlyFileSystem = Errno(rawValue: EROFS)
    public static let tooManySymbolicLinks = Errno(rawValue: ELOOP)
    public static let wouldBlock = Errno(rawValue: EWOULDBLOCK)
    public static let diskQuota = Errno(rawValue: EDQUOT)
    public static let notEmpty = Errno(rawValue: ENOTEMPTY)

    /// The C library's text for the code ("No such file or directory").
    public var description: String { String(cString: strerror(rawValue)) }

    /// True for a full disk or an exhausted quota: freeing space and retrying helps.
    public var isDiskFull: Bool { self == .noSpace || self == .diskQuota }

    /// What to do about it, for the codes a user can act on; nil for the rest.
    public var advice: String? {
        switch self {
        case .noSpace, .diskQuota: return "free some space and retry"
        case .noSuchFile: return "check that the path exists"
        case .permissionDenied, .notPermitted: return "check the permissions and owner of the path and its folders"
        case .tooManySymbolicLinks:
            return "a symlink is in the way, and Kindling never follows one there; remove the link"
        case .crossDevice: return "the path leads out of the folder it must stay in (or across filesystems)"
        case .notDirectory: return "a part of the path that must be a folder is a file or a link"
        case .readOnlyFileSystem: return "the filesystem is read-only; use a writable location"
        case .tooManyOpenFiles, .systemFileTableFull:
            return "too many files are open; raise the open-files limit (ulimit -n) or close other programs"
        case .fileExists: return "something already exists at that path; move it away first"
        default: return nil
        }
    }
}
