import CZstd
public import KindlingCrypto

/// A reusable zstd compression context. Not Sendable: each worker owns one (contexts are costly to create).
public final class ZstdCompressor {
    private let context: OpaquePointer
    public let level: Int32

    public init(level: Int32 = 3) {
        // ZSTD_createCCtx only fails when out of memory.
        guard let context = ZSTD_createCCtx() else { fatalError("zstd: out of memory creating a compression context") }
        self.context = context
        self.level = level
    }

    deinit {
        ZSTD_freeCCtx(context)
    }

    /// One zstd frame holding `input`, with its content size recorded in the frame header.
    public func compress(_ input: UnsafeRawBufferPointer) -> [UInt8] {
        let bound = ZSTD_compressBound(input.count)
        // Uninitialised: zero-filling a bound-sized buffer per chunk showed up in capture and fetch profiles.
        return [UInt8](unsafeUninitializedCapacity: bound) { out, initialized in
            let written = ZSTD_compressCCtx(context, out.baseAddress, out.count, input.baseAddress, input.count, level)
            // With a bound-sized output, compression cannot fail.
            precondition(ZSTD_isError(written) == 0, "zstd compression failed")
            initialized = written
        }
    }
}

/// A reusable zstd decompression context that never inflates beyond a limit (a zstd bomb is just corrupt input).
public final class ZstdDecompressor {
    private let context: OpaquePointer
    /// Reused output for `withDecompressed`: verifying a chunk then allocates nothing. It grows to the largest
    /// chunk seen (at most `limit`, 1 MiB).
    private var scratch = UnsafeMutableRawBufferPointer(start: nil, count: 0)

    public init() {
        guard let context = ZSTD_createDCtx() else {
            fatalError("zstd: out of memory creating a decompression context")
        }
        self.context = context
    }

    deinit {
        ZSTD_freeDCtx(context)
        scratch.deallocate()
    }

    /// Decompresses one frame whose content size must be exactly `expectedSize` (at most `limit` bytes).
    public func decompress(
        _ input: UnsafeRawBufferPointer, expectedSize: Int?, limit: Int, id: Digest
    ) throws(StoreError) -> [UInt8] {
        let size = try declaredSize(input, expectedSize: expectedSize, limit: limit, id: id)
        var written = 0
        let output = [UInt8](unsafeUninitializedCapacity: size) { out, initialized in
            written = ZSTD_decompressDCtx(context, out.baseAddress, out.count, input.baseAddress, input.count)
            // On error nothing counts as written: the uninitialised bytes are never exposed.
            initialized = ZSTD_isError(written) == 0 ? min(written, size) : 0
        }
        try check(written, size: size, id: id)
        return output
    }

    /// Decompresses one frame, checked as `decompress` does, into memory this context reuses, and passes the plain
    /// bytes to `body`; they are valid only during the call.
    public func withDecompressed<R>(
        _ input: UnsafeRawBufferPointer, expectedSize: Int?, limit: Int, id: Digest,
        _ body: (UnsafeRawBufferPointer) throws(StoreError) -> R
    ) throws(StoreError) -> R {
        let size = try declaredSize(input, expectedSize: expectedSize, limit: limit, id: id)
        if scratch.count < size {
            scratch.deallocate()
            scratch = .allocate(byteCount: size, alignment: 64)
        }
        let written = ZSTD_decompressDCtx(context, scratch.baseAddress, size, input.baseAddress, input.count)
        try check(written, size: size, id: id)
        return try body(UnsafeRawBufferPointer(rebasing: scratch[0..<size]))
    }

    /// The content size the frame declares, checked against the limit and the size the caller expects.
    private func declaredSize(
        _ input: UnsafeRawBufferPointer, expectedSize: Int?, limit: Int, id: Digest
    ) throws(StoreError) -> Int {
        let declared = ZSTD_getFrameContentSize(input.baseAddress, input.count)
        guard declared != ZSTD_CONTENTSIZE_ERROR, declared != ZSTD_CONTENTSIZE_UNKNOWN else {
            throw .corruptChunk(id, reason: "not a zstd frame with a known size")
        }
        guard declared <= UInt64(limit) else { throw .chunkTooLarge(id, size: Int(clamping: declared)) }
        let size = Int(declared)
        if let expectedSize, expectedSize != size {
            throw .corruptChunk(id, reason: "holds \(size) bytes, expected \(expectedSize)")
        }
        return size
    }

    private func check(_ written: Int, size: Int, id: Digest) throws(StoreError) {
        guard ZSTD_isError(written) == 0 else {
            throw .corruptChunk(id, reason: String(cString: ZSTD_getErrorName(written)))
        }
        guard written == size else { throw .corruptChunk(id, reason: "frame shorter than its declared size") }
    }
}

@available(*, unavailable)
extension ZstdCompressor: Sendable {}

@available(*, unavailable)
extension ZstdDecompressor: Sendable {}
