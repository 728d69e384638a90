/// A header that passed the trust gate. Only `TrustPolicy` can make one, so an API that takes a
/// `TrustedHeader` (the store, the gossip relay) cannot be handed an unchecked announcement by mistake.
public struct TrustedHeader: Sendable {
    public let signed: SignedHeader
    public let key: TrustedKey

    init(signed: SignedHeader, key: TrustedKey) {
        self.signed = signed
        self.key = key
    }
}

/// A complete manifest whose header passed the trust gate and whose body matches the signed digest.
public struct TrustedManifest: Sendable {
    public let manifest: Manifest
    public let key: TrustedKey

    init(manifest: Manifest, key: TrustedKey) {
        self.manifest = manifest
        self.key = key
    }

    public var header: TrustedHeader { TrustedHeader(signed: manifest.signed, key: key) }
}
