public import KindlingCrypto

/// Appends the primitives of Kindling's canonical encoding (Specs/manifest.md, "Primitives").
///
/// There is exactly one encoding of each value: minimal unsigned LEB128 integers, length-prefixed byte strings.
public struct CanonicalWriter: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init(reservingCapacity capacity: Int = 0) {
        bytes.reserveCapacity(capacity)
    }

    public mutating func writeByte(_ value: UInt8) {
        bytes.append(value)
    }

    public mutating func writeRaw(_ raw: some Sequence<UInt8>) {
        bytes.append(contentsOf: raw)
    }

    /// Unsigned LEB128: 7 bits per byte, low bits first, high bit set on all but the last byte.
    public mutating func writeVarint(_ value: UInt64) {
        var rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
    }

    public mutating func writeVarint(_ value: Int) {
        precondition(value >= 0, "canonical integers are unsigned")
        writeVarint(UInt64(value))
    }

    /// A byte string: its length as a varint, then the bytes.
    public mutating func writeBytes(_ value: [UInt8]) {
        writeVarint(value.count)
        bytes.append(contentsOf: value)
    }

    public mutating func writeString(_ value: String) {
        writeBytes(Array(value.utf8))
    }

    public mutating func writeDigest(_ value: Digest) {
        bytes.append(contentsOf: value.bytes)
    }
}
