public import KindlingCrypto

/// The signed part of a manifest: who published which build state of which commit, and a digest of the body.
///
/// Small enough to gossip; a node can judge a snapshot (trust, repository, cache key, size) from the header
/// alone and fetches the body only when it wants the snapshot. Its id is BLAKE2b-256 of its canonical bytes.
public struct ManifestHeader: Hashable, Sendable {
    public static let magic: [UInt8] = Array("KNDM".utf8)
    public static let formatVersion: UInt64 = 1

    public var repositoryName: RepositoryName
    /// The name as text. KindlingMesh reads this while it is being rewritten (issue 11); everything else uses
    /// `repositoryName`.
    public var repository: String { repositoryName.text }
    public var commit: String
    /// Nanoseconds since the Unix epoch, from the publisher's clock.
    public var createdAt: UInt64
    public var publisher: PublicKey
    /// What a build must match to use this snapshot (toolchain, target triple, profile, flags...).
    public var cacheKey: [String: String]
    public var bodyDigest: Digest
    public var bodyByteCount: Int
    public var entryCount: Int
    public var fileByteCount: Int
    public var chunkReferenceCount: Int

    public init(
        repository: RepositoryName, commit: String, createdAt: UInt64, publisher: PublicKey,
        cacheKey: [String: String], bodyDigest: Digest, bodyByteCount: Int, entryCount: Int, fileByteCount: Int,
        chunkReferenceCount: Int
    ) {
        self.repositoryName = repository
        self.commit = commit
        self.createdAt = createdAt
        self.publisher = publisher
        self.cacheKey = cacheKey
        self.bodyDigest = bodyDigest
        self.bodyByteCount = bodyByteCount
        self.entryCount = entryCount
        self.fileByteCount = fileByteCount
        self.chunkReferenceCount = chunkReferenceCount
    }

    /// The canonical bytes (Specs/manifest.md, "Header").
    public func encoded() -> [UInt8] {
        var writer = CanonicalWriter(reservingCapacity: 256)
        writer.writeRaw(Self.magic)
        writer.writeVarint(Self.formatVersion)
        writer.writeString(repository)
        writer.writeString(commit)
        writer.writeVarint(createdAt)
        writer.writeRaw(publisher.bytes)
        writer.writeVarint(cacheKey.count)
        for (name, value) in Self.sortedPairs(cacheKey) {
            writer.writeString(name)
            writer.writeString(value)
        }
        writer.writeDigest(bodyDigest)
        writer.writeVarint(bodyByteCount)
        writer.writeVarint(entryCount)
        writer.writeVarint(fileByteCount)
        writer.writeVarint(chunkReferenceCount)
        return writer.bytes
    }

    public init(decoding bytes: [UInt8]) throws(FormatError) {
        guard bytes.count <= ManifestLimits.maxHeaderBytes else {
            throw .invalid(field: "header", reason: "larger than \(ManifestLimits.maxHeaderBytes) bytes")
        }
        var reader = CanonicalReader(bytes)
        guard bytes.count >= 4, try reader.readRaw(count: 4, "magic").elementsEqual(Self.magic) else {
            throw .badMagic(what: "manifest header")
        }
        let version = try reader.readVarint("format version")
        guard version == Self.formatVersion else { throw .unsupportedVersion(what: "manifest", version: version) }
        repositoryName = try RepositoryName(
            reader.readString("repository", maxCount: ManifestLimits.maxRepositoryBytes))
        commit = try reader.readString("commit", maxCount: ManifestLimits.maxCommitBytes)
        try Self.validateCommit(commit)
        createdAt = try reader.readVarint("creation time")
        do {
            publisher = try PublicKey(bytes: Array(try reader.readRaw(count: PublicKey.byteCount, "publisher key")))
        } catch let error as FormatError {
            throw error
        } catch {
            throw .invalid(field: "publisher key", reason: "\(error)")
        }
        let keyCount = try reader.readInt("cache key size", in: 0...ManifestLimits.maxCacheKeyEntries)
        var cacheKey: [String: String] = [:]
        var previous: [UInt8]? = nil
        for _ in 0..<keyCount {
            let name = try reader.readString("cache key name", maxCount: ManifestLimits.maxCacheKeyNameBytes)
            let value = try reader.readString("cache key value", maxCount: ManifestLimits.maxCacheKeyValueBytes)
            guard !name.isEmpty else { throw .invalid(field: "cache key name", reason: "empty") }
            try requireStrictlyAscending(name, after: &previous, field: "cache key names")
            // Swift's String equality is Unicode-canonical: two names with different bytes could share a key, and
            // re-encoding would then differ from the signed bytes.
            guard cacheKey.updateValue(value, forKey: name) == nil else {
                throw .invalid(
                    field: "cache key names", reason: "two names are the same text in different Unicode forms")
            }
        }
        self.cacheKey = cacheKey
        bodyDigest = try reader.readDigest("body digest")
        bodyByteCount = try reader.readInt("body size", in: 0...ManifestLimits.maxBodyBytes)
        entryCount = try reader.readInt("entry count", in: 0...ManifestLimits.maxEntries)
        fileByteCount = try reader.readInt("total file size", in: 0...Int.max)
        chunkReferenceCount = try reader.readInt("chunk count", in: 0...ManifestLimits.maxChunkReferences)
        try reader.expectEnd("manifest header")
    }

    /// Any printable ASCII without spaces: a commit hash, or a tag-like name.
    public static func validateCommit(_ commit: String) throws(FormatError) {
        guard !commit.isEmpty, commit.utf8.count <= ManifestLimits.maxCommitBytes,
            commit.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f })
        else {
            throw .invalid(field: "commit", reason: "must be 1 to 128 printable ASCII characters without spaces")
        }
    }

    static func sortedPairs<Value>(_ map: [String: Value]) -> [(String, Value)] {
        map.sorted { Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) }
    }
}
