public import Foundation
public import KindlingCrypto

/// One publisher key a node accepts, and what it may sign.
public struct TrustedKey: Hashable, Sendable {
    public var name: String
    public var publicKey: PublicKey
    /// Repositories this key may sign for.
    public var repositories: [RepositoryGlob]
    /// Manifests created before this instant are rejected (nil: no lower bound).
    public var validFrom: Date?
    /// Manifests created after this instant are rejected (nil: no upper bound). Set it to retire a key.
    public var validUntil: Date?
    /// A revoked key is rejected for every manifest, whatever its creation time: for compromised keys.
    public var revoked: Bool

    public init(
        name: String, publicKey: PublicKey, repositories: [RepositoryGlob] = [RepositoryGlob("**")],
        validFrom: Date? = nil, validUntil: Date? = nil, revoked: Bool = false
    ) {
        self.name = name
        self.publicKey = publicKey
        self.repositories = repositories
        self.validFrom = validFrom
        self.validUntil = validUntil
        self.revoked = revoked
    }
}

/// The set of publisher keys a node accepts (Specs/trust.md): a JSON document, `{"kindling-trust": 1, "keys": [...]}`.
public struct TrustFile: Hashable, Sendable {
    public static let formatVersion = 1

    public var keys: [TrustedKey]

    public init(keys: [TrustedKey] = []) {
        self.keys = keys
    }

    /// Reads and validates a trust file.
    public static func load(path: String) throws(TrustError) -> TrustFile {
        // Whoever can write the trust file decides what this node accepts.
        do throws(GuardedFileError) { try GuardedFile.check(path, what: "trust file") } catch {
            throw .unsafeFile(error)
        }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw .cannotRead(path: path, reason: Self.describe(error))
        }
        return try parse(data, path: path)
    }

    public static func parse(_ data: Data, path: String) throws(TrustError) -> TrustFile {
        let document: TrustFileJSON
        do {
            document = try JSONDecoder().decode(TrustFileJSON.self, from: data)
        } catch {
            throw .malformed(path: path, reason: Self.describe(error))
        }
        guard document.version == formatVersion else {
            throw .malformed(path: path, reason: "version \(document.version) is not supported (expected 1)")
        }
        var keys: [TrustedKey] = []
        var names = Set<String>()
        var publicKeys = Set<PublicKey>()
        for entry in document.keys {
            guard !entry.name.isEmpty, names.insert(entry.name).inserted else {
                throw .malformed(path: path, reason: "key names must be non-empty and unique ('\(entry.name)')")
            }
            let publicKey: PublicKey
            do {
                publicKey = try PublicKey(text: entry.publicKey)
            } catch {
                throw .malformed(path: path, reason: "key '\(entry.name)': \(error)")
            }
            // One entry per key: with two, which scope and validity applies would depend on their order.
            guard publicKeys.insert(publicKey).inserted else {
                throw .malformed(path: path, reason: "key '\(entry.name)' repeats the public key of an earlier entry")
            }
            guard !entry.repositories.isEmpty else {
                throw .malformed(path: path, reason: "key '\(entry.name)' lists no repositories")
            }
            keys.append(
                TrustedKey(
                    name: entry.name, publicKey: publicKey, repositories: entry.repositories.map(RepositoryGlob.init),
                    validFrom: try parseDate(entry.validFrom, field: "validFrom", key: entry.name, path: path),
                    validUntil: try parseDate(entry.validUntil, field: "validUntil", key: entry.name, path: path),
                    revoked: entry.revoked ?? false))
        }
        return TrustFile(keys: keys)
    }

    /// The JSON text, keys in a stable order so the file diffs well.
    public func encoded() -> Data {
        let document = TrustFileJSON(
            version: Self.formatVersion,
            keys: keys.map { key in
                TrustFileJSON.Key(
                    name: key.name, publicKey: key.publicKey.text, repositories: key.repositories.map(\.pattern),
                    validFrom: key.validFrom.map(Self.formatDate), validUntil: key.validUntil.map(Self.formatDate),
                    revoked: key.revoked ? true : nil)
            })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // Encoding plain strings and arrays cannot fail.
        return ((try? encoder.encode(document)) ?? Data()) + Data("\n".utf8)
    }

    /// Writes atomically (temporary file, then rename), so a reader never sees half a trust file.
    public func save(path: String) throws(TrustError) {
        do {
            try encoded().write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw .cannotWrite(path: path, reason: Self.describe(error))
        }
    }

    public static func formatDate(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle())
    }

    public static func parseDate(_ text: String) -> Date? {
        try? Date(text, strategy: Date.ISO8601FormatStyle())
    }

    private static func parseDate(_ text: String?, field: String, key: String, path: String) throws(TrustError) -> Date?
    {
        guard let text else { return nil }
        guard let date = parseDate(text) else {
            throw .malformed(
                path: path, reason: "key '\(key)': \(field) '\(text)' is not an ISO 8601 time like 2026-01-31T00:00:00Z"
            )
        }
        return date
    }

    static func describe(_ error: any Error) -> String {
        if let decoding = error as? DecodingError {
            switch decoding {
            case .dataCorrupted(let context): return "not valid JSON: \(context.debugDescription)"
            case .keyNotFound(let key, _): return "missing field '\(key.stringValue)'"
            case .typeMismatch(_, let context), .valueNotFound(_, let context):
                let where_ = context.codingPath.map(\.stringValue).joined(separator: ".")
                return "wrong type at '\(where_)': \(context.debugDescription)"
            @unknown default: return "\(decoding)"
            }
        }
        if let cocoa = error as? CocoaError, let underlying = cocoa.userInfo[NSUnderlyingErrorKey] as? NSError {
            return String(cString: strerror(Int32(underlying.code)))
        }
        return error.localizedDescription
    }
}

/// The JSON shape of the trust file.
private struct TrustFileJSON: Codable {
    struct Key: Codable {
        var name: String
        var publicKey: String
        var repositories: [String]
        var validFrom: String?
        var validUntil: String?
        var revoked: Bool?
    }

    var version: Int
    var keys: [Key]

    enum CodingKeys: String, CodingKey {
        case version = "kindling-trust"
        case keys
    }
}
