import Foundation
import KindlingCrypto
import KindlingStore
import KindlingSystem
import Synchronization

/// Makes cargo's mtime-based freshness checks correct for a restored target directory
/// (cargo-relocation-facts §2-3, Specs/cargo.md "Freshness repair"):
///
/// 1. every tracked file whose content equals the CI file gets back the CI mtime, so cargo sees it unchanged;
/// 2. every other file that could be an input (changed, new, untracked) gets `floor`: now, which a restore only
///    reaches once it is at least a second past the newest restored output, so cargo sees it changed;
/// 3. every directory whose names equal CI's gets CI's mtime, every other one `floor` (cargo takes the newest mtime
///    in a `rerun-if-changed` directory, so a deleted file shows only there);
/// 4. units that depend on an input whose mtime cannot speak for it rebuild (their fingerprint, or the build
///    script's `output`, is removed): files outside the checkout whose content differs from CI's, tracked symlinks
///    whose target's content changed, and, outside the build root, everything naming the build root.
///
/// It runs in three steps so that no crash can combine a restored target with unrepaired sources, or repaired
/// sources with the old target: `plan` (read-only) before the swap, `prepareTarget` on the staging folder (which
/// also hides the fingerprints, so that an unfinished repair means "rebuild everything"), and `finish` after the
/// swap, which stamps the checkout and only then shows the fingerprints again.
///
/// Every doubtful case rebuilds; nothing is ever made to look fresher than it is.
public struct FreshnessRepair: Sendable {
    public struct Report: Sendable, Codable {
        public var unchanged = 0
        public var changed = 0
        public var added = 0
        public var changedLinks = 0
        public var untrackedTouched = 0
        public var directoriesUnchanged = 0
        public var directoriesChanged = 0
        public var externalChanged = 0
        public var unitsInvalidated = 0
        public var floor: UInt64 = 0
    }

    /// A path to stamp: with CI's mtime (`time`), or with the floor when `time` is nil.
    struct Stamp: Sendable {
        var path: String
        var time: UInt64?
        /// What `lstat` said when the plan looked at the file: if it changed by the time of stamping, someone
        /// edited the file in between, and it gets the floor instead.
        var seen: FileIdentity?
    }

    struct FileIdentity: Equatable, Sendable {
        var size: Int
        var modificationTime: UInt64
        var inode: UInt64

        init?(_ path: String) {
            var info = stat()
            guard lstat(path, &info) == 0 else { return nil }
            size = Int(info.st_size)
            modificationTime = saturatingNanoseconds(info.st_mtim)
            inode = UInt64(info.st_ino)
        }
    }

    /// What the checkout looks like next to the record, worked out before anything is written.
    public struct Plan: Sendable {
        var files: [Stamp] = []
        var untracked: [String] = []
        var directories: [Stamp] = []
        /// Tracked symlinks (relative paths) whose target's content is not CI's: their own mtime means nothing to
        /// cargo, which follows them.
        var changedLinks: [String] = []
        var report = Report()
    }

    public let record: CargoRecord
    public let checkout: GitCheckout
    public let root: BuildRoot
    /// Where the target directory lives (the checkout's; never the staging folder).
    public let targetDirectory: String
    /// True when builds will run at the build root (mount namespace): absolute paths then match.
    public let atBuildRoot: Bool

    /// The suffix of a profile's fingerprint folder while a repair is unfinished.
    public static let hiddenFingerprints = ".fingerprint.kindling-pending"

    public init(record: CargoRecord, checkout: GitCheckout, root: BuildRoot, targetDirectory: String, atBuildRoot: Bool)
    {
        self.record = record
        self.checkout = checkout
        self.root = root
        self.targetDirectory = targetDirectory
        self.atBuildRoot = atBuildRoot
    }

    // MARK: Step 1, before the swap: read only

    public func plan() throws(CargoError) -> Plan {
        var plan = Plan()
        // Keyed by bytes, as the filesystem compares names: Swift's String equality would make an NFC and an NFD
        // spelling one file and give one the other's verdict (a stale build).
        let recorded = Dictionary(
            record.sources.map { (Array($0.path.utf8), $0) }, uniquingKeysWith: { first, _ in first })
        let tracked = try checkout.trackedFiles()
        let toplevel = checkout.toplevel
        let results = Mutex<(stamps: [Stamp], links: [String], unchanged: Int, changed: Int, added: Int)>(
            ([], [], 0, 0, 0))
        ParallelWork.forEach(tracked) { (_: Int, path: String) in
            let full = toplevel + "/" + path
            var info = stat()
            // Deleted in the working tree: its directory's names differ from CI's, which the directory pass sees.
            guard lstat(full, &info) == 0 else { return }
            let kind = info.st_mode & S_IFMT
            // A submodule: its files are not the superproject's; the untracked pass stamps them.
            guard kind == S_IFREG || kind == S_IFLNK else { return }
            let seen = FileIdentity(full)
            // For a symlink, the content is its target's, as cargo and rustc see it.
            let source = recorded[Array(path.utf8)]
            let same =
                source.flatMap { source in hashFile(full).map { $0.digest == source.digest && $0.size == source.size } }
                ?? false
            results.withLock { state in
                if same, let source {
                    state.stamps.append(Stamp(path: full, time: source.modificationTime, seen: seen))
                    state.unchanged += 1
                } else {
                    state.stamps.append(Stamp(path: full, time: nil, seen: seen))
                    if kind == S_IFLNK { state.links.append(path) }
                    if source == nil { state.added += 1 } else { state.changed += 1 }
                }
            }
        }
        let state = results.withLock { $0 }
        plan.files = state.stamps
        plan.changedLinks = state.links.sorted()
        plan.report.unchanged = state.unchanged
        plan.report.changed = state.changed
        plan.report.added = state.added
        plan.report.changedLinks = state.links.count
        walkCheckout(tracked: Set(tracked.map { Array($0.utf8) }), into: &plan)
        return plan
    }

    /// Untracked files (build inputs git does not know: generated files, `.env`, a forgotten `git add`) count as
    /// changed; directories keep CI's mtime only when they hold exactly the names they held on CI. Other target
    /// directories (a `CACHEDIR.TAG`) and `.git` are skipped.
    private func walkCheckout(tracked: Set<[UInt8]>, into plan: inout Plan) {
        let directories = Dictionary(
            (record.directories ?? []).map { (Array($0.path.utf8), $0) }, uniquingKeysWith: { first, _ in first })
        let realTarget = URL(fileURLWithPath: targetDirectory).resolvingSymlinksInPath().path
        var stack = [""]
        while let relative = stack.popLast() {
            let directory = relative.isEmpty ? checkout.toplevel : checkout.toplevel + "/" + relative
            if directory == realTarget || FileSystem.exists(directory + "/CACHEDIR.TAG") { continue }
            let names = (try? FileSystem.contents(of: directory)) ?? []
            if !relative.isEmpty {
                if let recorded = directories[Array(relative.utf8)], recorded.names == CargoRecord.namesDigest(names) {
                    plan.directories.append(Stamp(path: directory, time: recorded.modificationTime, seen: nil))
                    plan.report.directoriesUnchanged += 1
                } else {
                    plan.directories.append(Stamp(path: directory, time: nil, seen: nil))
                    plan.report.directoriesChanged += 1
                }
            }
            // Not .git, nor the staging folder a killed restore left (the restore removes it).
            for name in names where !(relative.isEmpty && name == ".git") && !name.contains(".kindling-staging-") {
                let path = relative.isEmpty ? name : relative + "/" + name
                let full = checkout.toplevel + "/" + path
                var info = stat()
                guard lstat(full, &info) == 0 else { continue }
                if info.st_mode & S_IFMT == S_IFDIR {
                    stack.append(path)
                } else if !tracked.contains(Array(path.utf8)) {
                    plan.untracked.append(full)
                }
            }
        }
        // Deepest first, as written: stamping a directory before its children would not matter, but keep it tidy.
        plan.directories.sort { $0.path.count > $1.path.count }
    }

    // MARK: Step 2, on the staging folder before the swap

    /// Invalidates the units whose inputs the mtimes cannot speak for, then hides the fingerprints until `finish`.
    public func prepareTarget(_ staging: String, plan: inout Plan) throws(CargoError) {
        // Everything below opens paths relative to the staging folder's descriptor and refuses symlinks on the
        // way: a snapshot's links are hostile (Specs/cargo.md, "Symlinks in a snapshot").
        try CargoBookkeeping.check(targetDirectory: staging, profiles: record.profileDirectories)
        let target = try CargoError.repair { () throws(FileError) in try DirectoryDescriptor(opening: staging) }
        let units = BuildInputs.units(
            targetDirectory: staging, profileDirectories: record.profileDirectories,
            workspaceRoot: root.workspaceRoot(relative: record.workspaceDirectory))
        let (externalChanged, invalidatedExternal) = try invalidateChangedExternalInputs(units, in: target)
        plan.report.externalChanged = externalChanged
        var invalidated = invalidatedExternal + (try invalidateChangedLinks(units, plan: plan, in: target))
        if !atBuildRoot { invalidated += try invalidateUnitsNamingTheBuildRoot(in: target) }
        plan.report.unitsInvalidated = invalidated
        for profile in record.profileDirectories where target.kind(profile + "/.fingerprint") == S_IFDIR {
            try CargoError.repair { () throws(FileError) in
                try target.rename(in: profile, from: ".fingerprint", to: Self.hiddenFingerprints)
            }
        }
    }

    /// Units that depend on an input outside the checkout whose content is not the one CI built with.
    private func invalidateChangedExternalInputs(
        _ units: [BuildInputs.Unit], in target: DirectoryDescriptor
    ) throws(CargoError) -> (changed: Int, invalidated: Int) {
        let known = Dictionary(
            record.externalInputs.map { (Array($0.path.utf8), $0.digest) }, uniquingKeysWith: { first, _ in first })
        var verdicts: [[UInt8]: Bool] = [:]
        func changed(_ path: String) -> Bool {
            let key = Array(path.utf8)
            if let verdict = verdicts[key] { return verdict }
            // Inputs under the build root are the checkout's own files (covered by the source record).
            if path.hasPrefix(root.path + "/") { return false }
            // Only regular files are hashed: a dep file may name a FIFO or /dev/zero, which would hang the read.
            var info = stat()
            let regular = stat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFREG
            let local = regular ? hashFile(path)?.digest : nil
            let verdict: Bool
            if let recorded = known[key] { verdict = recorded != local } else { verdict = true }
            verdicts[key] = verdict
            return verdict
        }
        var invalidated = 0
        for unit in units where unit.absoluteInputs.contains(where: changed) {
            invalidated += try invalidate(unit, in: target)
        }
        return (verdicts.values.filter { $0 }.count, invalidated)
    }

    /// Cargo follows symlinks when it compares mtimes, so a tracked link whose target's content changed can't be
    /// made to look changed by its own mtime: the units naming it rebuild. Build scripts name their inputs
    /// relative to their package, which is not resolved here, so with any such link the build scripts of the
    /// checkout's own packages that watch relative paths rerun (registry packages cannot watch our files).
    private func invalidateChangedLinks(
        _ units: [BuildInputs.Unit], plan: Plan, in target: DirectoryDescriptor
    ) throws(CargoError) -> Int {
        guard !plan.changedLinks.isEmpty else { return 0 }
        let paths = Set(plan.changedLinks.map { BuildInputs.normalised(root.workspace + "/" + $0) })
        let ownPackages = checkoutPackageNames()
        var invalidated = 0
        for unit in units {
            let watches = unit.hasRelativeInputs && unit.buildScriptPackage.map(ownPackages.contains) == true
            if watches || unit.absoluteInputs.contains(where: paths.contains) {
                invalidated += try invalidate(unit, in: target)
            }
        }
        return invalidated
    }

    /// The names of the packages whose manifests are in the checkout (`name = "..."` under `[package]`).
    private func checkoutPackageNames() -> Set<String> {
        var names = Set<String>()
        let manifests = ((try? checkout.trackedFiles()) ?? []).filter {
            $0 == "Cargo.toml" || $0.hasSuffix("/Cargo.toml")
        }
        for manifest in manifests {
            guard let text = try? String(contentsOfFile: checkout.toplevel + "/" + manifest, encoding: .utf8) else {
                continue
            }
            var inPackage = false
            for line in text.split(separator: "\n").map({ $0.trimmingCharacters(in: .whitespaces) }) {
                if line.hasPrefix("[") { inPackage = line == "[package]" }
                guard inPackage, line.hasPrefix("name"), let quote = line.firstIndex(of: "\"") else { continue }
                let rest = line[line.index(after: quote)...]
                if let end = rest.firstIndex(of: "\"") { names.insert(String(rest[..<end])) }
            }
        }
        return names
    }

    /// Removes what makes cargo consider a unit fresh: a build script's `output` (the script reruns), or the
    /// fingerprint folders of a compiled unit (it recompiles).
    private func invalidate(_ unit: BuildInputs.Unit, in target: DirectoryDescriptor) throws(CargoError) -> Int {
        if unit.isBuildScriptRun {
            try CargoError.repair { () throws(FileError) in try target.remove(unit.file) }
            return 1
        }
        // deps/<crate>-<hash>.d and build/<package>-<hash>/<name>-<hash>.d belong to .fingerprint/<package>-<hash>/.
        let name = URL(fileURLWithPath: unit.file).deletingPathExtension().lastPathComponent
        guard let dash = name.lastIndex(of: "-") else { return 0 }
        let hash = name[name.index(after: dash)...]
        let fingerprints = unit.profile + "/.fingerprint"
        var removed = 0
        for folder in target.names(fingerprints) where folder.hasSuffix("-" + hash) {
            try CargoError.repair { () throws(FileError) in try target.remove(fingerprints + "/" + folder) }
            removed += 1
        }
        return removed
    }

    /// Outside the build root, an absolute build-root path in a fingerprint points at nothing (or, worse, at a
    /// stale copy): those units rebuild.
    private func invalidateUnitsNamingTheBuildRoot(in target: DirectoryDescriptor) throws(CargoError) -> Int {
        let needle = Array(root.path.utf8)
        var removed = 0
        for profile in record.profileDirectories {
            let fingerprints = profile + "/.fingerprint"
            for folder in target.names(fingerprints) {
                let unit = fingerprints + "/" + folder
                let mentionsRoot = target.names(unit).filter { $0.hasPrefix("dep-") }.contains { name in
                    // Unreadable counts as naming the root: when in doubt, rebuild.
                    guard let bytes = target.read(unit + "/" + name) else { return true }
                    return bytes.firstRange(of: needle) != nil
                }
                guard mentionsRoot else { continue }
                try CargoError.repair { () throws(FileError) in try target.remove(unit) }
                removed += 1
            }
        }
        return removed
    }

    // MARK: Step 3, after the swap

    /// Stamps the checkout, then shows the fingerprints again. `now` must be at least a second past the newest
    /// restored output (`CargoRestoring` waits for that), so that the floor is newer than every output even on a
    /// filesystem with one-second timestamps. Any failure leaves the fingerprints hidden: cargo then rebuilds
    /// everything rather than trust a half-repaired checkout.
    public func finish(_ plan: Plan, now: UInt64) throws(CargoError) -> Report {
        var report = plan.report
        report.floor = now
        let floor = now
        let failure = Mutex<CargoError?>(nil)
        ParallelWork.forEach(plan.files) { (_: Int, stamp: Stamp) in
            // Edited since the plan looked: it is changed now, whatever it was then.
            let time = stamp.seen == FileIdentity(stamp.path) ? (stamp.time ?? floor) : floor
            do throws(CargoError) {
                try setModificationTime(stamp.path, time)
            } catch {
                failure.withLock { if $0 == nil { $0 = error } }
            }
        }
        if let error = failure.withLock({ $0 }) { throw error }
        for path in plan.untracked {
            guard let mtime = modificationTime(path), mtime < floor else { continue }
            try setModificationTime(path, floor)
            report.untrackedTouched += 1
        }
        for stamp in plan.directories {
            try setModificationTime(stamp.path, stamp.time ?? floor)
        }
        // Relative to the target's descriptor, refusing symlinks on the way (the staging check already did).
        let target = try CargoError.repair { () throws(FileError) in try DirectoryDescriptor(opening: targetDirectory) }
        for profile in record.profileDirectories where target.kind(profile + "/" + Self.hiddenFingerprints) == S_IFDIR {
            try CargoError.repair { () throws(FileError) in
                try target.rename(in: profile, from: Self.hiddenFingerprints, to: ".fingerprint")
            }
        }
        return report
    }
}

/// Nanoseconds since the epoch of a timestamp, clamped to 0 (before the epoch) and `UInt64.max` (far future):
/// the edges are a file's business, never a crash.
func saturatingNanoseconds(_ time: timespec) -> UInt64 {
    guard time.tv_sec >= 0 else { return 0 }
    let (seconds, overflow) = UInt64(time.tv_sec).multipliedReportingOverflow(by: 1_000_000_000)
    guard !overflow else { return .max }
    let (total, carry) = seconds.addingReportingOverflow(UInt64(max(0, time.tv_nsec)))
    return carry ? .max : total
}
