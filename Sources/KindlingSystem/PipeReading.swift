import Glibc

/// Reading a child process's output to its end.
///
/// Foundation's `FileHandle.readDataToEndOfFile()` ends in a `try!`, so a signal that interrupts its read(2)
/// (EINTR: a test process full of nodes, a daemon under swift-service-lifecycle's signal handlers) crashed the
/// whole process. This loop retries on EINTR and stops at end of file or at any other error.
public enum PipeReading {
    /// Every byte readable from `descriptor` until end of file (or an error other than EINTR, which ends it).
    public static func readToEnd(_ descriptor: Int32) -> [UInt8] {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if count > 0 {
                bytes.append(contentsOf: buffer[0..<count])
            } else if count == 0 || errno != EINTR {
                return bytes
            }
        }
    }
}
