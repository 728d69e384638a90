/// What can go wrong in the cargo integration. Each message says what to do next.
public enum CargoError: Error, Sendable, CustomStringConvertible {
    case commandFailed(command: String, status: Int32, output: String)
    case notAGitCheckout(String)
    case dirtyTree(String)
    case noSnapshot(wanted: String, available: [String], searched: Int)
    case localWork(target: String)
    case notAWorkspace(String)
    case toolMissing(String)
    case malformedRecord(String)
    case repairFailed(path: String, reason: String)
    case clockBehind(seconds: Double)
    case targetBusy(String)
    case invalidRepository(name: String, reason: String)
    case bookkeepingSymlink(String)
    case implausibleTimestamp(nanoseconds: UInt64)
    case plantedFile(path: String, reason: String)
    case toolchainByPath(file: String, path: String)
    case buildRoot(String)
    case manifestMissing(id: String)
    case notAsAnnounced(id: String)

    public var description: String {
        switch self {
        case .commandFailed(let command, let status, let output):
            let detail = output.split(separator: "\n").prefix(3).joined(separator: " / ")
            return "'\(command)' failed with status \(status)\(detail.isEmpty ? "" : ": \(detail)")"
        case .notAGitCheckout(let path):
            return "\(path) is not inside a git checkout; the cargo integration needs commits to match snapshots"
        case .dirtyTree(let summary):
            return "the checkout has uncommitted changes (\(summary)); commit them, or pass --allow-dirty"
        case .noSnapshot(let wanted, let available, let searched):
            let existing =
                available.isEmpty
                ? "no snapshot of this repository is known"
                : "known snapshots have other keys:\n    " + available.joined(separator: "\n    ")
            return
                "no snapshot with a matching cache key for the last \(searched) commits of HEAD's first-parent "
                + "history.\n  wanted: \(wanted)\n  \(existing)"
        case .localWork(let target):
            return
                "\(target) holds build output made after its last restore (local work); pass --replace to overwrite it"
        case .notAWorkspace(let detail):
            return "no cargo workspace found: \(detail)"
        case .toolMissing(let tool):
            return "\(tool) was not found on PATH"
        case .malformedRecord(let detail):
            return "the snapshot's cargo record is malformed (\(detail)); it was not used"
        case .repairFailed(let path, let reason):
            return "the freshness repair could not update \(path) (\(reason)); the target's fingerprints stay hidden, "
                + "so the next build compiles everything; fix the file's permissions and restore again"
        case .clockBehind(let seconds):
            return
                "this machine's clock is \(Int(seconds.rounded(.up))) s behind the one that built the snapshot: a file "
                + "edited now could look older than the build and be skipped by cargo; set the clock right "
                + "('timedatectl set-ntp true') and restore again"
        case .targetBusy(let detail):
            return "a cargo build is using the target directory (\(detail)); wait for it to finish, then restore"
        case .invalidRepository(let name, let reason):
            return "the repository name \(name.debugDescription) cannot be used (\(reason)); give a name like "
                + "'owner/name' with --repo, KINDLING_REPO or 'git config \(GitCheckout.repositoryConfigKey)'"
        case .bookkeepingSymlink(let reason):
            return "the snapshot is refused: \(reason); the repair and cargo would read, write or delete outside the "
                + "target through it (rebuild without the link and publish again)"
        case .implausibleTimestamp(let nanoseconds):
            return "the snapshot is refused: a file in it is dated \(nanoseconds / 1_000_000_000) s after the epoch, "
                + "more than a day ahead of this machine's clock; cargo's freshness checks cannot work with it"
        case .plantedFile(let path, let reason):
            return "refusing to build: \(path) \(reason), and cargo or rustup would read it as your configuration; "
                + "remove it (or ask its owner to), build in a directory only you can write, or enable user namespaces"
        case .toolchainByPath(let file, let path):
            return "\(file) names a toolchain by path (\(path)): Kindling does not run a toolchain a checkout names by "
                + "path; set RUSTUP_TOOLCHAIN to the toolchain you choose (RUSTUP_TOOLCHAIN=\(path) if you trust it)"
        case .buildRoot(let detail):
            return "cannot use the build root: \(detail)"
        case .manifestMissing(let id):
            return "manifest \(id) is missing from the store after the fetch"
        case .notAsAnnounced(let id):
            return "manifest \(id) does not have the repository, cache key and commit it was announced with; "
                + "it was not used"
        }
    }
}
