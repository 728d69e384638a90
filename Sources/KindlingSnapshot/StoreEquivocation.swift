public import KindlingCrypto
public import KindlingManifest
public import KindlingStore

/// A restore never uses a manifest that is part of an equivocation (Specs/trust.md, "Equivocation"): one key signed
/// another manifest of the same build, and the store holds both.
public struct EquivocationError: Error, Sendable, CustomStringConvertible {
    public let equivocation: Equivocation

    public init(_ equivocation: Equivocation) {
        self.equivocation = equivocation
    }

    public var description: String { "refused: \(equivocation)" }
}

extension StoreSnapshotSource {
    /// The equivocation `signed` is part of among the manifests of its repository and commit in `store` that
    /// `policy` accepts (an untrusted key's manifests prove nothing), or nil.
    public static func equivocation(
        of signed: SignedHeader, in store: ChunkStore, policy: TrustPolicy
    ) throws(StoreError) -> Equivocation? {
        let header = signed.header
        let stored = try store.manifestSummaries(repository: header.repositoryName, commit: header.commit)
            .map(\.signed)
            .filter { $0.id != signed.id && $0.header.publisher == header.publisher && policy.isTrusted($0) }
        guard !stored.isEmpty else { return nil }
        return Equivocation.find(in: stored + [signed]).first { $0.manifests.contains(signed.id) }
    }

    /// Throws when `signed` is part of an equivocation in `store`.
    public static func refuseEquivocation(
        _ signed: SignedHeader, in store: ChunkStore, policy: TrustPolicy
    ) throws {
        if let equivocation = try equivocation(of: signed, in: store, policy: policy) {
            throw EquivocationError(equivocation)
        }
    }

    /// The ids among `candidates` (with their signed headers) that are part of an equivocation under `policy`.
    public static func equivocal(_ candidates: [SnapshotCandidate], policy: TrustPolicy) -> Set<Digest> {
        let trusted = candidates.compactMap(\.signed).filter { policy.isTrusted($0) }
        return Set(Equivocation.find(in: trusted).flatMap(\.manifests))
    }
}
