import Foundation
import KindlingCrypto

/// What a build must match to use a snapshot. A mismatch would not be stale (cargo hashes these into its
/// fingerprints and rebuilds), only useless: everything would compile again after a costly download.
public struct CargoCacheKey: Hashable, Sendable {
    public let entries: [String: String]

    public static let kind = "cargo-target-v1"

    /// Computes the key of a build in `workspace` with `profile` (and `--target` triple, if any).
    public static func compute(
        workspace: CargoWorkspace, root: BuildRoot, profile: String, target: String?,
        environment: [String: String]? = nil
    ) throws(CargoError) -> CargoCacheKey {
        let environment = environment ?? ProcessInfo.processInfo.environment
        // Run where the build runs, so that a rust-toolchain file picks the same toolchain cargo will use.
        let rustc = try ProcessRunner.output("rustc", ["-vV"], directory: workspace.root).trimmingCharacters(in: .whitespacesAndNewlines)
        let cargo = try ProcessRunner.output("cargo", ["-V"], directory: workspace.root).trimmingCharacters(in: .whitespacesAndNewlines)
        let host = rustc.split(separator: "\n").first { $0.hasPrefix("host: ") }.map { String($0.dropFirst(6)) } ?? "unknown"
        var entries: [String: String] = [
            "kind": kind, "rustc": rustc, "cargo": cargo, "host": host, "target": target ?? host, "profile": profile,
            "root": root.path,
        ]
        // Flags from the environment; flags from config files are in tracked files, so in the commit.
        let flags = ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_RUSTFLAGS", "RUSTDOCFLAGS"]
            .compactMap { name in environment[name].map { "\(name)=\($0)" } }
        entries["rustflags"] = flags.joined(separator: "\n")
        let cargoEnvironment = environment.keys
            .filter { name in
                (name.hasPrefix("CARGO_PROFILE_") || name.hasPrefix("CARGO_BUILD_") || name.hasPrefix("CARGO_TARGET_")
                    || name == "CARGO_INCREMENTAL") && name != "CARGO_TARGET_DIR" && name != "CARGO_BUILD_TARGET_DIR"
            }
            .sorted()
            .map { "\($0)=\(environment[$0] ?? "")" }
        entries["cargo-env"] = cargoEnvironment.isEmpty ? "" : Blake2b.hash(Array(cargoEnvironment.joined(separator: "\n").utf8)).short
        return CargoCacheKey(entries: entries)
    }

    /// The folder name cargo uses for a profile ("dev" and "test" build into "debug").
    public static func profileDirectory(_ profile: String) -> String {
        switch profile {
        case "dev", "test": return "debug"
        case "bench": return "release"
        default: return profile
        }
    }

    /// One line per entry, for messages; the multi-line rustc version shortened to its first line.
    public static func describe(_ entries: [String: String]) -> String {
        entries.sorted { $0.key < $1.key }
            .map { key, value in "\(key)=\(value.split(separator: "\n").first.map(String.init) ?? "")" }
            .joined(separator: ", ")
    }

    /// The entries of `other` that differ from ours, for "which key was wanted and which exist".
    public func differences(from other: [String: String]) -> [String] {
        Set(entries.keys).union(other.keys).sorted().compactMap { key in
            let mine = entries[key]
            let theirs = other[key]
            guard mine != theirs else { return nil }
            let show = { (value: String?) in value.map { $0.split(separator: "\n").first.map(String.init) ?? "" } ?? "<absent>" }
            return "\(key): \(show(theirs)) (wanted \(show(mine)))"
        }
    }
}
