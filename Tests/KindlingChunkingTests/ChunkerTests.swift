import KindlingChunking
import KindlingCrypto
import KindlingTesting
import Testing

@Suite("Content-defined chunking")
struct ChunkerTests {
    let chunker = Chunker()

    @Test("Chunks cover the input exactly and respect min and max sizes")
    func boundsAndCoverage() {
        let data = Fixtures.bytes(count: 5_000_000, seed: 1)
        let lengths = chunker.chunkLengths(of: data)
        #expect(lengths.reduce(0, +) == data.count)
        let parameters = ChunkingParameters.standard
        for length in lengths.dropLast() {
            #expect(length >= parameters.minSize && length <= parameters.maxSize)
        }
        // The normal size is the target: the average lands near it on random data.
        let average = data.count / lengths.count
        #expect(average > 40_000 && average < 100_000, "average chunk \(average)")
    }

    @Test("Small inputs are one chunk; empty input has none")
    func smallInputs() {
        #expect(chunker.chunkLengths(of: []) == [])
        #expect(chunker.chunkLengths(of: [1, 2, 3]) == [3])
        let exactlyMin = Fixtures.bytes(count: ChunkingParameters.standard.minSize, seed: 2)
        #expect(chunker.chunkLengths(of: exactlyMin) == [exactlyMin.count])
    }

    @Test("Boundaries do not depend on how the input is read", arguments: [1 << 20, 3 << 20, 16 << 20])
    func streamingIsDeterministic(bufferSize: Int) {
        let data = Fixtures.bytes(count: 6_000_000, seed: 3)
        let reference = Chunker(bufferSize: 64 << 20).chunkLengths(of: data)
        // Tiny reads stress the refill path.
        var offset = 0
        var lengths: [Int] = []
        Chunker(bufferSize: bufferSize).chunk(
            read: { (buffer: UnsafeMutableRawBufferPointer) -> Int in
                let count = min(buffer.count, 7919, data.count - offset)
                data.withUnsafeBytes { source in
                    buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[offset..<offset + count]))
                }
                offset += count
                return count
            },
            body: { lengths.append($0.count) })
        #expect(lengths == reference)
    }

    @Test("Inserting bytes near the start of a large file leaves most chunk ids unchanged")
    func insertionResistance() {
        let original = Fixtures.bytes(count: 8_000_000, seed: 4)
        var edited = original
        edited.insert(contentsOf: Array("a few inserted bytes".utf8), at: 1000)
        let before = Set(chunkIDs(original))
        let after = chunkIDs(edited)
        let shared = after.filter { before.contains($0) }.count
        // Only the chunks around the edit change.
        #expect(after.count - shared <= 3, "\(after.count - shared) of \(after.count) chunks changed")
        #expect(Double(shared) / Double(after.count) > 0.95)
    }

    @Test("Memory stays bounded: a 64 MiB stream goes through a 1 MiB buffer")
    func boundedMemory() {
        let chunker = Chunker(bufferSize: 1 << 20)
        #expect(chunker.bufferSize == 1 << 20)
        var produced = 0
        var remaining = 64 << 20
        let block = Fixtures.bytes(count: 1 << 16, seed: 5)
        chunker.chunk(
            read: { (buffer: UnsafeMutableRawBufferPointer) -> Int in
                let count = min(buffer.count, block.count, remaining)
                block.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
                remaining -= count
                return count
            },
            body: { produced += $0.count })
        #expect(produced == 64 << 20)
    }

    private func chunkIDs(_ data: [UInt8]) -> [Digest] {
        var ids: [Digest] = []
        var offset = 0
        data.withUnsafeBytes { all in
            chunker.chunk(
                read: { (buffer: UnsafeMutableRawBufferPointer) -> Int in
                    let count = min(buffer.count, all.count - offset)
                    buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: all[offset..<offset + count]))
                    offset += count
                    return count
                },
                body: { ids.append(Blake2b.hash($0)) })
        }
        return ids
    }
}
