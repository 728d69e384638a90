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
        // With the pinned toolchain: the one the build runs with.
        let pin = workspace.toolchainEnvironment
        let rustc = try ProcessRunner.output("rustc", ["-vV"], directory: workspace.root, environment: pin)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let cargo = try ProcessRunner.output("cargo", ["-V"], directory: workspace.root, environment: pin)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let host =
            rustc.split(separator: "\n").first { $0.hasPrefix("host: ") }.map { String($0.dropFirst(6)) } ?? "unknown"
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
        entries["cargo-env"] =
            cargoEnvironment.isEmpty ? "" : Blake2b.hash(Array(cargoEnvironment.joined(separator: "\n").utf8)).short
        let cargoHome = environment["CARGO_HOME"] ?? ((environment["HOME"] ?? NSHomeDirectory()) + "/.cargo")
        // In the namespace a private tmpfs hides the root's ancestors from the private base down: the build reads
        // no config there, so neither does the key (a planted file cannot make snapshots miss).
        let hidden = CargoLauncher.namespacesAvailable ? (try? CargoLauncher.privateBase(for: root.path)) ?? nil : nil
        entries["cargo-config"] = configDigest(
            files: configFiles(cargoHome: cargoHome, root: root, hiddenBelow: hidden))
        return CargoCacheKey(entries: entries)
    }

    /// The cargo config files outside the checkout that a build at the build root reads: those of the root's
    /// ancestors, then CARGO_HOME's. (The checkout's own are tracked files, so part of the commit.)
    static func configFiles(cargoHome: String, root: BuildRoot, hiddenBelow hidden: String? = nil) -> [String] {
        var directories: [String] = []
        var parent = URL(fileURLWithPath: root.path).deletingLastPathComponent().path
        while true {
            if let hidden, parent == hidden || parent.hasPrefix(hidden + "/") {
                // Not seen by the build.
            } else {
                directories.append(parent)
            }
            if parent == "/" { break }
            parent = URL(fileURLWithPath: parent).deletingLastPathComponent().path
        }
        let ancestors = directories.flatMap { [$0 + "/.cargo/config.toml", $0 + "/.cargo/config"] }
            .map { $0.replacingOccurrences(of: "//", with: "/") }
        return ancestors + [cargoHome + "/config.toml", cargoHome + "/config"]
    }

    /// A short hash of what in these config files can change build output: the `build`, `target`, `profile`,
    /// `env` and `unstable` tables (but not `build.jobs` or `build.target-dir`), or "" when there is none.
    /// A personal `[net]` or `[registries]` setting must not make every snapshot miss.
    static func configDigest(files: [String]) -> String {
        var relevant: [String] = []
        for path in files {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { continue }
            var table = ""
            for rawLine in text.split(separator: "\n") {
                let line = rawLine.trimmingCharacters(in: .whitespaces)
                if line.isEmpty || line.hasPrefix("#") { continue }
                if line.hasPrefix("[") {
                    table = line.trimmingCharacters(in: CharacterSet(charactersIn: "[] "))
                    continue
                }
                let key =
                    line.split(separator: "=", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
                let dotted = table.isEmpty ? key : table + "." + key
                let section = dotted.split(separator: ".").first.map(String.init) ?? ""
                guard ["build", "target", "profile", "env", "unstable"].contains(section) else { continue }
                if dotted == "build.jobs" || dotted == "build.target-dir" { continue }
                relevant.append((table.isEmpty ? "" : "[\(table)] ") + line)
            }
        }
        return relevant.isEmpty ? "" : Blake2b.hash(Array(relevant.joined(separator: "\n").utf8)).short
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
            let show = { (value: String?) in
                value.map { $0.split(separator: "\n").first.map(String.init) ?? "" } ?? "<absent>"
            }
            return "\(key): \(show(theirs)) (wanted \(show(mine)))"
        }
    }
}
