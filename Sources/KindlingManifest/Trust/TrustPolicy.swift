public import Foundation
public import KindlingCrypto

/// Decides whether a signed header may be used: the trust gate of invariant 1.
public struct TrustPolicy: Sendable {
    public let trust: TrustFile
    /// How far in the future a creation time may be, for publishers with fast clocks.
    public let allowedClockSkew: TimeInterval
    /// Manifest ids no one may use any more, whoever signed them (a trust document's `withdrawn`).
    public let withdrawn: Set<Digest>

    public init(trust: TrustFile, allowedClockSkew: TimeInterval = 600, withdrawn: Set<Digest> = []) {
        self.trust = trust
        self.allowedClockSkew = allowedClockSkew
        self.withdrawn = withdrawn
    }

    /// A policy that trusts exactly one key: what a publisher uses for its own manifests, so that even they
    /// pass through the same gate (and a bug that signs with the wrong key is caught).
    public static func trustingOwnKey(_ key: SigningKey, name: String = "local publisher") -> TrustPolicy {
        TrustPolicy(trust: TrustFile(keys: [TrustedKey(name: name, publicKey: key.publicKey)]))
    }

    /// Returns the trusted key that accepts `signed`, or throws why none does.
    @discardableResult
    public func evaluate(_ signed: SignedHeader, now: Date = Date()) throws(TrustError) -> TrustedKey {
        let header = signed.header
        guard let key = trust.keys.first(where: { $0.publicKey == header.publisher }) else {
            throw .unknownKey(header.publisher)
        }
        guard signed.hasValidSignature else { throw .badSignature(manifest: signed.id) }
        // After the signature: a forged signature stays proof of lying even on a withdrawn header.
        guard !withdrawn.contains(signed.id) else { throw .withdrawn(manifest: signed.id) }
        guard !key.revoked else { throw .revokedKey(name: key.name) }
        guard key.repositories.contains(where: { $0.matches(header.repositoryName) }) else {
            throw .repositoryNotAllowed(
                key: key.name, repository: header.repository, allowed: key.repositories.map(\.pattern))
        }
        let created = Date(nanosecondsSinceEpoch: header.createdAt)
        if let from = key.validFrom, created < from {
            throw .outsideValidity(key: key.name, createdAt: TrustFile.formatDate(created), window: Self.window(key))
        }
        if let until = key.validUntil, created > until {
            throw .outsideValidity(key: key.name, createdAt: TrustFile.formatDate(created), window: Self.window(key))
        }
        guard created.timeIntervalSince(now) <= allowedClockSkew else {
            throw .createdInFuture(createdAt: TrustFile.formatDate(created))
        }
        return key
    }

    /// The trust gate: a `TrustedHeader` exists only for headers that pass `evaluate`.
    public func verify(_ signed: SignedHeader, now: Date = Date()) throws(TrustError) -> TrustedHeader {
        TrustedHeader(signed: signed, key: try evaluate(signed, now: now))
    }

    /// The trust gate for complete manifests (the body was already bound to the header when it was decoded).
    public func verify(_ manifest: Manifest, now: Date = Date()) throws(TrustError) -> TrustedManifest {
        TrustedManifest(manifest: manifest, key: try evaluate(manifest.signed, now: now))
    }

    public func isTrusted(_ signed: SignedHeader, now: Date = Date()) -> Bool {
        (try? evaluate(signed, now: now)) != nil
    }

    private static func window(_ key: TrustedKey) -> String {
        "valid from \(key.validFrom.map(TrustFile.formatDate) ?? "any time") until "
            + "\(key.validUntil.map(TrustFile.formatDate) ?? "any time")"
    }
}

extension Date {
    public init(nanosecondsSinceEpoch nanoseconds: UInt64) {
        self.init(timeIntervalSince1970: Double(nanoseconds) / 1e9)
    }

    public var nanosecondsSinceEpoch: UInt64 {
        let seconds = timeIntervalSince1970
        return seconds <= 0 ? 0 : UInt64(seconds * 1e9)
    }
}
