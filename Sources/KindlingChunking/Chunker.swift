import CKindlingShims

/// FastCDC content-defined chunking over a byte stream, with memory bounded by `bufferSize` whatever the input size.
///
/// Inserting bytes near the start of a stream moves only the boundaries around the edit: later cuts depend on
/// the last 64 bytes before them, so they re-synchronise and most chunk ids stay the same.
public struct Chunker: Sendable {
    public let parameters: ChunkingParameters
    /// Bytes read from the source at a time; at least four maximum-size chunks.
    public let bufferSize: Int

    public init(parameters: ChunkingParameters = .standard, bufferSize: Int = 4 << 20) {
        self.parameters = parameters
        self.bufferSize = max(bufferSize, parameters.maxSize * 4)
    }

    /// Length of the first chunk of `bytes`. Pass at least `maxSize` bytes unless `bytes` is the rest of the input.
    public func firstChunkLength(of bytes: UnsafeRawBufferPointer) -> Int {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return 0 }
        return GearTable.values.withUnsafeBufferPointer { gear in
            ckindling_cdc_next_cut(
                base.assumingMemoryBound(to: UInt8.self), bytes.count, gear.baseAddress,
                parameters.minSize, parameters.normalSize, parameters.maxSize,
                parameters.maskSmall, parameters.maskLarge
            )
        }
    }

    /// Splits what `read` produces into chunks, handing each one to `body` in order.
    ///
    /// `read` fills the buffer it is given and returns how many bytes it wrote, 0 at the end of input.
    /// The chunk buffer passed to `body` is only valid during the call.
    public func chunk<Failure: Error>(
        read: (UnsafeMutableRawBufferPointer) throws(Failure) -> Int,
        body: (UnsafeRawBufferPointer) throws(Failure) -> Void
    ) throws(Failure) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 16)
        defer { buffer.deallocate() }
        var start = 0
        var end = 0
        var atEnd = false
        while true {
            // Fill the buffer so that a full maximum-size chunk is available, or the input is exhausted.
            while !atEnd && end < buffer.count {
                let count = try read(UnsafeMutableRawBufferPointer(rebasing: buffer[end...]))
                if count == 0 { atEnd = true } else { end += count }
            }
            while end - start >= parameters.maxSize || (atEnd && start < end) {
                let pending = UnsafeRawBufferPointer(rebasing: buffer[start..<end])
                let length = firstChunkLength(of: pending)
                try body(UnsafeRawBufferPointer(rebasing: pending[pending.startIndex..<pending.startIndex + length]))
                start += length
            }
            if atEnd { return }
            // Move the unfinished tail to the front and read more after it.
            let tail = end - start
            if tail > 0, let base = buffer.baseAddress {
                base.copyMemory(from: base + start, byteCount: tail)
            }
            start = 0
            end = tail
        }
    }

    /// The chunk lengths of an in-memory byte array (for tests and small inputs).
    public func chunkLengths(of bytes: [UInt8]) -> [Int] {
        var lengths: [Int] = []
        var offset = 0
        bytes.withUnsafeBytes { all in
            chunk(
                read: { (target: UnsafeMutableRawBufferPointer) -> Int in
                    let count = min(target.count, all.count - offset)
                    if count > 0 {
                        target.copyMemory(from: UnsafeRawBufferPointer(rebasing: all[offset..<offset + count]))
                    }
                    offset += count
                    return count
                },
                body: { lengths.append($0.count) }
            )
        }
        return lengths
    }
}
