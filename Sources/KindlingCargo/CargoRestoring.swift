import Foundation
import KindlingCrypto
public import KindlingManifest
public import KindlingSnapshot
public import KindlingStore
import KindlingSystem

/// The developer's side, once a snapshot is chosen (`CargoRestoreSession`): restores it and repairs freshness.
public struct CargoRestoring: Sendable {
    public let workspace: CargoWorkspace
    public let root: BuildRoot
    public let key: CargoCacheKey

    public init(workspace: CargoWorkspace, root: BuildRoot, key: CargoCacheKey) {
        self.workspace = workspace
        self.root = root
        self.key = key
    }

    public struct Outcome: Sendable {
        public var restore: RestoreSummary
        public var repair: FreshnessRepair.Report
        public var atBuildRoot: Bool
    }

    /// Restores `manifest` into the workspace's target directory and repairs freshness. Refuses a target holding
    /// local work unless `replace`.
    ///
    /// Order matters for invariants 3 and 4: the checkout is only read until the new target is in place, the
    /// target arrives with its fingerprints hidden and its invalidations done, and the checkout's mtimes are
    /// stamped only after the swap. A crash at any point leaves the old target with an untouched checkout, or the
    /// new target with hidden fingerprints (cargo rebuilds everything, and the next restore may replace it).
    public func restore(
        _ manifest: Manifest, from store: ChunkStore, replace: Bool, progress: ProgressHandler? = nil
    ) throws -> Outcome {
        guard let recordBytes = manifest.body.extra[CargoRecord.extraKey] else {
            throw CargoError.malformedRecord("the snapshot has no cargo record; it was published without --cargo")
        }
        let record = try CargoRecord(decoding: recordBytes)
        guard record.root == root.path else {
            throw CargoError.malformedRecord("it was built at \(record.root), this checkout builds at \(root.path)")
        }
        // Refused before anything is written: the repair and cargo would act through such a link.
        try CargoBookkeeping.check(
            entries: manifest.body.entries.map { ($0.path, $0.kind == .symlink) }, profiles: record.profileDirectories)
        let target = workspace.targetDirectory
        if !RestoreMarker.state(of: target).isReplaceable, !replace {
            throw CargoError.localWork(target: target)
        }
        let newest = manifest.body.entries.map(\.modificationTime).max() ?? 0
        try Self.waitUntilPast(newestOutput: newest)
        // A cargo build running in the old target would write into a directory about to be swapped away.
        let locks = try CargoBuildLocks(targetDirectory: target, profiles: record.profileDirectories)
        defer { withExtendedLifetime(locks) {} }

        let atBuildRoot = CargoLauncher.namespacesAvailable
        let repair = FreshnessRepair(
            record: record, checkout: workspace.checkout, root: root, targetDirectory: target, atBuildRoot: atBuildRoot)
        var plan = try repair.plan()
        let pending = RestoreMarker(
            manifest: manifest.id.hex, commit: manifest.header.commit, restoredAt: Self.now, complete: false)
        let summary = try TreeRestore().restore(manifest, from: store, into: target, replace: true, progress: progress)
        { staging in
            try repair.prepareTarget(staging, plan: &plan)
            try pending.write(targetDirectory: staging)
            Failpoint.hit("before-swap")
        }
        Failpoint.hit("after-swap")
        let report = try repair.finish(plan, now: Self.now)
        var done = pending
        done.complete = true
        done.restoredAt = Self.now
        try done.write(targetDirectory: target)
        return Outcome(restore: summary, repair: report, atBuildRoot: atBuildRoot)
    }

    static var now: UInt64 { UInt64(Date().timeIntervalSince1970 * 1e9) }

    /// The most clock skew a restore waits out rather than refuses.
    static let tolerableSkew: UInt64 = 5_000_000_000
    /// Past this, a newest output is not a clock that disagrees but a timestamp no build made.
    static let implausibleSkew: UInt64 = 86_400_000_000_000

    /// Freshness rests on "a file stamped now is newer than every restored output". That needs now to be a full
    /// second (timestamp granularity on some filesystems) past the newest output: a snapshot fetched within a
    /// second of its build waits that second; a clock far behind CI's is refused, since every file edited in the
    /// next minutes could look older than the build.
    static func waitUntilPast(newestOutput: UInt64) throws(CargoError) {
        let current = now
        // A timestamp at the edge (2^64-1, or years ahead) is the snapshot's problem: refused, never an overflow.
        let (ready, overflow) = newestOutput.addingReportingOverflow(1_000_000_000)
        guard !overflow, ready - min(ready, current) <= implausibleSkew else {
            throw .implausibleTimestamp(nanoseconds: newestOutput)
        }
        guard ready > current else { return }
        let behind = ready - current
        guard behind <= tolerableSkew else { throw .clockBehind(seconds: Double(behind) / 1e9) }
        Thread.sleep(forTimeInterval: Double(behind) / 1e9 + 0.01)
    }
}

/// Exclusive holds on cargo's own `<profile>/.cargo-lock` files: cargo takes the same lock for every build, so while
/// these are held no build runs in the target.
final class CargoBuildLocks {
    private var descriptors: [Int32] = []

    init(targetDirectory: String, profiles: [String]) throws(CargoError) {
        for profile in profiles {
            let path = targetDirectory + "/" + profile + "/.cargo-lock"
            guard FileSystem.exists(path) else { continue }
            // Never through a symlink: flock on a file outside the target would hold someone else's lock.
            let descriptor = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC)
            guard descriptor >= 0 else { continue }
            descriptors.append(descriptor)
            if flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
                descriptors.forEach { close($0) }
                descriptors.removeAll()
                throw .targetBusy("\(path) is locked")
            }
        }
    }

    deinit { descriptors.forEach { close($0) } }
}
