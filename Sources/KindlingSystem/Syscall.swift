import Glibc

/// The opening calls the types of this module share (`PosixFile`, `DirectoryDescriptor`, `FileSystem`): each sets
/// close-on-exec, retries on EINTR and turns a failure into a `FileError` naming the call and the path.
enum Syscall {
    /// open(2) of `path` as the caller names it (links in it are the caller's choice and are followed).
    static func open(
        _ path: String, flags: Int32, mode: mode_t = 0, operation: String = "opening"
    ) throws(FileError) -> Int32 {
        while true {
            let descriptor = Glibc.open(path, flags | O_CLOEXEC, mode)
            if descriptor >= 0 { return descriptor }
            if errno != EINTR { throw FileError(call: "open", operation, path) }
        }
    }

    /// openat(2) of one name (or ".") relative to `directory`; `shown` is the path for messages.
    static func openat(
        _ directory: Int32, _ name: [CChar], flags: Int32, mode: mode_t = 0, shown: String,
        operation: String = "opening"
    ) throws(FileError) -> Int32 {
        while true {
            let descriptor = Glibc.openat(directory, name, flags | O_CLOEXEC, mode)
            if descriptor >= 0 { return descriptor }
            if errno != EINTR { throw FileError(call: "openat", operation, shown) }
        }
    }

    /// fstatat(2) without following a final symlink; nil when nothing is there (ENOENT).
    static func status(_ directory: Int32, _ name: [CChar], shown: String) throws(FileError) -> stat? {
        var info = stat()
        guard fstatat(directory, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else {
            if errno == ENOENT { return nil }
            throw FileError(call: "fstatat", "inspecting", shown)
        }
        return info
    }

    /// The names a directory stream holds, as bytes, without "." and ".."; closes the stream.
    static func names(closing stream: OpaquePointer) -> [[UInt8]] {
        defer { closedir(stream) }
        var names: [[UInt8]] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix(while: { $0 != 0 })) }
            if name != [UInt8(ascii: ".")] && name != [UInt8(ascii: "."), UInt8(ascii: ".")] { names.append(name) }
        }
        return names
    }

    /// fstat(2) of an open descriptor.
    static func status(_ descriptor: Int32, shown: String) throws(FileError) -> stat {
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw FileError(call: "fstat", "inspecting", shown) }
        return info
    }
}

/// `bytes` as a NUL-terminated C string (a path component or a relative path), to pass to a C call.
public func cPath(_ bytes: some Collection<UInt8>) -> [CChar] {
    bytes.map { CChar(bitPattern: $0) } + [0]
}

extension timespec {
    /// A time in nanoseconds since the epoch, as utimensat and futimens take it.
    init(nanoseconds: UInt64) {
        self.init(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
    }
}
