public import Foundation
public import KindlingCrypto

/// The newest snapshot of one branch and profile, as bors last published it.
public struct HeadEntry: Sendable, Hashable {
    /// The branch name as git spells it (`master`, `auto`): 1 to 255 bytes, no control characters.
    public var branch: String
    /// The build profile (`dev`, `release`): 1 to 64 bytes, no control characters.
    public var profile: String
    public var commit: String
    public var manifest: Digest

    public init(branch: String, profile: String, commit: String, manifest: Digest) {
        self.branch = branch
        self.profile = profile
        self.commit = commit
        self.manifest = manifest
    }

    /// The order of entries in a record: by branch, then profile, as UTF-8 bytes.
    static func precedes(_ a: HeadEntry, _ b: HeadEntry) -> Bool {
        let (ab, bb) = (Array(a.branch.utf8), Array(b.branch.utf8))
        if ab != bb { return ab.lexicographicallyPrecedes(bb) }
        return Array(a.profile.utf8).lexicographicallyPrecedes(Array(b.profile.utf8))
    }
}

/// The signed content of a head record (Specs/freshness.md): bors's statement "for this repository, these are the
/// newest snapshots, as of `issued`, and this holds until `expires`". A node keeps the highest `sequence` per
/// (repository, publisher) and never goes back, so a peer cannot hide a newer build by replaying an older record,
/// and an expired record tells the node that it has heard nothing from bors for too long.
public struct HeadRecord: Sendable, Hashable {
    public static let magic: [UInt8] = Array("KNDH".utf8)
    public static let formatVersion: UInt64 = 1
    public static let maximumSequence = UInt64(Int64.max)
    public static let maximumEntryCount = 64
    public static let maximumBranchBytes = 255
    public static let maximumProfileBytes = 64
    /// How long a record holds when `kindling publish` is not told otherwise.
    public static let defaultLifetime: TimeInterval = 7 * 24 * 3600

    public var repository: RepositoryName
    /// The key that signs the record (the same bors key as the manifests it names).
    public var publisher: PublicKey
    /// Strictly increasing per (repository, publisher); at least 1.
    public var sequence: UInt64
    /// When bors signed it. Whole seconds.
    public var issued: Date
    /// After this instant the record is stale; later than `issued`. Whole seconds.
    public var expires: Date
    /// At most one per (branch, profile); kept sorted.
    public var entries: [HeadEntry]

    public init(
        repository: RepositoryName, publisher: PublicKey, sequence: UInt64, issued: Date, expires: Date,
        entries: [HeadEntry]
    ) {
        self.repository = repository
        self.publisher = publisher
        self.sequence = sequence
        self.issued = TrustDocument.wholeSeconds(issued)
        self.expires = TrustDocument.wholeSeconds(expires)
        self.entries = entries.sorted(by: HeadEntry.precedes)
    }

    /// The entry for `branch` and `profile`, if the record has one.
    public func entry(branch: String, profile: String) -> HeadEntry? {
        entries.first { $0.branch == branch && $0.profile == profile }
    }

    /// This record with `entry` added or replacing the one of its branch and profile.
    public func merging(_ entry: HeadEntry) -> [HeadEntry] {
        entries.filter { $0.branch != entry.branch || $0.profile != entry.profile } + [entry]
    }

    // MARK: canonical encoding

    /// The canonical bytes (Specs/freshness.md, "Canonical encoding"): what the signature covers.
    public func encoded() -> [UInt8] {
        var writer = CanonicalWriter()
        writer.writeRaw(Self.magic)
        writer.writeVarint(Self.formatVersion)
        writer.writeString(repository.text)
        writer.writeRaw(publisher.bytes)
        writer.writeVarint(sequence)
        writer.writeVarint(TrustDocument.seconds(issued))
        writer.writeVarint(TrustDocument.seconds(expires))
        let sorted = entries.sorted(by: HeadEntry.precedes)
        writer.writeVarint(sorted.count)
        for entry in sorted {
            writer.writeString(entry.branch)
            writer.writeString(entry.profile)
            writer.writeString(entry.commit)
            writer.writeDigest(entry.manifest)
        }
        return writer.bytes
    }

    /// Throws when the record breaks a rule of the format (what the decoder would refuse).
    public func validate() throws(FormatError) {
        var reader = CanonicalReader(encoded())
        _ = try Self.decodeCanonical(&reader)
        try reader.expectEnd("head record")
    }

    static func decodeCanonical(_ reader: inout CanonicalReader) throws(FormatError) -> HeadRecord {
        guard Array(try reader.readRaw(count: 4, "magic")) == magic else { throw .badMagic(what: "head record") }
        let format = try reader.readVarint("format version")
        guard format == formatVersion else { throw .unsupportedVersion(what: "head record", version: format) }
        let repositoryText = try reader.readString("repository", maxCount: ManifestLimits.maxRepositoryBytes)
        let repository = try RepositoryName(repositoryText)
        let keyBytes = Array(try reader.readRaw(count: PublicKey.byteCount, "publisher"))
        guard let publisher = try? PublicKey(bytes: keyBytes) else { throw .truncated(field: "publisher") }
        let sequence = try reader.readVarint("sequence")
        guard (1...maximumSequence).contains(sequence) else {
            throw .invalid(field: "sequence", reason: "\(sequence) is outside 1...\(maximumSequence)")
        }
        let issued = try reader.readVarint("issued")
        let expires = try reader.readVarint("expires")
        guard expires <= TrustDocument.maximumTime else {
            throw .invalid(field: "expires", reason: "\(expires) seconds is after 9999-12-31T23:59:59Z")
        }
        guard issued < expires else {
            throw .invalid(field: "expires", reason: "\(expires) is not after the issue time \(issued)")
        }
        let count = try reader.readInt("entry count", in: 0...maximumEntryCount)
        var entries: [HeadEntry] = []
        for _ in 0..<count {
            let branch = try readLabel(&reader, "branch", maxCount: maximumBranchBytes)
            let profile = try readLabel(&reader, "profile", maxCount: maximumProfileBytes)
            let commit = try reader.readString("commit", maxCount: ManifestLimits.maxCommitBytes)
            try ManifestHeader.validateCommit(commit)
            let manifest = try reader.readDigest("manifest id")
            let entry = HeadEntry(branch: branch, profile: profile, commit: commit, manifest: manifest)
            if let last = entries.last, !HeadEntry.precedes(last, entry) {
                throw .invalid(
                    field: "entries", reason: "not in strictly ascending (branch, profile) order at '\(branch)'")
            }
            entries.append(entry)
        }
        return HeadRecord(
            repository: repository, publisher: publisher, sequence: sequence,
            issued: Date(timeIntervalSince1970: Double(issued)), expires: Date(timeIntervalSince1970: Double(expires)),
            entries: entries)
    }

    /// A branch or profile name: not empty, no control characters (they would reach a terminal in `status`).
    private static func readLabel(
        _ reader: inout CanonicalReader, _ field: String, maxCount: Int
    ) throws(FormatError) -> String {
        let text = try reader.readString(field, maxCount: maxCount)
        guard !text.isEmpty, text.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7f }) else {
            throw .invalid(field: field, reason: "must be 1 to \(maxCount) bytes without control characters")
        }
        return text
    }
}

/// A head record with bors's signature: what the wire carries, the node keeps and `kindling cargo` consults.
/// Its bytes are the canonical content followed by the 64-byte Ed25519 signature over
/// `signingDomain || content`.
public struct SignedHeadRecord: Sendable, Hashable {
    /// Keeps a head record signature from being valid as a manifest's or a trust document's, and the other way.
    public static let signingDomain: [UInt8] = Array("kindling-head-record-v1".utf8) + [0]
    /// 64 entries of the longest names are about 30 KiB; anything larger is not a head record.
    public static let maximumEncodedSize = 64 << 10

    public let record: HeadRecord
    public let signedBytes: [UInt8]
    public let signature: Signature

    /// Signs `record` with `key`; the record's publisher becomes `key`'s public key.
    public static func sign(_ record: HeadRecord, with key: SigningKey) -> SignedHeadRecord {
        var record = record
        record.publisher = key.publicKey
        let bytes = record.encoded()
        return SignedHeadRecord(record: record, signedBytes: bytes, signature: key.sign(signingDomain + bytes))
    }

    init(record: HeadRecord, signedBytes: [UInt8], signature: Signature) {
        self.record = record
        self.signedBytes = signedBytes
        self.signature = signature
    }

    public var signingInput: [UInt8] { Self.signingDomain + signedBytes }

    /// Whether the signature verifies under the key the record names. Not checked by `decode`, so that a record
    /// of a key nobody trusts is dropped as disagreement before its signature is looked at (and a forged one under
    /// a trusted key is told apart as a lie).
    public var hasValidSignature: Bool { record.publisher.isValidSignature(signature, for: signingInput) }

    public func encoded() -> [UInt8] { signedBytes + signature.bytes }

    /// Strict and bounded: refuses more than `maximumEncodedSize` bytes, and any content that is not the one
    /// canonical encoding of its value.
    public static func decode(_ bytes: [UInt8]) throws(HeadRecordError) -> SignedHeadRecord {
        guard bytes.count <= maximumEncodedSize else { throw .tooLarge(size: bytes.count, limit: maximumEncodedSize) }
        guard bytes.count > Signature.byteCount else {
            throw .badEncoding(.truncated(field: "head record and signature"))
        }
        let content = Array(bytes.dropLast(Signature.byteCount))
        do throws(FormatError) {
            var reader = CanonicalReader(content)
            let record = try HeadRecord.decodeCanonical(&reader)
            try reader.expectEnd("head record")
            // Decode is strict, so re-encoding gives the bytes back; checked anyway: the signature covers them.
            guard record.encoded() == content else {
                throw .invalid(field: "head record", reason: "not the canonical encoding of its value")
            }
            guard let signature = try? Signature(bytes: Array(bytes.suffix(Signature.byteCount))) else {
                throw .truncated(field: "signature")
            }
            return SignedHeadRecord(record: record, signedBytes: content, signature: signature)
        } catch {
            throw .badEncoding(error)
        }
    }
}
