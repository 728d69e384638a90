import Foundation
import KindlingCrypto

/// The JSON form of a signed trust document (Specs/trust.md, "The file"). Strict: a field this kindling does not
/// know is refused, since a signature must cover everything that decides.
enum TrustDocumentJSON {
    static let formatField = "kindling-trust-document"

    static func decode(_ bytes: [UInt8]) throws(TrustDocumentError) -> SignedTrustDocument {
        let file: FileJSON
        do {
            file = try JSONDecoder().decode(FileJSON.self, from: Data(bytes))
        } catch let error as TrustDocumentError {
            throw error
        } catch {
            throw .malformed(reason: TrustFile.describe(error))
        }
        try refuseRepeatedFields(bytes)
        guard file.signatures.count <= SignedTrustDocument.maximumSignatureCount else {
            throw .malformed(
                reason: "\(file.signatures.count) signatures, more than the limit of "
                    + "\(SignedTrustDocument.maximumSignatureCount)")
        }
        let document = try parse(file.signed)
        let signedBytes = document.encoded()
        // The canonical decoder is the one place that checks every bound; what it returns is what was signed.
        let canonical: TrustDocument
        do throws(TrustDocumentError) {
            canonical = try TrustDocument(canonical: signedBytes)
        } catch {
            if case .badEncoding(let format) = error { throw .invalidDocument(reason: format.description) }
            throw error
        }
        var signatures: [TrustSignature] = []
        for (index, entry) in file.signatures.enumerated() {
            let key: PublicKey
            do { key = try PublicKey(text: entry.key) } catch {
                throw .malformed(reason: "signatures[\(index)].key: \(error)")
            }
            guard entry.signature.utf8.count == Signature.byteCount * 2, let raw = try? Hex.decode(entry.signature)
            else {
                throw .malformed(
                    reason: "signatures[\(index)].signature is not \(Signature.byteCount) bytes in hex "
                        + "(\(Signature.byteCount * 2) hex digits)")
            }
            signatures.append(TrustSignature(key: key, signature: raw))
        }
        return SignedTrustDocument(document: canonical, signedBytes: signedBytes, signatures: signatures)
    }

    /// Refuses an object that names a field twice. JSON parsers disagree on which of the two counts (Foundation
    /// takes the first, Python the last), so a reviewer's tool could show one document and kindling use another.
    /// Runs on text that already parsed as JSON, so strings and nesting are well formed.
    static func refuseRepeatedFields(_ bytes: [UInt8]) throws(TrustDocumentError) {
        // One entry per open object (its field names so far, and whether a name comes next); nil for an array.
        var open: [(names: Set<ArraySlice<UInt8>>, expectingName: Bool)?] = []
        var index = 0
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: "{"): open.append((names: [], expectingName: true))
            case UInt8(ascii: "["): open.append(nil)
            case UInt8(ascii: "}"), UInt8(ascii: "]"): _ = open.popLast()
            case UInt8(ascii: ","):
                if !open.isEmpty { open[open.count - 1]?.expectingName = true }
            case UInt8(ascii: "\""):
                let start = index + 1
                var end = start
                var escaped = false
                while end < bytes.count && bytes[end] != UInt8(ascii: "\"") {
                    if bytes[end] == UInt8(ascii: "\\") {
                        escaped = true
                        end += 1
                    }
                    end += 1
                }
                if let object = open.last ?? nil, object.expectingName {
                    let name = bytes[start..<min(end, bytes.count)]
                    // The format's names are plain ASCII: an escape in a name can only hide one.
                    guard !escaped else {
                        throw .malformed(reason: "a field name is written with escapes; write it plainly")
                    }
                    guard !object.names.contains(name) else {
                        throw .malformed(
                            reason: "field '\(String(decoding: name.prefix(100), as: UTF8.self))' appears twice in "
                                + "one object; JSON readers disagree on which one counts, so the document is refused")
                    }
                    open[open.count - 1]?.names.insert(name)
                    open[open.count - 1]?.expectingName = false
                }
                index = end
            default: break
            }
            index += 1
        }
    }

    private static func parse(_ signed: SignedJSON) throws(TrustDocumentError) -> TrustDocument {
        var rootKeys: [PublicKey] = []
        for (index, text) in signed.roots.keys.enumerated() {
            do { rootKeys.append(try PublicKey(text: text)) } catch {
                throw .malformed(reason: "signed.roots.keys[\(index)]: \(error)")
            }
        }
        let roots = try TrustRoots(keys: rootKeys, threshold: signed.roots.threshold)
        guard (1...TrustDocument.maximumVersion).contains(signed.version) else {
            throw .invalidDocument(reason: "version \(signed.version) is outside 1...\(TrustDocument.maximumVersion)")
        }
        let expires = try parseTime(signed.expires, field: "signed.expires")
        guard signed.keys.count <= TrustDocument.maximumKeyCount else {
            throw .invalidDocument(
                reason: "\(signed.keys.count) keys, more than the limit of \(TrustDocument.maximumKeyCount)")
        }
        var keys: [TrustedKey] = []
        var names = Set<String>()
        var publicKeys = Set<PublicKey>()
        for entry in signed.keys {
            let name = String(entry.name.prefix(100))
            guard !entry.name.isEmpty, names.insert(entry.name).inserted else {
                throw .invalidDocument(reason: "key names must be non-empty and unique ('\(name)')")
            }
            let publicKey: PublicKey
            do { publicKey = try PublicKey(text: entry.publicKey) } catch {
                throw .malformed(reason: "key '\(name)': \(error)")
            }
            guard publicKeys.insert(publicKey).inserted else {
                throw .invalidDocument(reason: "key '\(name)' repeats the public key of another key")
            }
            guard !entry.repositories.isEmpty else {
                throw .invalidDocument(reason: "key '\(name)' lists no repositories")
            }
            guard Set(entry.repositories).count == entry.repositories.count else {
                throw .invalidDocument(reason: "key '\(name)' lists a repository glob twice")
            }
            keys.append(
                TrustedKey(
                    name: entry.name, publicKey: publicKey, repositories: entry.repositories.map(RepositoryGlob.init),
                    validFrom: try entry.validFrom.map { text throws(TrustDocumentError) in
                        try parseTime(text, field: "validFrom of key '\(name)'")
                    },
                    validUntil: try entry.validUntil.map { text throws(TrustDocumentError) in
                        try parseTime(text, field: "validUntil of key '\(name)'")
                    },
                    revoked: entry.revoked ?? false))
        }
        guard signed.withdrawn.count <= TrustDocument.maximumWithdrawnCount else {
            throw .invalidDocument(
                reason: "\(signed.withdrawn.count) withdrawn manifests, more than the limit of "
                    + "\(TrustDocument.maximumWithdrawnCount)")
        }
        var withdrawn = Set<Digest>()
        for text in signed.withdrawn {
            guard let id = Digest(hex: text) else {
                throw .malformed(reason: "withdrawn id '\(text.prefix(100))' is not a manifest id (64 hex digits)")
            }
            guard withdrawn.insert(id).inserted else {
                throw .invalidDocument(reason: "manifest \(id.hex) is withdrawn twice")
            }
        }
        return TrustDocument(version: signed.version, expires: expires, roots: roots, keys: keys, withdrawn: withdrawn)
    }

    private static func parseTime(_ text: String, field: String) throws(TrustDocumentError) -> Date {
        guard let date = TrustFile.parseDate(text), date.timeIntervalSince1970 >= 0,
            date.timeIntervalSince1970 <= Double(TrustDocument.maximumTime),
            date.timeIntervalSince1970.rounded(.down) == date.timeIntervalSince1970
        else {
            throw .malformed(
                reason: "\(field) '\(text.prefix(100))' is not an ISO 8601 time in whole seconds like "
                    + "2026-01-31T00:00:00Z")
        }
        return date
    }

    static func encode(_ signed: SignedTrustDocument) -> [UInt8] {
        let document = signed.document
        let file = FileJSON(
            format: SignedTrustDocument.fileFormatVersion,
            signed: SignedJSON(
                version: document.version, expires: TrustFile.formatDate(document.expires),
                roots: RootsJSON(keys: document.roots.keys.map(\.text), threshold: document.roots.threshold),
                keys: document.keys.map { key in
                    KeyJSON(
                        name: key.name, publicKey: key.publicKey.text, repositories: key.repositories.map(\.pattern),
                        validFrom: key.validFrom.map(TrustFile.formatDate),
                        validUntil: key.validUntil.map(TrustFile.formatDate), revoked: key.revoked ? true : nil)
                },
                withdrawn: document.withdrawn.sorted().map(\.hex)),
            signatures: signed.signatures.map { SignatureJSON(key: $0.key.text, signature: Hex.encode($0.signature)) })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // Strings, integers and arrays of them always encode.
        return Array((try? encoder.encode(file)) ?? Data()) + Array("\n".utf8)
    }
}

// MARK: the JSON shapes, each refusing fields it does not know

private struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

private func refuseUnknownFields(_ decoder: any Decoder, allowed: Set<String>, in object: String) throws {
    let container = try decoder.container(keyedBy: AnyKey.self)
    for key in container.allKeys where !allowed.contains(key.stringValue) {
        throw TrustDocumentError.malformed(
            reason: "unknown field '\(key.stringValue.prefix(100))' in \(object): this kindling does not know what it "
                + "decides, so it refuses the document (upgrade kindling, or remove the field)")
    }
}

private struct FileJSON: Codable {
    var format: UInt64
    var signed: SignedJSON
    var signatures: [SignatureJSON]

    enum CodingKeys: String, CodingKey {
        case format = "kindling-trust-document"
        case signed, signatures
    }

    init(format: UInt64, signed: SignedJSON, signatures: [SignatureJSON]) {
        self.format = format
        self.signed = signed
        self.signatures = signatures
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        // The format first: a newer format's new fields should say "upgrade", not "unknown field".
        format = try container.decode(UInt64.self, forKey: .format)
        guard format == SignedTrustDocument.fileFormatVersion else {
            throw TrustDocumentError.unsupportedFormat(version: format)
        }
        try refuseUnknownFields(decoder, allowed: ["kindling-trust-document", "signed", "signatures"], in: "the file")
        signed = try container.decode(SignedJSON.self, forKey: .signed)
        signatures = try container.decode([SignatureJSON].self, forKey: .signatures)
    }
}

private struct SignedJSON: Codable {
    var version: UInt64
    var expires: String
    var roots: RootsJSON
    var keys: [KeyJSON]
    var withdrawn: [String]

    enum CodingKeys: String, CodingKey, CaseIterable {
        case version, expires, roots, keys, withdrawn
    }

    init(version: UInt64, expires: String, roots: RootsJSON, keys: [KeyJSON], withdrawn: [String]) {
        self.version = version
        self.expires = expires
        self.roots = roots
        self.keys = keys
        self.withdrawn = withdrawn
    }

    init(from decoder: any Decoder) throws {
        try refuseUnknownFields(decoder, allowed: Set(CodingKeys.allCases.map(\.rawValue)), in: "'signed'")
        let container = try decoder.container(keyedBy: CodingKeys.self)
        version = try container.decode(UInt64.self, forKey: .version)
        expires = try container.decode(String.self, forKey: .expires)
        roots = try container.decode(RootsJSON.self, forKey: .roots)
        keys = try container.decode([KeyJSON].self, forKey: .keys)
        withdrawn = try container.decode([String].self, forKey: .withdrawn)
    }
}

private struct RootsJSON: Codable {
    var keys: [String]
    var threshold: Int

    enum CodingKeys: String, CodingKey, CaseIterable {
        case keys, threshold
    }

    init(keys: [String], threshold: Int) {
        self.keys = keys
        self.threshold = threshold
    }

    init(from decoder: any Decoder) throws {
        try refuseUnknownFields(decoder, allowed: Set(CodingKeys.allCases.map(\.rawValue)), in: "'signed.roots'")
        let container = try decoder.container(keyedBy: CodingKeys.self)
        keys = try container.decode([String].self, forKey: .keys)
        threshold = try container.decode(Int.self, forKey: .threshold)
    }
}

private struct KeyJSON: Codable {
    var name: String
    var publicKey: String
    var repositories: [String]
    var validFrom: String?
    var validUntil: String?
    var revoked: Bool?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, publicKey, repositories, validFrom, validUntil, revoked
    }

    init(
        name: String, publicKey: String, repositories: [String], validFrom: String?, validUntil: String?,
        revoked: Bool?
    ) {
        self.name = name
        self.publicKey = publicKey
        self.repositories = repositories
        self.validFrom = validFrom
        self.validUntil = validUntil
        self.revoked = revoked
    }

    init(from decoder: any Decoder) throws {
        try refuseUnknownFields(decoder, allowed: Set(CodingKeys.allCases.map(\.rawValue)), in: "a key")
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        publicKey = try container.decode(String.self, forKey: .publicKey)
        repositories = try container.decode([String].self, forKey: .repositories)
        validFrom = try container.decodeIfPresent(String.self, forKey: .validFrom)
        validUntil = try container.decodeIfPresent(String.self, forKey: .validUntil)
        revoked = try container.decodeIfPresent(Bool.self, forKey: .revoked)
    }
}

private struct SignatureJSON: Codable {
    var key: String
    var signature: String

    enum CodingKeys: String, CodingKey, CaseIterable {
        case key, signature
    }

    init(key: String, signature: String) {
        self.key = key
        self.signature = signature
    }

    init(from decoder: any Decoder) throws {
        try refuseUnknownFields(decoder, allowed: Set(CodingKeys.allCases.map(\.rawValue)), in: "a signature")
        let container = try decoder.container(keyedBy: CodingKeys.self)
        key = try container.decode(String.self, forKey: .key)
        signature = try container.decode(String.self, forKey: .signature)
    }
}
