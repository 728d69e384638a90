public import KindlingCrypto
public import KindlingManifest

/// The unique chunks of a manifest in order of first appearance: the numbering that availability bitfields and
/// HaveChunks indices use (Specs/wire.md, "Availability").
public struct ChunkIndex: Sendable {
    public let chunks: [ChunkReference]
    private let positions: [Digest: Int]

    public init(manifest: Manifest) {
        var chunks: [ChunkReference] = []
        var positions: [Digest: Int] = [:]
        for entry in manifest.body.entries {
            for chunk in entry.chunks where positions[chunk.id] == nil {
                positions[chunk.id] = chunks.count
                chunks.append(chunk)
            }
        }
        self.chunks = chunks
        self.positions = positions
    }

    public var count: Int { chunks.count }
    public var totalBytes: Int { chunks.reduce(0) { $0 + $1.length } }

    public func position(of id: Digest) -> Int? { positions[id] }
}

/// A growable set of chunk indexes, stored as a bitfield (least significant bit first within each byte).
public struct Bitset: Hashable, Sendable {
    public private(set) var bytes: [UInt8]
    public private(set) var count: Int

    public init(capacity: Int = 0) {
        bytes = [UInt8](repeating: 0, count: (capacity + 7) / 8)
        count = 0
    }

    public init(bytes: [UInt8]) {
        self.bytes = bytes
        count = bytes.reduce(0) { $0 + $1.nonzeroBitCount }
    }

    public func contains(_ index: Int) -> Bool {
        let byte = index >> 3
        return byte < bytes.count && bytes[byte] & (1 << UInt8(index & 7)) != 0
    }

    public mutating func insert(_ index: Int) {
        let byte = index >> 3
        if byte >= bytes.count { bytes.append(contentsOf: [UInt8](repeating: 0, count: byte - bytes.count + 1)) }
        let mask: UInt8 = 1 << UInt8(index & 7)
        if bytes[byte] & mask == 0 {
            bytes[byte] |= mask
            count += 1
        }
    }

    /// True when every index in `0..<total` is present.
    public func isFull(total: Int) -> Bool { count >= total }
}
