import CKindlingShims
public import Glibc

/// An open file descriptor, closed when the value goes away. All calls retry on EINTR and throw `FileError`.
public final class PosixFile {
    public let descriptor: Int32
    public let path: String

    public init(opening path: String, flags: Int32, mode: mode_t = 0o644) throws(FileError) {
        self.descriptor = try Syscall.open(path, flags: flags, mode: mode)
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
            if errno != EINTR { throw FileError(call: "read", "reading", path) }
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
        let info = try Syscall.status(descriptor, shown: path)
        let size = Int(info.st_size)
        guard size <= limit else {
            throw FileError(call: "fstat", "reading (file larger than \(limit) bytes)", path, errno: .fileTooLarge)
        }
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
                throw FileError(call: "write", "writing", path)
            }
            remaining -= count
            base += count
        }
    }

    public func write(_ bytes: [UInt8]) throws(FileError) {
        let result = bytes.withUnsafeBytes { buffer in Result { () throws(FileError) in try write(buffer) } }
        try result.get()
    }

    /// Starts writing the file's dirty pages to disk without waiting, so that a later flush has less left to wait
    /// for. Advisory: a failure changes nothing but the timing.
    public func startWriteback() {
        _ = ckindling_start_writeback(descriptor)
    }

    /// Waits until the file's data is on disk (sync_file_range), without a journal commit: a batch of these and
    /// then one fsync of the folders makes the whole batch durable (git's "batch" fsync method).
    public func waitForWriteback() throws(FileError) {
        guard ckindling_wait_writeback(descriptor) == 0 else {
            throw FileError(call: "sync_file_range", "flushing", path)
        }
    }
}

@available(*, unavailable)
extension PosixFile: Sendable {}
