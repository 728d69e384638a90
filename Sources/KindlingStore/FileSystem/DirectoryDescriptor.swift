import CKindlingShims
public import Glibc
import Synchronization

/// An open directory, closed when the value goes away: the anchor for every `*at` call of a restore or a clean-up,
/// so that what they touch is found from this directory, by bytes, without following any symlink.
///
/// Paths given to its methods are relative, '/'-separated byte strings (a Swift `String` passes its UTF-8 bytes
/// unchanged: two names that differ only in Unicode normalization stay two names).
public final class DirectoryDescriptor: Sendable {
    public let descriptor: Int32
    /// For messages only: what the caller called this directory.
    public let path: String

    /// Opens `path` as the caller names it (symlinks in it are the caller's choice and are followed).
    public init(opening path: String) throws(FileError) {
        let descriptor = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw FileError("opening directory", path) }
        self.descriptor = descriptor
        self.path = path
    }

    /// Takes ownership of an open descriptor.
    public init(descriptor: Int32, path: String) {
        self.descriptor = descriptor
        self.path = path
    }

    deinit {
        Glibc.close(descriptor)
    }

    /// Opens the directory at `relative` below this one (itself for an empty path), following no symlink on the
    /// way. With `create`, missing directories are made with `mode` (less the umask, as `mkdir -p` does).
    public func openDirectory(_ relative: String, create: Bool = false, mode: mode_t = 0o755)
        throws(FileError) -> DirectoryDescriptor
    {
        try openDirectory(bytes: Array(relative.utf8), create: create, mode: mode)
    }

    public func openDirectory(bytes relative: [UInt8], create: Bool = false, mode: mode_t = 0o755)
        throws(FileError) -> DirectoryDescriptor
    {
        let fd = try FileSystem.openBeneath(
            descriptor, relative, flags: O_RDONLY | O_DIRECTORY, create: create, mode: mode, base: path)
        let shown = relative.isEmpty ? path : path + "/" + String(decoding: relative, as: UTF8.self)
        return DirectoryDescriptor(descriptor: fd, path: shown)
    }

    /// Opens `relative` below this directory without following any symlink; returns a descriptor the caller closes.
    public func open(bytes relative: [UInt8], flags: Int32, mode: mode_t = 0o600) throws(FileError) -> Int32 {
        try FileSystem.openBeneath(descriptor, relative, flags: flags, create: false, mode: mode, base: path)
    }

    /// The names in this directory, as the bytes the filesystem holds, without "." and "..".
    public func names() throws(FileError) -> [[UInt8]] {
        try FileSystem.names(inDirectory: descriptor, path: path)
    }
}

/// `bytes` as a NUL-terminated C string (a path component or a relative path), to pass to a C call.
public func cPath(_ bytes: some Collection<UInt8>) -> [CChar] {
    bytes.map { CChar(bitPattern: $0) } + [0]
}

extension FileSystem {
    /// Set once openat2 turned out to be missing (kernel before 5.6) or filtered (seccomp): walk instead.
    static let openat2Unavailable = Atomic<Bool>(false)

    /// Opens `relative` below `directory` without following any symlink and without leaving `directory`:
    /// openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS where the kernel has it, else a walk from component to
    /// component with O_NOFOLLOW | O_DIRECTORY. With `create`, missing directories on the way (and the last
    /// component, for a directory) are made with `mode`. A symlink anywhere on the path is an ELOOP or ENOTDIR error.
    static func openBeneath(
        _ directory: Int32, _ relative: [UInt8], flags: Int32, create: Bool, mode: mode_t, base: String
    ) throws(FileError) -> Int32 {
        let shown = base + "/" + String(decoding: relative, as: UTF8.self)
        if relative.isEmpty {
            let fd = Glibc.openat(directory, ".", flags | O_CLOEXEC)
            guard fd >= 0 else { throw FileError("opening", base) }
            return fd
        }
        let components = relative.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
        for component in components
        where component.isEmpty || component.elementsEqual(".".utf8) || component.elementsEqual("..".utf8) {
            throw FileError("opening (not a plain relative path)", shown, code: EINVAL)
        }
        let flags = flags | O_NOFOLLOW | O_CLOEXEC
        if !openat2Unavailable.load(ordering: .relaxed) {
            let fd = ckindling_open_beneath(directory, cPath(relative), flags, UInt32(mode))
            if fd >= 0 { return fd }
            switch errno {
            case ENOSYS, EPERM, E2BIG: openat2Unavailable.store(true, ordering: .relaxed)
            case ENOENT where create, EAGAIN, EINTR: break  // the walk creates, or retries a raced lookup
            default: throw FileError("opening", shown)
            }
        }
        // The walk: every component opened as a directory, relative to the one before, never through a link.
        var current = directory
        defer { if current != directory { Glibc.close(current) } }
        let isDirectory = flags & O_DIRECTORY != 0
        for (index, component) in components.enumerated() {
            let last = index == components.count - 1
            let componentFlags = last ? flags : O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
            let name = cPath(component)
            var next = Glibc.openat(current, name, componentFlags, mode)
            if next < 0 && errno == ENOENT && create && (!last || isDirectory) {
                guard mkdirat(current, name, mode) == 0 || errno == EEXIST else {
                    throw FileError("creating directory", shown)
                }
                next = Glibc.openat(current, name, componentFlags, mode)
            }
            guard next >= 0 else { throw FileError("opening", shown) }
            if current != directory { Glibc.close(current) }
            current = next
        }
        let result = current
        current = directory  // handed to the caller: not closed by the defer
        return result
    }

    /// Names in the directory open at `descriptor`, as raw bytes, without "." and "..".
    static func names(inDirectory descriptor: Int32, path: String) throws(FileError) -> [[UInt8]] {
        // fdopendir takes over the descriptor it is given: give it a copy, rewound.
        let copy = Glibc.openat(descriptor, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard copy >= 0, let handle = fdopendir(copy) else {
            if copy >= 0 { Glibc.close(copy) }
            throw FileError("listing", path)
        }
        defer { closedir(handle) }
        var names: [[UInt8]] = []
        errno = 0
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix(while: { $0 != 0 })) }
            if name != [UInt8(ascii: ".")] && name != [UInt8(ascii: "."), UInt8(ascii: ".")] { names.append(name) }
        }
        return names
    }

    /// Removes `name` (raw bytes) in the directory open at `parent`: a file, a symlink (never followed) or a whole
    /// tree, every step relative to an open descriptor, so a directory swapped for a link midway is not followed.
    /// With `owner`, a directory is emptied only when, once open, it belongs to that user (it is left otherwise).
    public static func removeTree(
        named name: [UInt8], in parent: Int32, path: String, owner: uid_t? = nil
    ) throws(FileError) {
        let cName = cPath(name)
        let shown = path + "/" + String(decoding: name, as: UTF8.self)
        var info = stat()
        guard fstatat(parent, cName, &info, AT_SYMLINK_NOFOLLOW) == 0 else {
            if errno == ENOENT { return }
            throw FileError("inspecting", shown)
        }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            guard unlinkat(parent, cName, 0) == 0 || errno == ENOENT else { throw FileError("removing", shown) }
            return
        }
        // A directory the user made read-only must still be removable (fchmodat with AT_SYMLINK_NOFOLLOW never
        // changes a link's target: it fails on a link).
        if info.st_mode & 0o700 != 0o700 { _ = fchmodat(parent, cName, 0o700, AT_SYMLINK_NOFOLLOW) }
        let child = Glibc.openat(parent, cName, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard child >= 0 else {
            if errno == ENOENT { return }
            throw FileError("opening", shown)
        }
        defer { Glibc.close(child) }
        if let owner {
            var opened = stat()
            guard fstat(child, &opened) == 0, opened.st_uid == owner else { return }
        }
        for entry in try names(inDirectory: child, path: shown) {
            try removeTree(named: entry, in: child, path: shown)
        }
        guard unlinkat(parent, cName, AT_REMOVEDIR) == 0 || errno == ENOENT else {
            throw FileError("removing directory", shown)
        }
    }

    /// The process's umask, read without changing it (umask(2) can only be read by setting it, which races with
    /// every other thread creating files).
    public static func currentUmask() -> mode_t {
        let fd = Glibc.open("/proc/self/status", O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            defer { Glibc.close(fd) }
            // procfs reports a size of 0: read until the end.
            var bytes: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while bytes.count < 1 << 16 {
                let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                if count <= 0 { break }
                bytes += buffer[0..<count]
            }
            for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where line.hasPrefix("Umask:") {
                let digits = line.dropFirst("Umask:".count).filter { $0 != "\t" && $0 != " " }
                if let value = mode_t(digits, radix: 8) { return value & 0o777 }
            }
        }
        let mask = umask(0o022)
        umask(mask)
        return mask & 0o777
    }
}
