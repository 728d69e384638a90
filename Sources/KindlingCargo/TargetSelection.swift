import Foundation
public import KindlingManifest
import KindlingStore
import KindlingSystem

/// Which parts of a target directory a snapshot holds (Specs/cargo.md, "What is captured"):
///
/// - in each captured profile folder: `deps/`, `build/` (scripts, `output`, `root-output`, `out/`), `.fingerprint/`,
///   `examples/`, and of `incremental/` only the newest finished session of each crate with its lock file;
/// - not: binaries uplifted into the profile folder (cargo re-links them from `deps/` without compiling),
///   unfinished `-working` sessions, older sessions, `.cargo-lock`, other profiles, `doc/`, `package/`, `tmp/`.
public struct TargetSelection: Sendable {
    /// Profile folders relative to the target dir: "debug", or "<triple>/debug" plus "debug" for host artefacts.
    public let profileDirectories: [String]
    /// Relative paths of the session directories and lock files to keep.
    private let sessions: Set<String>

    static let kept: Set<String> = ["deps", "build", ".fingerprint", "examples", "incremental"]

    public init(targetDirectory: String, profileDirectories: [String]) {
        self.profileDirectories = profileDirectories
        var sessions = Set<String>()
        for profile in profileDirectories {
            let incremental = profile + "/incremental"
            for crate in (try? FileSystem.contents(of: targetDirectory + "/" + incremental)) ?? [] {
                let crateDirectory = targetDirectory + "/" + incremental + "/" + crate
                let names = (try? FileSystem.contents(of: crateDirectory)) ?? []
                // Finished sessions are directories "s-…" without "-working"; the newest by mtime is the one to use.
                let finished = names.filter {
                    $0.hasPrefix("s-") && !$0.hasSuffix(".lock") && !$0.hasSuffix("-working")
                }
                guard
                    let newest = finished.max(by: {
                        (modificationTime(crateDirectory + "/" + $0) ?? 0, $0) < (
                            modificationTime(crateDirectory + "/" + $1) ?? 0, $1
                        )
                    })
                else { continue }
                sessions.insert(incremental + "/" + crate + "/" + newest)
                // The lock file is named after the session up to its last '-' (the session hash).
                if let dash = newest.lastIndex(of: "-") {
                    let lock = String(newest[..<dash]) + ".lock"
                    if names.contains(lock) { sessions.insert(incremental + "/" + crate + "/" + lock) }
                }
            }
        }
        self.sessions = sessions
    }

    /// The capture filter: true for paths (relative to the target dir) that belong in the snapshot.
    public func includes(_ path: String, kind: EntryKind) -> Bool {
        for profile in profileDirectories {
            if path == profile || profile.hasPrefix(path + "/") { return kind == .directory }
            guard path.hasPrefix(profile + "/") else { continue }
            let rest = path.dropFirst(profile.count + 1)
            let first = rest.split(separator: "/", maxSplits: 1).first.map(String.init) ?? ""
            guard Self.kept.contains(first) else { return false }
            if first == "incremental" {
                let parts = rest.split(separator: "/")
                if parts.count <= 2 { return kind == .directory }
                let session = profile + "/" + parts.prefix(3).joined(separator: "/")
                return sessions.contains(session)
            }
            return true
        }
        return false
    }
}
