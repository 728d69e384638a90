import Foundation
public import KindlingCrypto
public import KindlingManifest
public import KindlingSnapshot
public import KindlingStore

/// A snapshot that could be restored: from the store or announced to the local node.
public struct SnapshotCandidate: Sendable {
    public var id: Digest
    public var commit: String
    public var cacheKey: [String: String]
    public var createdAt: UInt64

    public init(id: Digest, commit: String, cacheKey: [String: String], createdAt: UInt64) {
        self.id = id
        self.commit = commit
        self.cacheKey = cacheKey
        self.createdAt = createdAt
    }
}

/// The developer's side: finds the nearest ancestor with a matching snapshot, restores it and repairs freshness.
public struct CargoRestoring: Sendable {
    public let workspace: CargoWorkspace
    public let root: BuildRoot
    public let key: CargoCacheKey

    public init(workspace: CargoWorkspace, root: BuildRoot, key: CargoCacheKey) {
        self.workspace = workspace
        self.root = root
        self.key = key
    }

    /// The newest candidate with exactly our key for the nearest commit of HEAD's first-parent history.
    /// Throws, naming the key wanted and the keys that exist, when there is none.
    public func nearest(among candidates: [SnapshotCandidate], maxDistance: Int) throws(CargoError) -> (candidate: SnapshotCandidate, distance: Int) {
        let history = try workspace.checkout.firstParentHistory(limit: maxDistance + 1)
        let matching = candidates.filter { $0.cacheKey == key.entries }
        let byCommit = Dictionary(grouping: matching, by: \.commit)
        for (distance, commit) in history.enumerated() {
            if let newest = byCommit[commit]?.max(by: { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }) {
                return (newest, distance)
            }
        }
        var others: [String] = []
        for candidate in candidates where candidate.cacheKey != key.entries {
            let line = key.differences(from: candidate.cacheKey).joined(separator: "; ")
            if !others.contains(line) { others.append(line) }
        }
        let inHistory = Set(history)
        if others.isEmpty && !matching.isEmpty && matching.allSatisfy({ !inHistory.contains($0.commit) }) {
            others.append("\(matching.count) snapshots with this key exist, for commits that are not first-parent ancestors of HEAD within \(maxDistance)")
        }
        throw .noSnapshot(wanted: CargoCacheKey.describe(key.entries), available: others, searched: history.count)
    }

    public struct Outcome: Sendable {
        public var restore: RestoreSummary
        public var repair: FreshnessRepair.Report
        public var atBuildRoot: Bool
    }

    /// Restores `manifest` into the workspace's target directory and repairs freshness. Refuses a target holding
    /// local work unless `replace`.
    public func restore(_ manifest: Manifest, from store: ChunkStore, replace: Bool, progress: ProgressHandler? = nil) throws -> Outcome {
        guard let recordBytes = manifest.body.extra[CargoRecord.extraKey] else {
            throw CargoError.malformedRecord("the snapshot has no cargo record; it was published without --cargo")
        }
        let record = try CargoRecord(decoding: recordBytes)
        guard record.root == root.path else {
            throw CargoError.malformedRecord("it was built at \(record.root), this checkout builds at \(root.path)")
        }
        let target = workspace.targetDirectory
        if case .localWork = RestoreMarker.state(of: target), !replace {
            throw CargoError.localWork(target: target)
        }
        let summary = try TreeRestore().restore(manifest, from: store, into: target, replace: true, progress: progress)
        let newest = manifest.body.entries.map(\.modificationTime).max() ?? 0
        let atBuildRoot = CargoLauncher.namespacesAvailable
        let repair = try FreshnessRepair(
            record: record, checkout: workspace.checkout, root: root, targetDirectory: target, atBuildRoot: atBuildRoot
        ).apply(newestOutput: newest)
        try RestoreMarker(
            manifest: manifest.id.hex, commit: manifest.header.commit, restoredAt: UInt64(Date().timeIntervalSince1970 * 1e9)
        ).write(targetDirectory: target)
        return Outcome(restore: summary, repair: repair, atBuildRoot: atBuildRoot)
    }
}
