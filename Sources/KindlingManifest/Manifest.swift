public import KindlingCrypto

/// A header with the publisher's signature over it: what nodes gossip to announce a snapshot.
public struct SignedHeader: Hashable, Sendable {
    /// The signed message is this prefix followed by the header bytes (domain separation).
    public static let signatureDomain: [UInt8] = Array("kindling-manifest-v1".utf8) + [0]

    public let header: ManifestHeader
    public let headerBytes: [UInt8]
    public let signature: Signature
    /// BLAKE2b-256 of the header bytes: the manifest id.
    public let id: Digest

    /// Decodes the header; does not check the signature (that needs a trust policy: `TrustPolicy.evaluate`).
    public init(headerBytes: [UInt8], signature: Signature) throws(FormatError) {
        self.header = try ManifestHeader(decoding: headerBytes)
        self.headerBytes = headerBytes
        self.signature = signature
        self.id = Blake2b.hash(headerBytes)
    }

    /// Signs a header with `key`; the header's publisher must be the key's public key.
    public init(signing header: ManifestHeader, with key: SigningKey) {
        precondition(header.publisher == key.publicKey, "a header is signed by its own publisher")
        let bytes = header.encoded()
        self.header = header
        self.headerBytes = bytes
        self.signature = key.sign(Self.signatureDomain + bytes)
        self.id = Blake2b.hash(bytes)
    }

    /// True when the signature is the publisher's signature over these header bytes.
    public var hasValidSignature: Bool {
        header.publisher.isValidSignature(signature, for: Self.signatureDomain + headerBytes)
    }
}

/// A complete manifest: the signed header and the body it commits to.
public struct Manifest: Hashable, Sendable {
    public let signed: SignedHeader
    public let body: ManifestBody
    public let bodyBytes: [UInt8]

    public var id: Digest { signed.id }
    public var header: ManifestHeader { signed.header }

    /// Builds and signs a manifest for `entries`, validating the repository name first.
    public static func sign(
        repository: String, commit: String, createdAt: UInt64, cacheKey: [String: String],
        body: ManifestBody, with key: SigningKey
    ) throws(FormatError) -> Manifest {
        try sign(
            repository: RepositoryName(repository), commit: commit, createdAt: createdAt, cacheKey: cacheKey,
            body: body, with: key)
    }

    /// Builds and signs a manifest for `entries`.
    public static func sign(
        repository: RepositoryName, commit: String, createdAt: UInt64, cacheKey: [String: String],
        body: ManifestBody, with key: SigningKey
    ) throws(FormatError) -> Manifest {
        try ManifestHeader.validateCommit(commit)
        try validateCacheKey(cacheKey)
        try body.validate()
        let bodyBytes = body.encoded()
        guard bodyBytes.count <= ManifestLimits.maxBodyBytes else {
            throw .invalid(field: "body", reason: "larger than \(ManifestLimits.maxBodyBytes) bytes")
        }
        let header = ManifestHeader(
            repository: repository, commit: commit, createdAt: createdAt, publisher: key.publicKey,
            cacheKey: cacheKey, bodyDigest: Blake2b.hash(bodyBytes), bodyByteCount: bodyBytes.count,
            entryCount: body.entries.count, fileByteCount: body.fileByteCount,
            chunkReferenceCount: body.chunkReferenceCount)
        return Manifest(signed: SignedHeader(signing: header, with: key), body: body, bodyBytes: bodyBytes)
    }

    /// Joins a header with body bytes that arrived separately, checking that they belong together.
    public init(signed: SignedHeader, bodyBytes: [UInt8]) throws(FormatError) {
        guard bodyBytes.count == signed.header.bodyByteCount else {
            throw .invalid(
                field: "body", reason: "has \(bodyBytes.count) bytes, the header says \(signed.header.bodyByteCount)")
        }
        guard Blake2b.hash(bodyBytes) == signed.header.bodyDigest else {
            throw .invalid(field: "body", reason: "does not match the digest in the signed header (tampered?)")
        }
        let body = try ManifestBody(decoding: bodyBytes)
        guard body.entries.count == signed.header.entryCount,
            body.fileByteCount == signed.header.fileByteCount,
            body.chunkReferenceCount == signed.header.chunkReferenceCount
        else {
            throw .invalid(field: "body", reason: "entry, byte or chunk totals differ from the header")
        }
        self.init(signed: signed, body: body, bodyBytes: bodyBytes)
    }

    private init(signed: SignedHeader, body: ManifestBody, bodyBytes: [UInt8]) {
        self.signed = signed
        self.body = body
        self.bodyBytes = bodyBytes
    }

    static func validateCacheKey(_ cacheKey: [String: String]) throws(FormatError) {
        guard cacheKey.count <= ManifestLimits.maxCacheKeyEntries else {
            throw .invalid(field: "cache key", reason: "more than \(ManifestLimits.maxCacheKeyEntries) entries")
        }
        for (name, value) in cacheKey {
            guard !name.isEmpty, name.utf8.count <= ManifestLimits.maxCacheKeyNameBytes,
                value.utf8.count <= ManifestLimits.maxCacheKeyValueBytes
            else {
                throw .invalid(field: "cache key", reason: "'\(name.prefix(80))' is empty or too long")
            }
        }
    }
}
