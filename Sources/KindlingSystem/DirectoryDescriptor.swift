import CKindlingShims
public import Glibc
import Synchronization

/// An open directory, closed when the value goes away: the anchor for every `*at` call of a restore, a freshness
/// repair or a clean-up, so that what they touch is found from this directory, by bytes, without following any
/// symlink and without leaving it: openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS where the kernel has it, else a
/// walk that opens one component at a time with O_NOFOLLOW | O_DIRECTORY. Paths with an empty, `.` or `..` component
/// are refused outright, and a symlink met on the way is an error (ELOOP), never followed.
///
/// Relative paths are '/'-separated byte strings (a Swift `String` passes its UTF-8 bytes unchanged: two names that
/// differ only in Unicode normalization stay two names).
public final class DirectoryDescriptor: Sendable {
    public let descriptor: Int32
    /// For messages only: what the caller called this directory.
    public let path: String

    /// Opens `path` itself as the caller names it: a target folder may be the user's own link to another disk.
    /// Only what lies below it is reached without following links.
    public convenience init(opening path: String) throws(FileError) {
        let descriptor = try Syscall.open(path, flags: O_RDONLY | O_DIRECTORY, operation: "opening directory")
        self.init(descriptor: descriptor, path: path)
    }

    /// Takes ownership of an open descriptor.
    public init(descriptor: Int32, path: String) {
        self.descriptor = descriptor
        self.path = path
    }

    deinit {
        Glibc.close(descriptor)
    }

    /// The components of a relative path, or nil when it is empty or one of them is empty, `.` or `..`.
    public static func components(_ relative: String) -> [String]? {
        let parts = relative.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard !parts.isEmpty, parts.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." }) else { return nil }
        return parts
    }

    /// `relative` below this directory, for messages.
    func shown(_ relative: some Collection<UInt8>) -> String {
        relative.isEmpty ? path : (path == "/" ? "" : path) + "/" + String(decoding: relative, as: UTF8.self)
    }

    // MARK: Opening below

    /// Opens the directory at `relative` below this one (itself for an empty path), following no symlink on the
    /// way. With `create`, missing directories are made with `mode` (less the umask, as `mkdir -p` does).
    public func openDirectory(
        _ relative: String, create: Bool = false, mode: mode_t = 0o755
    )
        throws(FileError) -> DirectoryDescriptor
    {
        try openDirectory(bytes: Array(relative.utf8), create: create, mode: mode)
    }

    public func openDirectory(
        bytes relative: [UInt8], create: Bool = false, mode: mode_t = 0o755
    )
        throws(FileError) -> DirectoryDescriptor
    {
        let fd = try openBeneath(relative, flags: O_RDONLY | O_DIRECTORY, create: create, mode: mode)
        return DirectoryDescriptor(descriptor: fd, path: shown(relative))
    }

    /// Opens the existing file at `relative` below this directory without following any symlink.
    public func openFile(bytes relative: [UInt8], flags: Int32) throws(FileError) -> PosixFile {
        let fd = try openBeneath(relative, flags: flags, create: false, mode: 0)
        return PosixFile(descriptor: fd, path: shown(relative))
    }

    /// Set once openat2 turned out to be missing (kernel before 5.6) or filtered (seccomp): walk instead.
    static let openat2Unavailable = Atomic<Bool>(false)

    /// Opens `relative` below this directory without following any symlink and without leaving it: openat2 where the
    /// kernel has it, else the component walk. With `create`, missing directories on the way (and the last
    /// component, for a directory) are made with `mode`. A symlink anywhere on the path is an ELOOP or ENOTDIR error.
    private func openBeneath(
        _ relative: [UInt8], flags: Int32, create: Bool, mode: mode_t
    ) throws(FileError) -> Int32 {
        let shown = shown(relative)
        if relative.isEmpty { return try Syscall.openat(descriptor, cPath(".".utf8), flags: flags, shown: path) }
        let components = relative.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
        for component in components
        where component.isEmpty || component.elementsEqual(".".utf8) || component.elementsEqual("..".utf8) {
            throw FileError(call: "openat2", "opening (not a plain relative path)", shown, errno: .invalidArgument)
        }
        let flags = flags | O_NOFOLLOW | O_CLOEXEC
        if !Self.openat2Unavailable.load(ordering: .relaxed) {
            let fd = ckindling_open_beneath(descriptor, cPath(relative), flags, UInt32(mode))
            if fd >= 0 { return fd }
            switch errno {
            case ENOSYS, EPERM, E2BIG: Self.openat2Unavailable.store(true, ordering: .relaxed)
            case ENOENT where create, EAGAIN, EINTR: break  // the walk creates, or retries a raced lookup
            default: throw FileError(call: "openat2", "opening", shown)
            }
        }
        // The walk: every component opened as a directory, relative to the one before, never through a link.
        var current = descriptor
        defer { if current != descriptor { Glibc.close(current) } }
        let isDirectory = flags & O_DIRECTORY != 0
        for (index, component) in components.enumerated() {
            let last = index == components.count - 1
            let componentFlags = last ? flags : O_RDONLY | O_DIRECTORY | O_NOFOLLOW
            let name = cPath(component)
            var next: Int32
            do throws(FileError) {
                next = try Syscall.openat(current, name, flags: componentFlags, mode: mode, shown: shown)
            } catch {
                guard error.errno == .noSuchFile, create, !last || isDirectory else { throw error }
                guard mkdirat(current, name, mode) == 0 || errno == EEXIST else {
                    throw FileError(call: "mkdirat", "creating directory", shown)
                }
                next = try Syscall.openat(current, name, flags: componentFlags, mode: mode, shown: shown)
            }
            if current != descriptor { Glibc.close(current) }
            current = next
        }
        let result = current
        current = descriptor  // handed to the caller: not closed by the defer
        return result
    }

    // MARK: Queries that answer nil or empty (the freshness repair reads what it can and rebuilds the rest)

    /// The directory holding `relative` and the last component's name; throws when a parent is missing, a
    /// symlink, or `relative` is not a plain relative path.
    private func parent(of relative: String) throws(FileError) -> (DirectoryDescriptor, String) {
        guard let parts = Self.components(relative), let name = parts.last else {
            throw FileError(
                call: "openat2", "opening (not a plain relative path)", shown(relative.utf8),
                errno: .invalidArgument)
        }
        if parts.count == 1 { return (self, name) }
        return (try openDirectory(parts.dropLast().joined(separator: "/")), name)
    }

    /// What `fstatat(AT_SYMLINK_NOFOLLOW)` says of `relative`, nil when it is missing (or a parent is a symlink).
    public func status(_ relative: String) -> stat? {
        guard let (folder, name) = try? parent(of: relative) else { return nil }
        return (try? folder.status(named: name.utf8)) ?? nil
    }

    /// The file type bits (S_IFDIR, S_IFLNK...) of `relative`, nil when it is missing.
    public func kind(_ relative: String) -> mode_t? { status(relative).map { $0.st_mode & S_IFMT } }

    /// Names in the directory at `relative` ("" for this one); empty when it is missing or not a directory.
    public func names(_ relative: String) -> [String] {
        guard let folder = try? openDirectory(relative), let names = try? folder.names() else { return [] }
        return names.map { String(decoding: $0, as: UTF8.self) }
    }

    /// The content of the regular file at `relative`; nil when it is missing, a symlink, not a regular file (a FIFO
    /// cannot hang the caller: it is opened non-blocking and refused), unreadable or larger than `limit`.
    public func read(_ relative: String, limit: Int = 64 << 20) -> [UInt8]? {
        guard Self.components(relative) != nil,
            let file = try? openFile(bytes: Array(relative.utf8), flags: O_RDONLY | O_NONBLOCK),
            let info = try? file.status(), info.st_mode & S_IFMT == S_IFREG
        else { return nil }
        return try? file.readAll(limit: limit)
    }

    // MARK: Changes below

    /// Removes the file, symlink or whole tree at `relative` without following any symlink. Missing is fine.
    public func remove(_ relative: String) throws(FileError) {
        let folder: DirectoryDescriptor
        let name: String
        do throws(FileError) {
            (folder, name) = try parent(of: relative)
        } catch {
            if error.errno == .noSuchFile { return }
            throw error
        }
        try folder.removeTree(named: Array(name.utf8))
    }

    /// Renames `from` to `to`, both names directly in the directory at `folder` ("" for this one); a link is
    /// moved, not followed.
    public func rename(in folder: String, from: String, to: String) throws(FileError) {
        let directory = try openDirectory(folder)
        guard renameat(directory.descriptor, from, directory.descriptor, to) == 0 else {
            throw FileError(call: "renameat", "renaming", directory.shown(from.utf8))
        }
    }
}
