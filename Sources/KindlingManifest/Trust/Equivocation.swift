public import KindlingCrypto

/// What one publisher signs once: a build of one commit of one repository with one cache key (toolchain, target,
/// profile, flags). Two manifests with the same identity and different bodies are an equivocation.
public struct BuildIdentity: Sendable, Hashable {
    public var publisher: PublicKey
    public var repository: String
    public var commit: String
    public var cacheKey: [String: String]

    public init(_ header: ManifestHeader) {
        publisher = header.publisher
        repository = header.repository
        commit = header.commit
        cacheKey = header.cacheKey
    }
}

/// Two or more different manifests that one key signed for one build (Specs/trust.md, "Equivocation"): kept as
/// evidence, none of them used until all but one are withdrawn or refused.
public struct Equivocation: Sendable, Hashable, CustomStringConvertible {
    public var build: BuildIdentity
    /// Sorted.
    public var manifests: [Digest]

    public init(build: BuildIdentity, manifests: [Digest]) {
        self.build = build
        self.manifests = manifests
    }

    public var description: String {
        let key = build.cacheKey.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
        return "key \(build.publisher.text) signed \(manifests.count) different builds of \(build.repository)@"
            + "\(build.commit)\(key.isEmpty ? "" : " [\(key)]"): manifests "
            + manifests.map(\.hex).joined(separator: ", ")
            + "; a key that signs two different builds of one commit is either broken or stolen: none of them is "
            + "used until the trust policy withdraws all but one (or revokes the key)"
    }
}

extension Equivocation {
    /// The equivocations among `headers` (trusted ones: an untrusted key's manifests prove nothing), sorted by
    /// repository, commit and key.
    public static func find(in headers: [SignedHeader]) -> [Equivocation] {
        // Manifests with one body are one build signed more than once (a publish run again): not an equivocation.
        var builds: [BuildIdentity: [Digest: Digest]] = [:]
        for signed in headers {
            builds[BuildIdentity(signed.header), default: [:]][signed.id] = signed.header.bodyDigest
        }
        return builds.filter { Set($0.value.values).count > 1 }
            .map { Equivocation(build: $0.key, manifests: $0.value.keys.sorted()) }
            .sorted(by: Self.order)
    }

    /// Sorted by repository, commit, then key.
    public static func order(_ a: Equivocation, _ b: Equivocation) -> Bool {
        (a.build.repository, a.build.commit, a.build.publisher.text, a.manifests.first?.hex ?? "")
            < (b.build.repository, b.build.commit, b.build.publisher.text, b.manifests.first?.hex ?? "")
    }
}
