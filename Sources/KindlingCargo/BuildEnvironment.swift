import Foundation

/// The environment of everything the cargo integration runs (Specs/cargo.md, "What the build sees"): no variable
/// that names a key, and the toolchain pinned.
public enum BuildEnvironment {
    /// True for a variable that names a key, which no build (build scripts, proc macros: the merged commit's and
    /// its dependencies' code) may see: a name that, upper-cased, contains `SECRET_KEY`, `SIGNING_KEY`,
    /// `PRIVATE_KEY` or `SECRET_ACCESS_KEY`, or starts with `KINDLING_` and contains `SECRET` or `KEY`
    /// (`KINDLING_SECRET_KEY`, `KINDLING_MESH_SECRET`).
    public static func namesKey(_ name: String) -> Bool {
        let upper = name.uppercased()
        let keyWords = ["SECRET_KEY", "SIGNING_KEY", "PRIVATE_KEY", "SECRET_ACCESS_KEY"]
        if keyWords.contains(where: upper.contains) { return true }
        return upper.hasPrefix("KINDLING_") && (upper.contains("SECRET") || upper.contains("KEY"))
    }

    /// `environment` without the variables that name a key.
    public static func scrubbed(_ environment: [String: String]) -> [String: String] {
        environment.filter { !namesKey($0.key) }
    }

    /// Removes the variables that name a key from this process's own environment, so that nothing it starts
    /// afterwards (cargo through `exec`, git, rustc, rustup) inherits them.
    public static func scrubProcess() {
        for name in ProcessInfo.processInfo.environment.keys where namesKey(name) { unsetenv(name) }
    }
}

/// The toolchain a build runs with, chosen by the user and resolved outside the build root, passed to rustup's
/// proxies as `RUSTUP_TOOLCHAIN` (which overrides every `rust-toolchain*` file and directory override). Without
/// it, a `rust-toolchain.toml` in any ancestor of the checkout, or at the build root's base, would pick the
/// program cargo and rustc run (field lesson: rustup#2879).
///
/// In order: `RUSTUP_TOOLCHAIN` from the user's environment; else the checkout's own `rust-toolchain.toml` or
/// `rust-toolchain` (between the build's directory and the checkout's top level) when it names a channel
/// (it is part of the commit, the same for bors and every developer); a `path =` toolchain there is refused
/// with a message; else rustup's default, asked from `/`. Without rustup there is nothing to pin: cargo and rustc
/// are then not proxies and read no toolchain file.
public struct ToolchainPin: Sendable, Equatable {
    public var name: String
    /// Where the choice came from, for messages.
    public var source: String

    public var environment: [String: String] { ["RUSTUP_TOOLCHAIN": name] }

    public static let fileNames = ["rust-toolchain", "rust-toolchain.toml"]

    public static func resolve(
        directory: String, environment: [String: String]? = nil
    ) throws(CargoError) -> ToolchainPin? {
        let environment = environment ?? ProcessInfo.processInfo.environment
        if let chosen = environment["RUSTUP_TOOLCHAIN"], !chosen.isEmpty {
            return ToolchainPin(name: chosen, source: "RUSTUP_TOOLCHAIN")
        }
        if let own = try checkoutToolchain(directory: directory) { return own }
        guard let output = try? ProcessRunner.run("rustup", ["show", "active-toolchain"], directory: "/"),
            output.status == 0, let name = output.stdout.split(separator: " ").first.map(String.init), !name.isEmpty
        else { return nil }
        return ToolchainPin(name: name.trimmingCharacters(in: .whitespacesAndNewlines), source: "rustup's default")
    }

    /// The checkout's own toolchain file, searched from `directory` up to the checkout's top level (not above:
    /// what lies above the checkout is not the commit's).
    static func checkoutToolchain(directory: String) throws(CargoError) -> ToolchainPin? {
        guard
            let top = try? ProcessRunner.output("git", ["rev-parse", "--show-toplevel"], directory: directory)
                .trimmingCharacters(in: .whitespacesAndNewlines), !top.isEmpty
        else { return nil }
        var current = URL(fileURLWithPath: directory).resolvingSymlinksInPath().path
        let physicalTop = URL(fileURLWithPath: top).resolvingSymlinksInPath().path
        guard current == physicalTop || current.hasPrefix(physicalTop + "/") else { return nil }
        while true {
            // rustup prefers `rust-toolchain` when both exist.
            for name in fileNames {
                let file = current + "/" + name
                guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { continue }
                return try parse(text, file: file)
            }
            if current == physicalTop { return nil }
            current = URL(fileURLWithPath: current).deletingLastPathComponent().path
        }
    }

    /// A toolchain file's channel; refuses `path =` (and a legacy one-line file naming a path).
    static func parse(_ text: String, file: String) throws(CargoError) -> ToolchainPin? {
        let lines = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
        let isToml = lines.contains { $0.hasPrefix("[") || $0.contains("=") }
        guard isToml else {
            guard let line = lines.first else { return nil }
            if line.contains("/") { throw .toolchainByPath(file: file, path: line) }
            return ToolchainPin(name: line, source: file)
        }
        var channel: String?
        for line in lines {
            guard let equals = line.firstIndex(of: "=") else { continue }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces)
            let value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
                .trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))
            if key == "path" || key == "toolchain.path" { throw .toolchainByPath(file: file, path: value) }
            if key == "channel" || key == "toolchain.channel" { channel = value }
        }
        return channel.map { ToolchainPin(name: $0, source: file) }
    }
}
