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
            let existing = available.isEmpty
                ? "no snapshot of this repository is known"
                : "known snapshots have other keys:\n    " + available.joined(separator: "\n    ")
            return "no snapshot with a matching cache key for the last \(searched) commits of HEAD's first-parent history.\n"
                + "  wanted: \(wanted)\n  \(existing)"
        case .localWork(let target):
            return "\(target) holds build output made after its last restore (local work); pass --replace to overwrite it"
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
            return "this machine's clock is \(Int(seconds.rounded(.up))) s behind the one that built the snapshot: a file "
                + "edited now could look older than the build and be skipped by cargo; set the clock right "
                + "('timedatectl set-ntp true') and restore again"
        case .targetBusy(let detail):
            return "a cargo build is using the target directory (\(detail)); wait for it to finish, then restore"
        case .invalidRepository(let name, let reason):
            return "the repository name \(name.debugDescription) cannot be used (\(reason)); give a name like "
                + "'owner/name' with --repo, KINDLING_REPO or 'git config \(GitCheckout.repositoryConfigKey)'"
        }
    }
}
