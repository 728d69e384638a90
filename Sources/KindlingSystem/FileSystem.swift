import CKindlingShims
public import Glibc

/// Calls on paths as the caller names them (links in them followed, as the caller chose them): the store's own
/// folders, a user's paths. What a snapshot names goes through `DirectoryDescriptor` instead.
public enum FileSystem {
    /// Creates `path` and its missing parents with mode 0755 (like `mkdir -p`).
    public static func createDirectories(_ path: String, mode: mode_t = 0o755) throws(FileError) {
        if isDirectory(path) { return }
        var prefix = path.hasPrefix("/") ? "/" : ""
        for component in path.split(separator: "/") {
            prefix += component
            if mkdir(prefix, mode) != 0 && errno != EEXIST {
                throw FileError(call: "mkdir", "creating directory", prefix)
            }
            prefix += "/"
        }
        guard isDirectory(path) else {
            throw FileError(call: "lstat", "creating directory", path, errno: .notDirectory)
        }
    }

    /// What lstat (or, with `followingLinks`, stat) says of `path`; nil when nothing is there (ENOENT).
    public static func status(_ path: String, followingLinks: Bool = false) throws(FileError) -> stat? {
        var info = stat()
        guard (followingLinks ? stat(path, &info) : lstat(path, &info)) == 0 else {
            if errno == ENOENT { return nil }
            throw FileError(call: followingLinks ? "stat" : "lstat", "inspecting", path)
        }
        return info
    }

    /// True for a directory, not a link to one.
    public static func isDirectory(_ path: String) -> Bool {
        ((try? status(path)) ?? nil).map { $0.st_mode & S_IFMT == S_IFDIR } ?? false
    }

    /// True when anything is at `path`, a dangling link included.
    public static func exists(_ path: String) -> Bool {
        ((try? status(path)) ?? nil) != nil
    }

    /// Names in a directory, without "." and "..", decoded as UTF-8 (a name that is not becomes U+FFFD).
    public static func contents(of path: String) throws(FileError) -> [String] {
        try rawContents(of: path).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Names in a directory, as the bytes the filesystem holds, without "." and "..".
    public static func rawContents(of path: String) throws(FileError) -> [[UInt8]] {
        guard let directory = opendir(path) else { throw FileError(call: "opendir", "listing", path) }
        return Syscall.names(closing: directory)
    }

    /// The target a symlink holds, as bytes (never followed).
    public static func linkTarget(_ path: String) throws(FileError) -> [UInt8] {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink(path, &buffer, buffer.count - 1)
        guard count >= 0 else { throw FileError(call: "readlink", "reading link", path) }
        return buffer[0..<count].map { UInt8(bitPattern: $0) }
    }

    /// Renames `from` to `to`, replacing what is there (rename(2): atomic on one filesystem).
    public static func rename(_ from: String, to: String, operation: String = "renaming") throws(FileError) {
        guard Glibc.rename(from, to) == 0 else { throw FileError(call: "rename", operation, to) }
    }

    /// Sets the access and modification times of `path` itself (of a link, its own times, never its target's).
    public static func setTimes(_ path: String, nanoseconds: UInt64) throws(FileError) {
        var times = [timespec(nanoseconds: nanoseconds), timespec(nanoseconds: nanoseconds)]
        guard utimensat(AT_FDCWD, path, &times, AT_SYMLINK_NOFOLLOW) == 0 else {
            throw FileError(call: "utimensat", "setting times of", path)
        }
    }

    /// Sets the mode of `path` (following a link: chmod(2) cannot change a link's own mode).
    public static func setMode(_ path: String, _ mode: mode_t) throws(FileError) {
        guard chmod(path, mode) == 0 else { throw FileError(call: "chmod", "setting mode of", path) }
    }

    /// Creates a new directory, mode 0700, named `prefix` and six random characters (mkdtemp); returns its path.
    public static func makePrivateDirectory(prefix: String) throws(FileError) -> String {
        var template = Array((prefix + "XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ $0.baseAddress.flatMap { mkdtemp($0) } }) else {
            throw FileError(call: "mkdtemp", "creating a private directory", prefix + "XXXXXX")
        }
        return String(cString: made)
    }

    /// Removes an empty directory; a missing one is fine.
    public static func removeEmptyDirectory(_ path: String) throws(FileError) {
        guard rmdir(path) == 0 || errno == ENOENT else { throw FileError(call: "rmdir", "removing", path) }
    }

    /// Removes a file or a link (never what it points to); a missing one is fine.
    public static func removeFile(_ path: String) throws(FileError) {
        guard unlink(path) == 0 || errno == ENOENT else { throw FileError(call: "unlink", "removing", path) }
    }

    /// Removes a file or a whole tree, without following symlinks (not even one swapped in midway: every step
    /// below `path`'s parent is relative to an open descriptor). Missing paths are fine.
    public static func removeTree(_ path: String) throws(FileError) {
        var trimmed = path
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        let parent: String
        let name: Substring
        if let slash = trimmed.utf8.lastIndex(of: UInt8(ascii: "/")) {
            parent = slash == trimmed.startIndex ? "/" : String(trimmed[..<slash])
            name = trimmed[trimmed.index(after: slash)...]
        } else {
            parent = "."
            name = trimmed[...]
        }
        guard !name.isEmpty, name != ".", name != ".." else {
            throw FileError(call: "unlinkat", "removing (not a removable name)", path, errno: .invalidArgument)
        }
        let directory: DirectoryDescriptor
        do throws(FileError) {
            directory = try DirectoryDescriptor(opening: parent)
        } catch {
            if error.errno == .noSuchFile { return }
            throw error
        }
        try directory.removeTree(named: Array(name.utf8))
    }

    /// Flushes the whole filesystem that holds `path` (syncfs): one call makes every file written there durable.
    public static func syncFileSystem(containing path: String) throws(FileError) {
        let directory = try DirectoryDescriptor(opening: path)
        guard ckindling_syncfs(directory.descriptor) == 0 else {
            throw FileError(call: "syncfs", "syncing the filesystem of", path)
        }
    }

    /// The process's umask, read without changing it (umask(2) can only be read by setting it, which races with
    /// every other thread creating files).
    public static func currentUmask() -> mode_t {
        if let file = try? PosixFile(opening: "/proc/self/status", flags: O_RDONLY),
            // procfs reports a size of 0, so readAll's size check passes; read until the end instead.
            let bytes = try? readToEnd(file, limit: 1 << 16)
        {
            for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where line.hasPrefix("Umask:") {
                let digits = line.dropFirst("Umask:".count).filter { $0 != "\t" && $0 != " " }
                if let value = mode_t(digits, radix: 8) { return value & 0o777 }
            }
        }
        let mask = umask(0o022)
        umask(mask)
        return mask & 0o777
    }

    private static func readToEnd(_ file: PosixFile, limit: Int) throws(FileError) -> [UInt8] {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while bytes.count < limit {
            let count = try buffer.withUnsafeMutableBytes { raw in
                Result { () throws(FileError) in try file.read(into: raw) }
            }.get()
            if count == 0 { break }
            bytes += buffer[0..<count]
        }
        return bytes
    }

    /// The current directory, or nil when it cannot be read (removed, or too long).
    public static func currentDirectory() -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buffer, buffer.count) != nil else { return nil }
        return String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `path` with every link resolved (realpath), or nil when some part of it is missing.
    public static func resolvingLinks(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// A random lower-case hex name, for temporary files.
    public static func randomName(prefix: String = "") -> String {
        var generator = SystemRandomNumberGenerator()
        let value = generator.next() as UInt64
        return prefix + String(value, radix: 16)
    }
}
