public import KindlingCrypto

/// Progress of a fetch, reported a few times a second.
public struct FetchProgress: Sendable, Codable {
    public var manifest: Digest
    public var totalBytes: Int
    /// Bytes held so far, including what was already local.
    public var doneBytes: Int
    public var peers: Int
}

/// What a fetch did: where the bytes came from.
public struct FetchResult: Sendable, Codable {
    public var manifest: Digest
    public var totalBytes: Int
    public var alreadyLocalBytes: Int
    public var fetchedBytes = 0
    /// Bytes on the wire (compressed), per peer node id.
    public var wireBytesByPeer: [String: Int] = [:]
    public var chunksFetched = 0
    public var retries = 0
    public var peersBanned = 0
    public var seconds = 0.0

    public init(manifest: Digest, totalBytes: Int, alreadyLocalBytes: Int) {
        self.manifest = manifest
        self.totalBytes = totalBytes
        self.alreadyLocalBytes = alreadyLocalBytes
    }
}

extension Digest: Codable {
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let digest = Digest(hex: text) else {
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: "not a 64-digit hex id"))
        }
        self = digest
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(hex)
    }
}
