import KindlingCrypto

/// The 256 random 64-bit values of the gear hash: entry i is the first 8 bytes, read little-endian, of
/// BLAKE2b-256("kindling-gear-v1" || i). Derived rather than pasted so that the spec can state it in one line.
enum GearTable {
    static let values: [UInt64] = (0..<256).map { index in
        let digest = Blake2b.hash(Array("kindling-gear-v1".utf8) + [UInt8(index)]).bytes
        return digest[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }
}
