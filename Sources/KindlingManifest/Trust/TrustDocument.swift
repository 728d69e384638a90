public import Foundation
public import KindlingCrypto

/// The signed content of a trust document (Specs/trust.md, "Trust documents"): which publisher keys a node
/// accepts, which manifests nobody may use any more, until when this holds, and which roots govern it.
public struct TrustDocument: Sendable, Hashable {
    public static let magic: [UInt8] = Array("KNDT".utf8)
    public static let formatVersion: UInt64 = 1

    // Bounds of the canonical encoding; the decoder checks each before it allocates.
    public static let maximumVersion = UInt64(Int64.max)
    /// 9999-12-31T23:59:59Z, the last instant an ISO 8601 time with a four-digit year can name.
    public static let maximumTime: UInt64 = 253_402_300_799
    public static let maximumKeyCount = 1024
    public static let maximumNameBytes = 128
    public static let maximumRepositoryCount = 64
    public static let maximumGlobBytes = 256
    public static let maximumWithdrawnCount = 8192

    /// Increases with every change; a node never goes back to a lower one. At least 1.
    public var version: UInt64
    /// After this instant the document is refused (freeze protection). Whole seconds.
    public var expires: Date
    /// The roots that govern this version and the next ones.
    public var roots: TrustRoots
    /// The publisher keys, with their repositories, validity and revocation.
    public var keys: [TrustedKey]
    /// Manifest ids no node may use any more.
    public var withdrawn: Set<Digest>

    public init(
        version: UInt64, expires: Date, roots: TrustRoots, keys: [TrustedKey] = [], withdrawn: Set<Digest> = []
    ) {
        self.version = version
        self.expires = expires
        self.roots = roots
        self.keys = keys
        self.withdrawn = withdrawn
    }

    /// The trust gate this document defines.
    public var policy: TrustPolicy {
        TrustPolicy(trust: TrustFile(keys: keys), withdrawn: withdrawn)
    }

    /// The same content in its one canonical form: keys sorted by name, globs sorted without repeats, times cut
    /// to whole seconds. Encoding normalizes, so a normalized document survives decode(encode(document)).
    public var normalized: TrustDocument {
        var copy = self
        copy.expires = Self.wholeSeconds(expires)
        copy.keys = keys.map { key in
            var key = key
            key.repositories = Self.sortedGlobs(key.repositories)
            key.validFrom = key.validFrom.map(Self.wholeSeconds)
            key.validUntil = key.validUntil.map(Self.wholeSeconds)
            return key
        }
        .sorted { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }
        return copy
    }

    /// Throws when the document breaks a rule of the format: what `SignedTrustDocument.decode` would refuse.
    public func validate() throws(TrustDocumentError) {
        do throws(FormatError) {
            var reader = CanonicalReader(encoded())
            _ = try Self.decodeCanonical(&reader)
        } catch {
            throw .invalidDocument(reason: error.description)
        }
    }

    // MARK: canonical encoding

    /// The canonical bytes (Specs/trust.md, "Canonical encoding"): what root signatures cover.
    public func encoded() -> [UInt8] {
        let document = normalized
        var writer = CanonicalWriter()
        writer.writeRaw(Self.magic)
        writer.writeVarint(Self.formatVersion)
        writer.writeVarint(document.version)
        writer.writeVarint(Self.seconds(document.expires))
        writer.writeVarint(document.roots.keys.count)
        for key in document.roots.keys { writer.writeRaw(key.bytes) }
        writer.writeVarint(document.roots.threshold)
        writer.writeVarint(document.keys.count)
        for key in document.keys {
            writer.writeString(key.name)
            writer.writeRaw(key.publicKey.bytes)
            writer.writeVarint(key.repositories.count)
            for glob in key.repositories { writer.writeString(glob.pattern) }
            for time in [key.validFrom, key.validUntil] {
                if let time {
                    writer.writeByte(1)
                    writer.writeVarint(Self.seconds(time))
                } else {
                    writer.writeByte(0)
                }
            }
            writer.writeByte(key.revoked ? 1 : 0)
        }
        writer.writeVarint(document.withdrawn.count)
        for id in document.withdrawn.sorted() { writer.writeDigest(id) }
        return writer.bytes
    }

    /// Decodes canonical bytes, refusing any encoding that is not the one valid encoding of its value.
    public init(canonical bytes: [UInt8]) throws(TrustDocumentError) {
        do throws(FormatError) {
            var reader = CanonicalReader(bytes)
            self = try Self.decodeCanonical(&reader)
            try reader.expectEnd("trust document")
        } catch {
            throw .badEncoding(error)
        }
    }

    static func decodeCanonical(_ reader: inout CanonicalReader) throws(FormatError) -> TrustDocument {
        guard Array(try reader.readRaw(count: 4, "magic")) == magic else { throw .badMagic(what: "trust document") }
        let format = try reader.readVarint("format version")
        guard format == formatVersion else { throw .unsupportedVersion(what: "trust document", version: format) }
        let version = try reader.readVarint("version")
        guard (1...maximumVersion).contains(version) else {
            throw .invalid(field: "version", reason: "\(version) is outside 1...\(maximumVersion)")
        }
        let expires = try readTime(&reader, "expires")

        let rootCount = try reader.readInt("root key count", in: 1...TrustRoots.maximumKeyCount)
        var rootKeys: [PublicKey] = []
        var previousRoot: [UInt8]?
        for _ in 0..<rootCount {
            let key = try readKey(&reader, "root key")
            if let last = previousRoot, !last.lexicographicallyPrecedes(key.bytes) {
                throw .invalid(field: "root keys", reason: "not in strictly ascending byte order at \(key.text)")
            }
            previousRoot = key.bytes
            rootKeys.append(key)
        }
        let threshold = try reader.readInt("threshold", in: 1...rootCount)
        let roots: TrustRoots
        do throws(TrustDocumentError) {
            roots = try TrustRoots(keys: rootKeys, threshold: threshold)
        } catch {
            throw .invalid(field: "roots", reason: error.description)
        }

        let keyCount = try reader.readInt("key count", in: 0...maximumKeyCount)
        var keys: [TrustedKey] = []
        var previousName: [UInt8]?
        var names = Set<String>()
        var publicKeys = Set<PublicKey>()
        for _ in 0..<keyCount {
            let name = try reader.readString("key name", maxCount: maximumNameBytes)
            guard !name.isEmpty else { throw .invalid(field: "key name", reason: "empty") }
            try requireStrictlyAscending(name, after: &previousName, field: "key names")
            // Canonically equal names are one name to Swift (and to a reader of messages).
            guard names.insert(name).inserted else {
                throw .invalid(field: "key names", reason: "'\(name.prefix(100))' is repeated")
            }
            let publicKey = try readKey(&reader, "public key of '\(name.prefix(100))'")
            guard publicKeys.insert(publicKey).inserted else {
                throw .invalid(field: "key '\(name.prefix(100))'", reason: "repeats the public key of another key")
            }
            let globCount = try reader.readInt("repository count", in: 1...maximumRepositoryCount)
            var globs: [RepositoryGlob] = []
            var previousGlob: [UInt8]?
            var seenGlobs = Set<String>()
            for _ in 0..<globCount {
                let glob = try reader.readString("repository glob", maxCount: maximumGlobBytes)
                guard !glob.isEmpty else { throw .invalid(field: "repository glob", reason: "empty") }
                try requireStrictlyAscending(glob, after: &previousGlob, field: "repository globs")
                guard seenGlobs.insert(glob).inserted else {
                    throw .invalid(field: "repository globs", reason: "'\(glob.prefix(100))' is repeated")
                }
                globs.append(RepositoryGlob(glob))
            }
            let validFrom = try readOptionalTime(&reader, "validFrom")
            let validUntil = try readOptionalTime(&reader, "validUntil")
            let revoked = try readFlag(&reader, "revoked")
            keys.append(
                TrustedKey(
                    name: name, publicKey: publicKey, repositories: globs, validFrom: validFrom,
                    validUntil: validUntil, revoked: revoked))
        }

        let withdrawnCount = try reader.readInt("withdrawn count", in: 0...maximumWithdrawnCount)
        var withdrawn = Set<Digest>()
        var previousId: Digest?
        for _ in 0..<withdrawnCount {
            let id = try reader.readDigest("withdrawn manifest id")
            if let last = previousId, !(last < id) {
                throw .invalid(field: "withdrawn", reason: "not in strictly ascending byte order at \(id.hex)")
            }
            previousId = id
            withdrawn.insert(id)
        }
        return TrustDocument(version: version, expires: expires, roots: roots, keys: keys, withdrawn: withdrawn)
    }

    private static func readKey(_ reader: inout CanonicalReader, _ field: String) throws(FormatError) -> PublicKey {
        let raw = Array(try reader.readRaw(count: PublicKey.byteCount, field))
        guard let key = try? PublicKey(bytes: raw) else { throw .truncated(field: field) }
        return key
    }

    private static func readTime(_ reader: inout CanonicalReader, _ field: String) throws(FormatError) -> Date {
        let seconds = try reader.readVarint(field)
        guard seconds <= maximumTime else {
            throw .invalid(field: field, reason: "\(seconds) seconds is after 9999-12-31T23:59:59Z")
        }
        return Date(timeIntervalSince1970: Double(seconds))
    }

    private static func readFlag(_ reader: inout CanonicalReader, _ field: String) throws(FormatError) -> Bool {
        switch try reader.readByte(field) {
        case 0: return false
        case 1: return true
        case let other: throw .invalid(field: field, reason: "flag byte \(other) is neither 0 nor 1")
        }
    }

    private static func readOptionalTime(
        _ reader: inout CanonicalReader, _ field: String
    ) throws(FormatError)
        -> Date?
    {
        try readFlag(&reader, field + " present") ? try readTime(&reader, field) : nil
    }

    // MARK: time and order

    /// Seconds since the epoch, clamped into 0...maximumTime (an encoder never fails; the decoder refuses more).
    static func seconds(_ date: Date) -> UInt64 {
        let value = date.timeIntervalSince1970.rounded(.down)
        guard value > 0 else { return 0 }
        guard value < Double(maximumTime) else { return maximumTime }
        return UInt64(value)
    }

    public static func wholeSeconds(_ date: Date) -> Date {
        Date(timeIntervalSince1970: Double(seconds(date)))
    }

    static func sortedGlobs(_ globs: [RepositoryGlob]) -> [RepositoryGlob] {
        var seen = Set<[UInt8]>()
        return globs.filter { seen.insert(Array($0.pattern.utf8)).inserted }
            .sorted { Array($0.pattern.utf8).lexicographicallyPrecedes(Array($1.pattern.utf8)) }
    }
}
