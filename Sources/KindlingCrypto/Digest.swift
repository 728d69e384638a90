/// A 32-byte BLAKE2b-256 digest: the id of a chunk and of a manifest.
///
/// Stored as four big-endian words so that it hashes and compares cheaply and sorts in byte order.
public struct Digest: Hashable, Comparable, Sendable, CustomStringConvertible {
    public static let byteCount = 32

    private var w0: UInt64
    private var w1: UInt64
    private var w2: UInt64
    private var w3: UInt64

    /// Reads exactly 32 bytes; returns nil for any other length.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == Self.byteCount else { return nil }
        if let words = bytes.withContiguousStorageIfAvailable({ Self.words(UnsafeRawBufferPointer($0)) }) {
            (w0, w1, w2, w3) = words
        } else {
            (w0, w1, w2, w3) = Array(bytes).withUnsafeBytes { Self.words($0) }
        }
    }

    /// Reads exactly 32 bytes; returns nil for any other length. Not generic: ids are made from arrays on every
    /// message and index row, and the generic path looked up type metadata each time (a swarm profile's 4%).
    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.byteCount else { return nil }
        (w0, w1, w2, w3) = bytes.withUnsafeBytes { Self.words($0) }
    }

    /// The four big-endian words of 32 bytes.
    private static func words(_ raw: UnsafeRawBufferPointer) -> (UInt64, UInt64, UInt64, UInt64) {
        func word(_ index: Int) -> UInt64 {
            UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: index * 8, as: UInt64.self))
        }
        return (word(0), word(1), word(2), word(3))
    }

    public init?(hex: some StringProtocol) {
        guard hex.utf8.count == 64, let bytes = try? Hex.decode(hex) else { return nil }
        self.init(bytes: bytes)
    }

    public var bytes: [UInt8] {
        let words = (w0.bigEndian, w1.bigEndian, w2.bigEndian, w3.bigEndian)
        return withUnsafeBytes(of: words) { Array($0) }
    }

    public var hex: String { Hex.encode(bytes) }

    /// The first 12 hex digits, for logs and progress lines.
    public var short: String { String(hex.prefix(12)) }

    public var description: String { hex }

    public static func < (lhs: Digest, rhs: Digest) -> Bool {
        (lhs.w0, lhs.w1, lhs.w2, lhs.w3) < (rhs.w0, rhs.w1, rhs.w2, rhs.w3)
    }
}
