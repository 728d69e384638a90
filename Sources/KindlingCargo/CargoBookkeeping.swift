import Foundation
import KindlingSystem

/// Where cargo keeps its own bookkeeping in a captured target: a symlink there would make the freshness repair
/// or cargo itself read, write or delete outside the target, so a snapshot holding one is refused at publish and
/// at restore (Specs/cargo.md, "Symlinks in a snapshot").
public enum CargoBookkeeping {
    static let folders: Set<String> = [".fingerprint", "deps", "build", "incremental", "examples"]
    /// Names cargo or the repair write directly in a profile folder.
    static let profileFiles: Set<String> = [".cargo-lock", FreshnessRepair.hiddenFingerprints]

    /// Why a symlink at `path` (relative to the target) is refused, or nil when it may stay: everywhere but
    /// inside a build script's own `<profile>/build/<unit>/out/` (what a build script puts there is its own
    /// business). Cargo itself makes no symlinks in a target directory, and it writes through any it finds:
    /// fingerprints, locks, `deps`, `build`, `incremental`, the uplifted binaries and `.rustc_info.json`.
    public static func symlinkRefusal(_ path: String, profiles: [String]) -> String? {
        for profile in profiles {
            if path == profile || profile.hasPrefix(path + "/") {
                return "'\(path)' is a symlink on the way to the profile folder '\(profile)'"
            }
            guard path.hasPrefix(profile + "/") else { continue }
            let rest = path.dropFirst(profile.count + 1).split(separator: "/", omittingEmptySubsequences: false)
            guard let first = rest.first.map(String.init) else { continue }
            if profileFiles.contains(first) || first.hasPrefix(".fingerprint") {
                return "'\(path)' is a symlink where cargo keeps its fingerprints or lock"
            }
            if first == "build", rest.count > 3, rest[2] == "out" { return nil }
            if folders.contains(first) { return "'\(path)' is a symlink inside cargo's own '\(first)' folder" }
            return "'\(path)' is a symlink in a profile folder, where cargo writes its own files"
        }
        return "'\(path)' is a symlink outside the profile folders, where cargo writes its own files"
    }

    /// Throws on the first entry of a snapshot that is a symlink where cargo keeps its bookkeeping.
    public static func check(entries: [(path: String, isSymlink: Bool)], profiles: [String]) throws(CargoError) {
        for entry in entries where entry.isSymlink {
            if let reason = symlinkRefusal(entry.path, profiles: profiles) { throw .bookkeepingSymlink(reason) }
        }
    }

    /// The same check on a target directory on disk (at publish), walking it without following links.
    public static func check(targetDirectory: String, profiles: [String]) throws(CargoError) {
        guard FileSystem.exists(targetDirectory) else { return }
        let target = try CargoError.repair { () throws(FileError) in try DirectoryDescriptor(opening: targetDirectory) }
        for profile in profiles {
            guard let parts = DirectoryDescriptor.components(profile) else {
                throw .malformedRecord("the profile folder '\(profile)' is not a relative path")
            }
            var prefix = ""
            for part in parts {
                prefix = prefix.isEmpty ? part : prefix + "/" + part
                if target.kind(prefix) == S_IFLNK {
                    throw .bookkeepingSymlink(symlinkRefusal(prefix, profiles: [profile]) ?? prefix)
                }
            }
            var stack = [profile]
            while let folder = stack.popLast() {
                for name in target.names(folder) {
                    let path = folder + "/" + name
                    // Below the bookkeeping folders only: the rest of a profile folder is not captured.
                    let kind = target.kind(path)
                    if kind == S_IFLNK, let reason = symlinkRefusal(path, profiles: [profile]) {
                        throw .bookkeepingSymlink(reason)
                    }
                    if kind == S_IFDIR, folder != profile || folders.contains(name) { stack.append(path) }
                }
            }
        }
    }
}
