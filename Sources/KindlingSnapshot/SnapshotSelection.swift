public import KindlingCrypto
public import KindlingManifest

/// A snapshot that could be restored, as a source describes it. Only `signed` (when a source has it) is checked
/// against a trust file; the rest is a claim until the complete manifest arrives and is verified.
public struct SnapshotCandidate: Hashable, Sendable {
    public var id: Digest
    public var repository: RepositoryName
    public var commit: String
    public var cacheKey: [String: String]
    public var createdAt: UInt64
    /// The signed header, when the source holds it (the store does; a node's list carries only its fields).
    public var signed: SignedHeader?

    public init(
        id: Digest, repository: RepositoryName, commit: String, cacheKey: [String: String], createdAt: UInt64,
        signed: SignedHeader? = nil
    ) {
        self.id = id
        self.repository = repository
        self.commit = commit
        self.cacheKey = cacheKey
        self.createdAt = createdAt
        self.signed = signed
    }

    public init(_ signed: SignedHeader) {
        self.init(
            id: signed.id, repository: signed.header.repositoryName, commit: signed.header.commit,
            cacheKey: signed.header.cacheKey, createdAt: signed.header.createdAt, signed: signed)
    }
}

/// Which cache keys a selection accepts.
public enum CacheKeyMatch: Sendable {
    /// Exactly these entries (the cargo integration: every entry of the key matters).
    case exactly([String: String])
    /// At least these entries (`restore --key-value`; empty accepts every key).
    case including([String: String])

    /// The entries that disagree, as `name=candidate's value`, sorted; empty when the key is accepted.
    func mismatches(_ key: [String: String]) -> [String] {
        let wanted: [String: String]
        var names: Set<String>
        switch self {
        case .exactly(let entries):
            wanted = entries
            names = Set(entries.keys).union(key.keys)
        case .including(let entries):
            wanted = entries
            names = Set(entries.keys)
        }
        names = names.filter { key[$0] != wanted[$0] }
        return names.map { "\($0)=\(key[$0] ?? "<absent>")" }.sorted()
    }
}

/// The one snapshot-selection rule, for the store, a node and the cargo integration alike: walk the commits in
/// order of preference (one commit, or HEAD's first-parent history nearest first); at the first commit that has
/// any acceptable candidate, take the newest (by creation time, then id). A candidate is acceptable when its cache
/// key matches and `reject` (a trust check, say) finds nothing against it.
public enum SnapshotSelection {
    /// A candidate that was passed over, and why.
    public struct Rejection: Sendable, CustomStringConvertible {
        public var id: Digest
        public var reason: String
        public var description: String { "\(id.short): \(reason)" }
    }

    public enum Outcome: Sendable {
        /// `distance` is the chosen commit's position in `commits` (0 for the first).
        case found(SnapshotCandidate, distance: Int, rejected: [Rejection])
        /// `candidates` counts those at any of the commits; `rejected` says why each was passed over.
        case none(candidates: Int, rejected: [Rejection])
    }

    public static func select(
        _ candidates: [SnapshotCandidate], commits: [String], cacheKey: CacheKeyMatch,
        reject: (SnapshotCandidate) -> String? = { _ in nil }
    ) -> Outcome {
        let byCommit = Dictionary(grouping: candidates, by: \.commit)
        var rejected: [Rejection] = []
        var considered = 0
        for (distance, commit) in commits.enumerated() {
            let newestFirst = (byCommit[commit] ?? []).sorted { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }
            considered += newestFirst.count
            for candidate in newestFirst {
                let mismatched = cacheKey.mismatches(candidate.cacheKey)
                if !mismatched.isEmpty {
                    let reason = "cache key differs (\(mismatched.joined(separator: ", ")))"
                    rejected.append(Rejection(id: candidate.id, reason: reason))
                } else if let reason = reject(candidate) {
                    rejected.append(Rejection(id: candidate.id, reason: reason))
                } else {
                    return .found(candidate, distance: distance, rejected: rejected)
                }
            }
        }
        return .none(candidates: considered, rejected: rejected)
    }
}
