import CKindlingShims
public import Glibc
import KindlingCrypto

/// An open file descriptor, closed when the value goes away. All calls retry on EINTR and throw `FileError`.
public final class PosixFile {
    public let descriptor: Int32
    public let path: String

    public init(opening path: String, flags: Int32, mode: mode_t = 0o644) throws(FileError) {
        let descriptor = Glibc.open(path, flags | O_CLOEXEC, mode)
        guard descriptor >= 0 else { throw FileError("opening", path) }
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

    /// Reads up to `buffer.count` bytes; 0 at the end of the file.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(FileError) -> Int {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return 0 }
        while true {
            let count = Glibc.read(descriptor, base, buffer.count)
            if count >= 0 { return count }
            if errno != EINTR { throw FileError("reading", path) }
        }
    }

    /// Fills `buffer` completely unless the file ends first; returns how many bytes were read.
    public func readFully(into buffer: UnsafeMutableRawBufferPointer) throws(FileError) -> Int {
        var total = 0
        while total < buffer.count {
            let count = try read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[total...]))
            if count == 0 { break }
            total += count
        }
        return total
    }

    /// The whole file, refusing files larger than `limit` bytes.
    public func readAll(limit: Int) throws(FileError) -> [UInt8] {
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw FileError("inspecting", path) }
        let size = Int(info.st_size)
        guard size <= limit else { throw FileError("reading (file larger than \(limit) bytes)", path, code: EFBIG) }
        var failure: FileError?
        let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
            do throws(FileError) {
                initialized = try readFully(into: UnsafeMutableRawBufferPointer(buffer))
            } catch {
                failure = error
                initialized = 0
            }
        }
        if let failure { throw failure }
        return bytes
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws(FileError) {
        guard var base = bytes.baseAddress else { return }
        var remaining = bytes.count
        while remaining > 0 {
            let count = Glibc.write(descriptor, base, remaining)
            if count < 0 {
                if errno == EINTR { continue }
                throw FileError("writing", path)
            }
            remaining -= count
            base += count
        }
    }

    public func write(_ bytes: [UInt8]) throws(FileError) {
        try bytes.withBytes { (buffer) throws(FileError) in try write(buffer) }
    }

    public func sync() throws(FileError) {
        guard fsync(descriptor) == 0 else { throw FileError("syncing", path) }
    }
}

/// Small path utilities on raw POSIX calls.
public enum FileSystem {
    /// Creates `path` and its missing parents with mode 0755 (like `mkdir -p`).
    public static func createDirectories(_ path: String, mode: mode_t = 0o755) throws(FileError) {
        if isDirectory(path) { return }
        var prefix = path.hasPrefix("/") ? "/" : ""
        for component in path.split(separator: "/") {
            prefix += component
            if mkdir(prefix, mode) != 0 && errno != EEXIST { throw FileError("creating directory", prefix) }
            prefix += "/"
        }
        guard isDirectory(path) else { throw FileError("creating directory", path, code: ENOTDIR) }
    }

    public static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR
    }

    public static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }

    /// Names in a directory, without "." and "..".
    /// `fsync` of `path`, or with `dataOnly` a wait until its data is on disk (sync_file_range), with no journal
    /// commit: a batch of those and then one fsync makes the whole batch durable (git's "batch" fsync method).
    public static func flush(_ path: String, flags: Int32, dataOnly: Bool) throws(FileError) {
        let descriptor = Glibc.open(path, flags | O_CLOEXEC)
        guard descriptor >= 0 else { throw FileError("opening", path) }
        defer { close(descriptor) }
        let result = dataOnly ? ckindling_wait_writeback(descriptor) : fsync(descriptor)
        guard result == 0 else { throw FileError("flushing", path) }
    }

    public static func contents(of path: String) throws(FileError) -> [String] {
        guard let directory = opendir(path) else { throw FileError("listing", path) }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
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
            throw FileError("removing (not a removable name)", path, code: EINVAL)
        }
        let directory = Glibc.open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directory >= 0 else {
            if errno == ENOENT { return }
            throw FileError("opening", parent)
        }
        defer { close(directory) }
        try removeTree(named: Array(name.utf8), in: directory, path: parent == "/" ? "" : parent)
    }

    /// A random lower-case hex name, for temporary files.
    public static func randomName(prefix: String = "") -> String {
        var generator = SystemRandomNumberGenerator()
        let value = generator.next() as UInt64
        return prefix + String(value, radix: 16)
    }
}

@available(*, unavailable)
extension PosixFile: Sendable {}
