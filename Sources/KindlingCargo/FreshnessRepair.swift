import Foundation
import KindlingCrypto
import KindlingStore
import Synchronization

/// Makes cargo's mtime-based freshness checks correct for a restored target directory
/// (cargo-relocation-facts §2-3, Specs/cargo.md "Freshness repair"):
///
/// 1. every tracked file whose content equals the CI file gets back the CI mtime, so cargo sees it unchanged;
/// 2. every other file that could be an input (changed, new, untracked) gets an mtime above the newest restored
///    output and above now (`floor`), so cargo sees it changed whatever the clocks of CI and this machine say;
/// 3. inputs outside the checkout whose content differs from CI's make their units rebuild (their fingerprint,
///    or the build script's `output`, is removed);
/// 4. outside the build root (no namespaces), units whose fingerprints name absolute build-root paths rebuild.
///
/// Every doubtful case rebuilds; nothing is ever made to look fresher than it is.
public struct FreshnessRepair: Sendable {
    public struct Report: Sendable, Codable {
        public var unchanged = 0
        public var changed = 0
        public var added = 0
        public var untrackedTouched = 0
        public var externalChanged = 0
        public var unitsInvalidated = 0
        public var floor: UInt64 = 0
    }

    public let record: CargoRecord
    public let checkout: GitCheckout
    public let root: BuildRoot
    public let targetDirectory: String
    /// True when builds will run at the build root (mount namespace): absolute paths then match.
    public let atBuildRoot: Bool

    public init(record: CargoRecord, checkout: GitCheckout, root: BuildRoot, targetDirectory: String, atBuildRoot: Bool) {
        self.record = record
        self.checkout = checkout
        self.root = root
        self.targetDirectory = targetDirectory
        self.atBuildRoot = atBuildRoot
    }

    public func apply(newestOutput: UInt64, now: UInt64? = nil) throws(CargoError) -> Report {
        let now = now ?? UInt64(Date().timeIntervalSince1970 * 1e9)
        var report = Report()
        // One second above the newest output and above now: a file stamped with `floor` is newer than anything
        // restored, even when this machine's clock is behind CI's (the clock-skew case of the facts, §3).
        report.floor = max(now, newestOutput) + 1_000_000_000
        let floor = report.floor
        let recorded = Dictionary(record.sources.map { ($0.path, $0) }, uniquingKeysWith: { first, _ in first })
        let tracked = try checkout.trackedFiles()
        let outcomes = Mutex<(unchanged: Int, changed: Int, added: Int)>((0, 0, 0))
        let toplevel = checkout.toplevel
        ParallelWork.forEach(tracked) { (_: Int, path: String) in
            let full = toplevel + "/" + path
            guard let source = recorded[path] else {
                _ = setModificationTime(full, floor)
                outcomes.withLock { $0.added += 1 }
                return
            }
            var info = stat()
            let sameSize = stat(full, &info) == 0 && Int(info.st_size) == source.size
            if sameSize, let local = hashFile(full), local.digest == source.digest {
                _ = setModificationTime(full, source.modificationTime)
                outcomes.withLock { $0.unchanged += 1 }
            } else {
                _ = setModificationTime(full, floor)
                outcomes.withLock { $0.changed += 1 }
            }
        }
        (report.unchanged, report.changed, report.added) = outcomes.withLock { ($0.unchanged, $0.changed, $0.added) }
        report.untrackedTouched = touchUntracked(tracked: Set(tracked), floor: floor)
        let (externalChanged, invalidated) = invalidateChangedExternalInputs()
        report.externalChanged = externalChanged
        report.unitsInvalidated = invalidated + (atBuildRoot ? 0 : invalidateUnitsNamingTheBuildRoot())
        return report
    }

    /// Untracked files (build inputs git does not know: generated files, `.env`, a forgotten `git add`) count as
    /// changed: stamped with `floor` unless already newer. Other target directories and `.git` are skipped.
    private func touchUntracked(tracked: Set<String>, floor: UInt64) -> Int {
        var touched = 0
        var stack = [""]
        let realTarget = URL(fileURLWithPath: targetDirectory).resolvingSymlinksInPath().path
        while let relative = stack.popLast() {
            let directory = relative.isEmpty ? checkout.toplevel : checkout.toplevel + "/" + relative
            if directory == realTarget || FileSystem.exists(directory + "/CACHEDIR.TAG") { continue }
            for name in (try? FileSystem.contents(of: directory)) ?? [] where !(relative.isEmpty && name == ".git") {
                let path = relative.isEmpty ? name : relative + "/" + name
                let full = checkout.toplevel + "/" + path
                if FileSystem.isDirectory(full) {
                    stack.append(path)
                } else if !tracked.contains(path), let mtime = modificationTime(full), mtime < floor {
                    if setModificationTime(full, floor) { touched += 1 }
                }
            }
        }
        return touched
    }

    /// Units that depend on an input outside the checkout whose content is not the one CI built with.
    private func invalidateChangedExternalInputs() -> (changed: Int, invalidated: Int) {
        let known = Dictionary(record.externalInputs.map { ($0.path, $0.digest) }, uniquingKeysWith: { first, _ in first })
        var verdicts: [String: Bool] = [:]
        func changed(_ path: String) -> Bool {
            if let verdict = verdicts[path] { return verdict }
            // Inputs under the build root are the checkout's own files (covered by the source record).
            if path.hasPrefix(root.path + "/") { return false }
            let local = hashFile(path)?.digest
            let verdict: Bool
            if let recorded = known[path] { verdict = recorded != local } else { verdict = true }
            verdicts[path] = verdict
            return verdict
        }
        var invalidated = 0
        for unit in BuildInputs.units(targetDirectory: targetDirectory, profileDirectories: record.profileDirectories)
        where unit.absoluteInputs.contains(where: changed) {
            invalidated += invalidate(unit)
        }
        return (verdicts.values.filter { $0 }.count, invalidated)
    }

    /// Removes what makes cargo consider a unit fresh: a build script's `output` (the script reruns), or the
    /// fingerprint folders of a compiled unit (it recompiles).
    private func invalidate(_ unit: BuildInputs.Unit) -> Int {
        if unit.isBuildScriptRun {
            return unlink(targetDirectory + "/" + unit.file) == 0 ? 1 : 0
        }
        // deps/<crate>-<hash>.d belongs to .fingerprint/<package>-<hash>/.
        let name = URL(fileURLWithPath: unit.file).deletingPathExtension().lastPathComponent
        guard let dash = name.lastIndex(of: "-") else { return 0 }
        let hash = name[name.index(after: dash)...]
        // "debug/deps/x.d" or "<triple>/debug/deps/x.d": the profile folder is what precedes "/deps/".
        guard let profileDirectory = unit.file.components(separatedBy: "/deps/").first else { return 0 }
        let fingerprints = targetDirectory + "/" + profileDirectory + "/.fingerprint"
        var removed = 0
        for folder in (try? FileSystem.contents(of: fingerprints)) ?? [] where folder.hasSuffix("-" + hash) {
            if (try? FileSystem.removeTree(fingerprints + "/" + folder)) != nil { removed += 1 }
        }
        return removed
    }

    /// Outside the build root, an absolute build-root path in a fingerprint points at nothing (or, worse, at a
    /// stale copy): those units rebuild.
    private func invalidateUnitsNamingTheBuildRoot() -> Int {
        let needle = Array(root.path.utf8)
        var removed = 0
        for profile in record.profileDirectories {
            let fingerprints = targetDirectory + "/" + profile + "/.fingerprint"
            for folder in (try? FileSystem.contents(of: fingerprints)) ?? [] {
                let unit = fingerprints + "/" + folder
                let names = (try? FileSystem.contents(of: unit)) ?? []
                let mentionsRoot = names.filter { $0.hasPrefix("dep-") }.contains { name in
                    (try? PosixFile(opening: unit + "/" + name, flags: O_RDONLY).readAll(limit: 64 << 20))?.firstRange(of: needle) != nil
                }
                if mentionsRoot, (try? FileSystem.removeTree(unit)) != nil { removed += 1 }
            }
        }
        return removed
    }
}
