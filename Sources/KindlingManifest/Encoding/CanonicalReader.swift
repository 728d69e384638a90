public import KindlingCrypto

/// Reads the canonical encoding, rejecting anything that is not the one valid encoding of its value.
///
/// Every read is bounds-checked and every length is checked against a caller-supplied limit before anything is
/// allocated, so hostile input can neither crash the reader nor make it allocate more than the input's size.
public struct CanonicalReader: Sendable {
    public let bytes: [UInt8]
    public private(set) var offset: Int

    public init(_ bytes: [UInt8], offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    public var remaining: Int { bytes.count - offset }
    public var isAtEnd: Bool { offset == bytes.count }

    public mutating func readByte(_ field: String) throws(FormatError) -> UInt8 {
        guard offset < bytes.count else { throw .truncated(field: field) }
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func readRaw(count: Int, _ field: String) throws(FormatError) -> ArraySlice<UInt8> {
        guard count >= 0, count <= remaining else { throw .truncated(field: field) }
        defer { offset += count }
        return bytes[offset..<offset + count]
    }

    public mutating func readVarint(_ field: String) throws(FormatError) -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        for index in 0..<10 {
            let byte = try readByte(field)
            if index == 9 && byte > 1 { throw .invalid(field: field, reason: "integer overflows 64 bits") }
            value |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 {
                // Minimal: a multi-byte encoding may not end in a zero byte.
                if index > 0 && byte == 0 { throw .invalid(field: field, reason: "integer is not minimally encoded") }
                return value
            }
            shift += 7
        }
        throw .invalid(field: field, reason: "integer longer than 10 bytes")
    }

    /// A varint that must lie in `range`.
    public mutating func readInt(_ field: String, in range: ClosedRange<Int>) throws(FormatError) -> Int {
        let value = try readVarint(field)
        guard value <= UInt64(Int.max), range.contains(Int(value)) else {
            throw .outOfRange(field: field, value: value, allowed: range)
        }
        return Int(value)
    }

    public mutating func readBytes(_ field: String, maxCount: Int) throws(FormatError) -> [UInt8] {
        let count = try readInt(field + " length", in: 0...maxCount)
        return Array(try readRaw(count: count, field))
    }

    public mutating func readString(_ field: String, maxCount: Int) throws(FormatError) -> String {
        let raw = try readBytes(field, maxCount: maxCount)
        guard let text = String(validating: raw, as: UTF8.self) else {
            throw .invalid(field: field, reason: "not valid UTF-8")
        }
        return text
    }

    public mutating func readDigest(_ field: String) throws(FormatError) -> Digest {
        let raw = try readRaw(count: Digest.byteCount, field)
        guard let digest = Digest(bytes: raw) else { throw .truncated(field: field) }
        return digest
    }

    public func expectEnd(_ what: String) throws(FormatError) {
        guard isAtEnd else { throw .trailingBytes(what: what, count: remaining) }
    }
}

/// Canonical maps and entry lists are sorted by the UTF-8 bytes of their keys, with no duplicates.
func requireStrictlyAscending(_ key: String, after previous: inout [UInt8]?, field: String) throws(FormatError) {
    let bytes = Array(key.utf8)
    if let last = previous, !last.lexicographicallyPrecedes(bytes) {
        throw .invalid(field: field, reason: "not in strictly ascending byte order at '\(key.prefix(100))'")
    }
    previous = bytes
}
