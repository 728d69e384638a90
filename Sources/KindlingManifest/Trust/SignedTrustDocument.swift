import Foundation
public import KindlingCrypto

/// One root's detached signature of a trust document's canonical bytes.
public struct TrustSignature: Sendable, Hashable {
    public let key: PublicKey
    /// 64 bytes: Ed25519 over `SignedTrustDocument.signingDomain || signedBytes`.
    public let signature: [UInt8]

    public init(key: PublicKey, signature: [UInt8]) {
        self.key = key
        self.signature = signature
    }
}

/// A trust document with its detached root signatures: what the file holds, the wire carries and the node
/// persists (Specs/trust.md, "Trust documents"). The file is JSON so it can be reviewed in a pull request; the
/// signatures cover the canonical binary encoding of the content, never the JSON text.
public struct SignedTrustDocument: Sendable, Hashable {
    /// Keeps a trust document signature from being valid as any other Kindling signature.
    public static let signingDomain: [UInt8] = Array("kindling-trust-document-v1".utf8) + [0]
    /// The JSON file's format version (the `kindling-trust-document` field).
    public static let fileFormatVersion: UInt64 = 1
    /// A file larger than this is refused before it is parsed.
    public static let maximumEncodedSize = 1 << 20
    /// Signatures a file may carry (several per root are allowed; each root counts once).
    public static let maximumSignatureCount = 64

    public let document: TrustDocument
    /// The canonical encoding of `document`: what signatures cover.
    public let signedBytes: [UInt8]
    /// In the order they were added; duplicates allowed in the file (each key counts once toward a threshold).
    public var signatures: [TrustSignature]

    /// An unsigned document. Its content is normalized (`TrustDocument.normalized`).
    public init(document: TrustDocument) {
        let normalized = document.normalized
        self.document = normalized
        self.signedBytes = normalized.encoded()
        self.signatures = []
    }

    init(document: TrustDocument, signedBytes: [UInt8], signatures: [TrustSignature]) {
        self.document = document
        self.signedBytes = signedBytes
        self.signatures = signatures
    }

    /// What a root signs: the domain, then the canonical bytes.
    public var signingInput: [UInt8] { Self.signingDomain + signedBytes }

    /// Reads a trust document file: strict (unknown fields refused) and bounded.
    public static func decode(_ bytes: [UInt8]) throws(TrustDocumentError) -> SignedTrustDocument {
        guard bytes.count <= maximumEncodedSize else { throw .tooLarge(size: bytes.count, limit: maximumEncodedSize) }
        return try TrustDocumentJSON.decode(bytes)
    }

    /// The file's bytes: JSON with sorted fields and a fixed layout, so equal documents give equal files.
    public func encoded() -> [UInt8] {
        TrustDocumentJSON.encode(self)
    }

    /// This document with a signature by `key` added; unchanged when `key` already signed it validly.
    public func signed(with key: SigningKey) -> SignedTrustDocument {
        let input = signingInput
        if signatures.contains(where: { $0.key == key.publicKey && Self.verifies($0, input) }) { return self }
        var copy = self
        copy.signatures.removeAll { $0.key == key.publicKey }
        copy.signatures.append(TrustSignature(key: key.publicKey, signature: key.sign(input).bytes))
        return copy
    }

    /// Distinct root keys of `roots` whose signature verifies (each key counted once, however often it signed;
    /// signatures by other keys are ignored).
    public func validSigners(among roots: TrustRoots) -> Set<PublicKey> {
        let input = signingInput
        var signers = Set<PublicKey>()
        for signature in signatures where roots.keys.contains(signature.key) && !signers.contains(signature.key) {
            if Self.verifies(signature, input) { signers.insert(signature.key) }
        }
        return signers
    }

    /// True when at least `roots.threshold` distinct keys of `roots` signed it.
    public func meetsThreshold(of roots: TrustRoots) -> Bool {
        validSigners(among: roots).count >= roots.threshold
    }

    /// Throws `.belowThreshold` unless `roots.threshold` distinct keys of `roots` signed it.
    public func requireThreshold(of roots: TrustRoots, as role: TrustDocumentError.Roots) throws(TrustDocumentError) {
        let signers = validSigners(among: roots)
        guard signers.count < roots.threshold else { return }
        throw .belowThreshold(
            version: document.version, roots: role, valid: signers.count, threshold: roots.threshold,
            missing: roots.keys.filter { !signers.contains($0) })
    }

    static func verifies(_ signature: TrustSignature, _ input: [UInt8]) -> Bool {
        guard let bytes = try? Signature(bytes: signature.signature) else { return false }
        return signature.key.isValidSignature(bytes, for: input)
    }
}
