import CKindlingShims
public import Glibc

/// Calls on one name directly in an open directory (by its bytes), and on the directory itself: what a restore does
/// to the entries it creates. None follows a final symlink.
extension DirectoryDescriptor {
    /// What fstatat(AT_SYMLINK_NOFOLLOW) says of `name`; nil when nothing is there.
    public func status(named name: some Collection<UInt8>) throws(FileError) -> stat? {
        try Syscall.status(descriptor, cPath(name), shown: shown(name))
    }

    /// Names in this directory, as the bytes the filesystem holds, without "." and "..".
    public func names() throws(FileError) -> [[UInt8]] {
        // fdopendir takes over the descriptor it is given: give it a copy, rewound.
        let copy = try Syscall.openat(descriptor, cPath(".".utf8), flags: O_RDONLY | O_DIRECTORY, shown: path)
        guard let handle = fdopendir(copy) else {
            let error = FileError(call: "fdopendir", "listing", path)
            Glibc.close(copy)
            throw error
        }
        return Syscall.names(closing: handle)
    }

    /// Makes the directory `name` with `mode` (less the umask); one that is already there is fine.
    public func makeDirectory(named name: some Collection<UInt8>, mode: mode_t) throws(FileError) {
        guard mkdirat(descriptor, cPath(name), mode) == 0 || errno == EEXIST else {
            throw FileError(call: "mkdirat", "creating directory", shown(name))
        }
    }

    /// Makes the directory `name` with `mode`, which must not exist yet (a staging folder of our own).
    public func makeNewDirectory(named name: some Collection<UInt8>, mode: mode_t) throws(FileError) {
        guard mkdirat(descriptor, cPath(name), mode) == 0 else {
            throw FileError(call: "mkdirat", "creating directory", shown(name))
        }
    }

    /// Creates the regular file `name`, which must not exist (O_EXCL, so never through a link), open for writing.
    public func createFile(named name: some Collection<UInt8>, mode: mode_t = 0o600) throws(FileError) -> PosixFile {
        let shown = shown(name)
        let flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW
        let file = try Syscall.openat(descriptor, cPath(name), flags: flags, mode: mode, shown: shown)
        return PosixFile(descriptor: file, path: shown)
    }

    /// Replaces the file `name` with `bytes` durably: a new file beside it (O_EXCL, never through a link) written and
    /// fsynced, renamed over `name`, then this directory fsynced. A crash leaves the old content or the new, never
    /// a mix; a failure removes the new file and leaves the old one.
    public func replaceDurably(named name: String, with bytes: [UInt8], mode: mode_t = 0o600) throws(FileError) {
        let temporary = ".\(name).\(getpid()).\(UInt32.random(in: 0...UInt32.max)).tmp"
        do throws(FileError) {
            let file = try createFile(named: Array(temporary.utf8), mode: mode)
            try file.write(bytes)
            try file.sync()
            guard renameat(descriptor, temporary, descriptor, name) == 0 else {
                throw FileError(call: "renameat", "replacing", shown(name.utf8))
            }
        } catch {
            unlinkat(descriptor, temporary, 0)
            throw error
        }
        try sync()
    }

    /// Creates the symlink `name` pointing at `target` (never read or followed here).
    public func makeSymlink(named name: some Collection<UInt8>, pointingTo target: String) throws(FileError) {
        guard symlinkat(target, descriptor, cPath(name)) == 0 else {
            throw FileError(call: "symlinkat", "creating symlink", shown(name))
        }
    }

    /// Sets the access and modification times of `name` itself (a link's own times, not its target's).
    public func setTimes(named name: some Collection<UInt8>, nanoseconds: UInt64) throws(FileError) {
        var times = [timespec(nanoseconds: nanoseconds), timespec(nanoseconds: nanoseconds)]
        guard utimensat(descriptor, cPath(name), &times, AT_SYMLINK_NOFOLLOW) == 0 else {
            throw FileError(call: "utimensat", "setting times of", shown(name))
        }
    }

    /// Swaps `name` and `other` atomically, both in this directory (renameat2 RENAME_EXCHANGE).
    public func exchange(named name: String, with other: String) throws(FileError) {
        guard ckindling_exchangeat(descriptor, name, descriptor, other) == 0 else {
            throw FileError(call: "renameat2", "swapping in", shown(other.utf8))
        }
    }

    /// Renames `name` to `destination` in this directory, refusing to replace anything (RENAME_NOREPLACE).
    public func moveWithoutReplacing(named name: String, to destination: String) throws(FileError) {
        guard ckindling_renameat_noreplace(descriptor, name, descriptor, destination) == 0 else {
            throw FileError(call: "renameat2", "moving into place", shown(destination.utf8))
        }
    }

    /// Removes `name` (raw bytes): a file, a symlink (never followed) or a whole tree, every step relative to an
    /// open descriptor, so a directory swapped for a link midway is not followed. With `owner`, a directory is
    /// emptied only when, once open, it belongs to that user (it is left otherwise). Missing is fine.
    public func removeTree(named name: [UInt8], owner: uid_t? = nil) throws(FileError) {
        let cName = cPath(name)
        guard let info = try status(named: name) else { return }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            guard unlinkat(descriptor, cName, 0) == 0 || errno == ENOENT else {
                throw FileError(call: "unlinkat", "removing", shown(name))
            }
            return
        }
        // A directory the user (or a snapshot) made read-only must still be removable (fchmodat with
        // AT_SYMLINK_NOFOLLOW never changes a link's target: it fails on a link).
        if info.st_mode & 0o700 != 0o700 { _ = fchmodat(descriptor, cName, 0o700, AT_SYMLINK_NOFOLLOW) }
        let child: DirectoryDescriptor
        do throws(FileError) {
            let flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW
            child = DirectoryDescriptor(
                descriptor: try Syscall.openat(descriptor, cName, flags: flags, shown: shown(name)), path: shown(name))
        } catch {
            if error.errno == .noSuchFile { return }
            throw error
        }
        if let owner {
            guard try child.status().st_uid == owner else { return }
        }
        for entry in try child.names() {
            try child.removeTree(named: entry)
        }
        guard unlinkat(descriptor, cName, AT_REMOVEDIR) == 0 || errno == ENOENT else {
            throw FileError(call: "unlinkat", "removing directory", shown(name))
        }
    }

    // MARK: The directory itself (status, mode, times and sync: `OpenDescriptor`)

    /// The identities of this directory and of every directory above it, up to "/", following "..": how a path
    /// is compared with another whatever links, bind mounts or spellings lead to either.
    public func ancestry() -> [FileIdentity] {
        var chain: [FileIdentity] = []
        var current = try? Syscall.openat(descriptor, cPath(".".utf8), flags: O_RDONLY | O_DIRECTORY, shown: path)
        defer { if let current { Glibc.close(current) } }
        while let directory = current, chain.count < 4096 {
            var info = stat()
            guard fstat(directory, &info) == 0 else { break }
            let identity = FileIdentity(info)
            if chain.last == identity { break }  // "/" is its own parent
            chain.append(identity)
            current = try? Syscall.openat(directory, cPath("..".utf8), flags: O_RDONLY | O_DIRECTORY, shown: path)
            Glibc.close(directory)
        }
        return chain
    }
}

/// Which file an inode is, on which device: the same for every path, link or mount that reaches it.
public struct FileIdentity: Hashable, Sendable {
    public var device: UInt64
    public var inode: UInt64

    public init(_ info: stat) {
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
    }
}
