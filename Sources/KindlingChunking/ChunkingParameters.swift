/// The sizes that define where content-defined chunk boundaries fall (Specs/chunking.md).
///
/// Changing them changes every chunk id, which destroys dedup against everything already published, so the
/// standard set is chosen once, by measurement (tools/bench/chunk-sizes), and is part of the format.
public struct ChunkingParameters: Sendable, Hashable, CustomStringConvertible {
    /// No cut before this many bytes (except at the end of a file).
    public let minSize: Int
    /// The expected chunk size; the stricter mask applies before it, the looser after it.
    public let normalSize: Int
    /// A cut is forced here.
    public let maxSize: Int

    /// Chooses masks for a power-of-two normal size; `minSize <= normalSize <= maxSize`.
    public init(minSize: Int, normalSize: Int, maxSize: Int) {
        precondition(minSize > 0 && minSize <= normalSize && normalSize <= maxSize)
        precondition(normalSize.nonzeroBitCount == 1, "normal size must be a power of two")
        self.minSize = minSize
        self.normalSize = normalSize
        self.maxSize = maxSize
    }

    /// 16 KiB / 64 KiB / 256 KiB: on real cargo target dirs, within a few percent of the best dedup measured,
    /// with a quarter of the chunk count of 16 KiB chunks (see Specs/chunking.md for the table).
    public static let standard = ChunkingParameters(minSize: 16 << 10, normalSize: 64 << 10, maxSize: 256 << 10)

    var normalBits: Int { normalSize.trailingZeroBitCount }

    /// The `bits` most significant bits set: the gear hash's high bits depend on the last 64 input bytes.
    static func topBitsMask(_ bits: Int) -> UInt64 { bits <= 0 ? 0 : ~UInt64(0) << UInt64(64 - bits) }

    /// Mask used before the normal size: two bits more than log2(normal), so cuts there are rarer.
    var maskSmall: UInt64 { Self.topBitsMask(normalBits + 2) }
    /// Mask used after the normal size: two bits fewer, so cuts there come sooner.
    var maskLarge: UInt64 { Self.topBitsMask(normalBits - 2) }

    public var description: String { "min \(minSize) / normal \(normalSize) / max \(maxSize)" }
}
