import KindlingCrypto
public import KindlingManifest
public import KindlingSnapshot
public import KindlingStore

/// The cargo restore use case (`kindling restore --cargo`, and `kindling cargo` before a build): choose the
/// nearest first-parent ancestor of HEAD with a trusted snapshot of exactly this build's cache key, make it
/// complete in the local store through a source if needed, check it again, restore it and repair freshness.
///
/// In three steps, so that the caller can say what was chosen and draw progress between them.
public struct CargoRestoreSession: Sendable {
    public let workspace: CargoWorkspace
    public let root: BuildRoot
    public let key: CargoCacheKey
    public let store: ChunkStore
    public let policy: TrustPolicy
    /// Sources besides the store (a running node), in order of preference.
    public let remotes: [any SnapshotSource]

    public init(
        workspace: CargoWorkspace, root: BuildRoot, key: CargoCacheKey, store: ChunkStore, policy: TrustPolicy,
        remotes: [any SnapshotSource]
    ) {
        self.workspace = workspace
        self.root = root
        self.key = key
        self.store = store
        self.policy = policy
        self.remotes = remotes
    }

    /// The snapshot chosen, and how many commits behind HEAD it is.
    public struct Choice: Sendable {
        public var candidate: SnapshotCandidate
        public var distance: Int
        /// The index in `remotes` of the first remote that listed it.
        var listedBy: Int?
    }

    /// The newest snapshot with exactly our key for the nearest commit of HEAD's first-parent history, among the
    /// store's trusted snapshots and those the remotes list (a remote that does not answer is passed over).
    /// Throws, naming the key wanted and the keys that exist, when there is none.
    public func choose(maxDistance: Int) throws -> Choice {
        let repository = workspace.repository
        // The store's headers are signed: untrusted ones are not candidates. A remote's list is only a claim,
        // checked when its manifest arrives (`restore`).
        var candidates = try StoreSnapshotSource(store: store).candidates(of: repository)
            .filter { $0.signed.map { policy.isTrusted($0) } ?? false }
        // Equivocal ones are evidence, not snapshots (Specs/trust.md, "Equivocation").
        let equivocal = StoreSnapshotSource.equivocal(candidates, policy: policy)
        candidates.removeAll { equivocal.contains($0.id) }
        var listedBy: [Digest: Int] = [:]
        for (index, remote) in remotes.enumerated() {
            for candidate in (try? remote.candidates(of: repository)) ?? [] where listedBy[candidate.id] == nil {
                listedBy[candidate.id] = index
                if !equivocal.contains(candidate.id), !candidates.contains(where: { $0.id == candidate.id }) {
                    candidates.append(candidate)
                }
            }
        }
        let history = try workspace.checkout.firstParentHistory(limit: maxDistance + 1)
        switch SnapshotSelection.select(candidates, commits: history, cacheKey: .exactly(key.entries)) {
        case .found(let candidate, let distance, _):
            return Choice(candidate: candidate, distance: distance, listedBy: listedBy[candidate.id])
        case .none:
            throw Self.noSnapshot(key: key, candidates: candidates, history: history, maxDistance: maxDistance)
        }
    }

    /// Makes the chosen snapshot complete in the store: nil when it already is; else through the first remote
    /// that listed it (or the first remote), when `fetch` allows.
    public func makeAvailable(_ choice: Choice, fetch: Bool, progress: ProgressHandler?) throws -> SnapshotTransfer? {
        let id = choice.candidate.id
        if try StoreSnapshotSource.completeManifest(id, in: store) != nil { return nil }
        guard fetch, let first = remotes.first else { throw SnapshotSourceError.incomplete(id: id) }
        let remote = choice.listedBy.map { remotes[$0] } ?? first
        return try remote.makeAvailable(id, in: store, progress: progress)
    }

    /// The result of `restore`: the verified manifest and what the restore and the repair did.
    public struct Restored: Sendable {
        public var manifest: Manifest
        public var outcome: CargoRestoring.Outcome
    }

    /// Verifies the complete manifest against this user's trust file, checks it is the snapshot chosen (a remote's
    /// key and commit are claims, the manifest's are signed) and restores it.
    public func restore(_ choice: Choice, replace: Bool, progress: ProgressHandler?) throws -> Restored {
        let id = choice.candidate.id
        guard let manifest = try store.manifest(id) else { throw CargoError.manifestMissing(id: id.short) }
        _ = try policy.verify(manifest)
        try StoreSnapshotSource.refuseEquivocation(manifest.signed, in: store, policy: policy)
        guard manifest.header.cacheKey == key.entries, manifest.header.commit == choice.candidate.commit,
            manifest.header.repositoryName == workspace.repository
        else {
            throw CargoError.notAsAnnounced(id: id.short)
        }
        let outcome = try CargoRestoring(workspace: workspace, root: root, key: key)
            .restore(manifest, from: store, replace: replace, progress: progress)
        return Restored(manifest: manifest, outcome: outcome)
    }

    /// Why nothing fits: the keys that exist instead, or that the matching snapshots are off HEAD's history.
    static func noSnapshot(
        key: CargoCacheKey, candidates: [SnapshotCandidate], history: [String], maxDistance: Int
    )
        -> CargoError
    {
        var others: [String] = []
        for candidate in candidates where candidate.cacheKey != key.entries {
            let line = key.differences(from: candidate.cacheKey).joined(separator: "; ")
            if !others.contains(line) { others.append(line) }
        }
        let matching = candidates.filter { $0.cacheKey == key.entries }
        let inHistory = Set(history)
        if others.isEmpty && !matching.isEmpty && matching.allSatisfy({ !inHistory.contains($0.commit) }) {
            others.append(
                "\(matching.count) snapshots with this key exist, for commits that are not first-parent ancestors "
                    + "of HEAD within \(maxDistance)")
        }
        return .noSnapshot(wanted: CargoCacheKey.describe(key.entries), available: others, searched: history.count)
    }
}
