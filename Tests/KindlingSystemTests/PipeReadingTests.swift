import Foundation
import Glibc
import KindlingSystem
import Testing

@Suite("System: reading a pipe to its end")
struct PipeReadingTests {
    @Test("Every byte a writer sends, in many reads, until it closes its end")
    func readsToEnd() throws {
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        let (reader, writer) = (ends[0], ends[1])
        let sent = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let thread = Thread {
            var offset = 0
            while offset < sent.count {
                let written = sent[offset...].withUnsafeBytes { write(writer, $0.baseAddress, min($0.count, 10_000)) }
                if written <= 0 { break }
                offset += written
            }
            close(writer)
        }
        thread.start()
        let received = PipeReading.readToEnd(reader)
        close(reader)
        #expect(received == sent)
    }
}
