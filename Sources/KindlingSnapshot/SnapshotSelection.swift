public import KindlingCrypto
public import KindlingManifest
public import KindlingStore

/// Picks the snapshot to restore: the newest stored manifest for a repository and commit that passes the trust
/// gate and matches the wanted cache key entries.
public struct SnapshotSelection: Sendable {
    public let store: ChunkStore
    public let policy: TrustPolicy

    public init(store: ChunkStore, policy: TrustPolicy) {
        self.store = store
        self.policy = policy
    }

    /// A candidate that was passed over, and why.
    public struct Rejection: Sendable, CustomStringConvertible {
        public var id: Digest
        public var reason: String
        public var description: String { "\(id.short): \(reason)" }
    }

    public enum Outcome: Sendable {
        case found(TrustedHeader, rejected: [Rejection])
        case none(candidates: Int, rejected: [Rejection])
    }

    public func newest(
        repository: String, commit: String, cacheKey wanted: [String: String] = [:]
    ) throws(StoreError) -> Outcome {
        let summaries = try store.manifestSummaries(repository: repository, commit: commit)
        var rejected: [Rejection] = []
        for summary in summaries {
            let mismatched = wanted.filter { summary.header.cacheKey[$0.key] != $0.value }
            if !mismatched.isEmpty {
                let detail = mismatched.map { "\($0.key)=\(summary.header.cacheKey[$0.key] ?? "<absent>")" }
                rejected.append(Rejection(id: summary.id, reason: "cache key differs (\(detail.sorted().joined(separator: ", ")))"))
                continue
            }
            do throws(TrustError) {
                let trusted = try policy.verify(summary.signed)
                return .found(trusted, rejected: rejected)
            } catch {
                rejected.append(Rejection(id: summary.id, reason: error.description))
            }
        }
        return .none(candidates: summaries.count, rejected: rejected)
    }
}
