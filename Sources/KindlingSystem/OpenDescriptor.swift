public import Glibc

/// An open descriptor and the path it was opened as (for messages): what a file and a directory share.
public protocol OpenDescriptor {
    var descriptor: Int32 { get }
    var path: String { get }
}

extension OpenDescriptor {
    /// What fstat says of the open file or directory (the one held, whatever happens to its path meanwhile).
    public func status() throws(FileError) -> stat {
        try Syscall.status(descriptor, shown: path)
    }

    public func setMode(_ mode: mode_t) throws(FileError) {
        guard fchmod(descriptor, mode) == 0 else { throw FileError(call: "fchmod", "setting mode of", path) }
    }

    public func setTimes(nanoseconds: UInt64) throws(FileError) {
        var times = [timespec(nanoseconds: nanoseconds), timespec(nanoseconds: nanoseconds)]
        guard futimens(descriptor, &times) == 0 else { throw FileError(call: "futimens", "setting times of", path) }
    }

    /// fsync: a file's data and metadata, or a directory's entries (names created, renamed or removed in it).
    public func sync() throws(FileError) {
        guard fsync(descriptor) == 0 else { throw FileError(call: "fsync", "syncing", path) }
    }
}

extension PosixFile: OpenDescriptor {}
extension DirectoryDescriptor: OpenDescriptor {}
