import Glibc
import KindlingSystem

/// Files whose content decides what a node trusts or whom it talks to (the trust file, a mesh secret, a secret
/// key). Like ssh with its key files, Kindling refuses one that another local user could have written: the file,
/// any link on the way to it, and every folder above it must belong to this user or root and be writable by no one
/// else (a sticky folder such as /tmp is fine: others cannot replace what we own in it).
public enum GuardedFile {
    /// Throws when another user could have written `path` or replaced it. A file that does not exist passes: the
    /// caller's read reports it.
    public static func check(_ path: String, what: String) throws(GuardedFileError) {
        let absolute = absolutePath(path)
        guard let info = (try? FileSystem.status(absolute)) ?? nil else { return }
        // The path as given (links included), then the file it resolves to.
        try checkEntry(absolute, info: info, what: what, file: path)
        try checkFolders(above: absolute, what: what, file: path)
        guard info.st_mode & S_IFMT == S_IFLNK else { return }
        guard let resolved = FileSystem.resolvingLinks(absolute),
            let target = (try? FileSystem.status(resolved, followingLinks: true)) ?? nil
        else { return }
        try checkEntry(resolved, info: target, what: what, file: path)
        try checkFolders(above: resolved, what: what, file: path)
    }

    private static func checkEntry(_ path: String, info: stat, what: String, file: String) throws(GuardedFileError) {
        let uid = ProcessControl.userID
        guard info.st_uid == uid || info.st_uid == 0 else {
            throw .foreignOwner(what: what, file: file, path: path, owner: info.st_uid)
        }
        // A link's own mode means nothing; the ownership above is what protects it.
        if info.st_mode & S_IFMT != S_IFLNK, info.st_mode & 0o022 != 0 {
            throw .writableByOthers(what: what, file: file, path: path, mode: UInt32(info.st_mode & 0o7777))
        }
    }

    private static func checkFolders(above path: String, what: String, file: String) throws(GuardedFileError) {
        var folder = parent(of: path)
        while true {
            guard let info = (try? FileSystem.status(folder, followingLinks: true)) ?? nil else { return }
            let uid = ProcessControl.userID
            guard info.st_uid == uid || info.st_uid == 0 else {
                throw .foreignOwner(what: what, file: file, path: folder, owner: info.st_uid)
            }
            if info.st_mode & 0o022 != 0 && info.st_mode & S_ISVTX == 0 {
                throw .writableByOthers(what: what, file: file, path: folder, mode: UInt32(info.st_mode & 0o7777))
            }
            if folder == "/" { return }
            folder = parent(of: folder)
        }
    }

    private static func absolutePath(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        guard let cwd = FileSystem.currentDirectory() else { return path }
        return (cwd == "/" ? "" : cwd) + "/" + path
    }

    private static func parent(of path: String) -> String {
        var path = path
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        guard let slash = path.lastIndex(of: "/") else { return "/" }
        let parent = String(path[..<slash])
        return parent.isEmpty ? "/" : parent
    }
}

public enum GuardedFileError: Error, Equatable, Sendable, CustomStringConvertible {
    case writableByOthers(what: String, file: String, path: String, mode: UInt32)
    case foreignOwner(what: String, file: String, path: String, owner: UInt32)

    public var description: String {
        switch self {
        case .writableByOthers(let what, let file, let path, let mode):
            let subject = path == file ? "\(what) \(file)" : "\(what) \(file): \(path)"
            return "\(subject) is writable by other users (mode \(String(mode, radix: 8))), so another user could have "
                + "changed it; refusing it. Run 'chmod go-w \(path)' if its content is yours"
        case .foreignOwner(let what, let file, let path, let owner):
            let subject = path == file ? "\(what) \(file)" : "\(what) \(file): \(path)"
            return "\(subject) belongs to another user (uid \(owner)), so it could have been changed by them; "
                + "refusing it. Use a copy you own, in a folder only you can write"
        }
    }
}
