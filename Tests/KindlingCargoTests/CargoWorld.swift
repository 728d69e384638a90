import Foundation
import KindlingTesting
import Testing

/// A cargo repository, a "bors" checkout with its store and node, and a "developer" checkout elsewhere with its
/// own store, node (peered with bors) and CARGO_HOME. Every build goes through the real `kindling` binary.
final class CargoWorld {
    let directory = TemporaryDirectory("cargo")
    var origin: String { directory.file("origin") }
    var vendor: String { directory.file("vendor") }
    var bors: String { directory.file("bors") }
    var dev: String { directory.file("dev") }
    var borsStore: String { directory.file("bors-store") }
    var devStore: String { directory.file("dev-store") }
    var key: String { directory.file("bors.key") }
    var trust: String { directory.file("trust.json") }
    /// Build roots live under the test's folder: tests never share one, and never touch /tmp/kindling-build.
    var roots: String { directory.file("roots") }
    private(set) var borsNode: NodeProcess?
    private(set) var devNode: NodeProcess?

    var environment: [String: String] { ["KINDLING_BUILD_ROOT": roots] }
    var devEnvironment: [String: String] {
        environment.merging([
            "KINDLING_HOME": devStore, "CARGO_HOME": directory.file("dev-cargo-home"), "KINDLING_TRUST": trust,
        ]) { $1 }
    }

    static var generator: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
            .appendingPathComponent("tools/workspace/generate.py").path
    }

    init(nodes: Bool = true) throws {
        try run("/usr/bin/env", ["python3", Self.generator, origin, "--git", "--vendor", vendor])
        try git(["clone", "-q", origin, bors], in: directory.path)
        try git(["clone", "-q", origin, dev], in: directory.path)
        let keygen = try CommandRunner.kindling(["keygen", "--secret-key", key])
        try CommandRunner.kindling([
            "trust", "add", "--file", trust, "--name", "bors", "--public-key", keygen.lastLine, "--repos", "**",
        ])
        if nodes {
            borsNode = try NodeProcess(
                store: borsStore, arguments: ["--trust", trust], log: directory.file("bors-node.log"))
            devNode = try NodeProcess(
                store: devStore, arguments: ["--trust", trust, "--peer", borsNode?.address ?? ""],
                log: directory.file("dev-node.log"))
        }
    }

    deinit {
        devNode?.stop()
        borsNode?.stop()
    }

    @discardableResult
    func run(
        _ program: String, _ arguments: [String], in directory: String? = nil, environment: [String: String] = [:]
    ) throws -> CommandResult {
        let result = try CommandRunner.run(program, arguments, environment: environment, directory: directory)
        guard result.status == 0 else {
            throw WorldError.failed("\(program) \(arguments.joined(separator: " "))", result)
        }
        return result
    }

    @discardableResult
    func git(_ arguments: [String], in directory: String) throws -> CommandResult {
        try run(
            "/usr/bin/git", ["-c", "user.name=test", "-c", "user.email=test@example.invalid"] + arguments, in: directory
        )
    }

    @discardableResult
    func kindling(_ arguments: [String], in directory: String, environment: [String: String]) throws -> CommandResult {
        try CommandRunner.kindling(arguments, environment: environment, directory: directory)
    }

    /// Edits the origin repository and commits; returns the new commit.
    @discardableResult
    func commit(_ message: String, _ edit: (String) throws -> Void) throws -> String {
        try edit(origin)
        try git(["add", "-A"], in: origin)
        // A random edit may undo an earlier one: an empty commit is still a commit.
        try git(["commit", "-q", "--allow-empty", "-m", message], in: origin)
        return try git(["rev-parse", "HEAD"], in: origin).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// bors: checks out `commit` (default: origin's HEAD), builds at the build root, publishes and announces.
    @discardableResult
    func borsPublish(
        commit: String? = nil, profile: String = "dev", extraEnvironment: [String: String] = [:]
    ) throws -> String {
        try git(["fetch", "-q", "origin"], in: bors)
        try git(["checkout", "-q", "--detach", commit ?? "origin/HEAD"], in: bors)
        let env = environment.merging(["KINDLING_HOME": borsStore, "KINDLING_NO_RESTORE": "1"]) { $1 }.merging(
            extraEnvironment
        ) { $1 }
        let build = try kindling(
            ["cargo", "build", "-q"] + (profile == "release" ? ["--release"] : []), in: bors, environment: env)
        guard build.status == 0 else { throw WorldError.failed("bors build", build) }
        let publish = try kindling(
            ["publish", "--cargo", "--secret-key", key, "--store", borsStore, "--profile", profile], in: bors,
            environment: env)
        guard publish.status == 0 else { throw WorldError.failed("publish --cargo", publish) }
        return publish.lastLine
    }

    /// The developer: checks out `commit` (default origin/HEAD).
    func devCheckout(_ commit: String? = nil) throws {
        try git(["fetch", "-q", "origin"], in: dev)
        try git(["checkout", "-q", "--detach", commit ?? "origin/HEAD"], in: dev)
    }

    func devRestore(_ extra: [String] = [], environment: [String: String] = [:]) throws -> CommandResult {
        try kindling(["restore", "--cargo"] + extra, in: dev, environment: devEnvironment.merging(environment) { $1 })
    }

    /// `kindling cargo build -v` in the developer's checkout: the names of the units compiled.
    func devBuild(environment: [String: String] = [:]) throws -> BuildLog {
        let result = try kindling(
            ["cargo", "build", "-v"], in: dev,
            environment: devEnvironment.merging(["KINDLING_NO_RESTORE": "1"]) { $1 }.merging(environment) { $1 })
        guard result.status == 0 else { throw WorldError.failed("developer build", result) }
        return BuildLog(result.stderr)
    }

    func app(in checkout: String) throws -> String {
        try run(checkout + "/target/debug/app", []).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A clean build of the developer's current commit in a fresh clone: what every restored build must equal.
    func cleanBuild(environment: [String: String] = [:]) throws -> (app: String, tests: String) {
        let head = try git(["rev-parse", "HEAD"], in: dev).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let clean = directory.file("clean-\(head.prefix(8))-\(UInt32.random(in: 0...UInt32.max))")
        try git(["clone", "-q", origin, clean], in: directory.path)
        try git(["checkout", "-q", "--detach", head], in: clean)
        // The developer's uncommitted edits, if any, come along.
        let diff = try git(["diff", "HEAD"], in: dev).stdout
        if !diff.isEmpty {
            try diff.write(toFile: clean + "/.patch", atomically: true, encoding: .utf8)
            try git(["apply", ".patch"], in: clean)
            try FileManager.default.removeItem(atPath: clean + "/.patch")
        }
        let env = self.environment.merging(["KINDLING_HOME": directory.file("clean-store"), "KINDLING_NO_RESTORE": "1"])
        { $1 }
        .merging(environment) { $1 }
        try kindling(["cargo", "build", "-q"], in: clean, environment: env)
        let tests = try kindling(["cargo", "test", "-q"], in: clean, environment: env)
        defer { try? FileManager.default.removeItem(atPath: clean) }
        return (try app(in: clean), Self.testSummary(tests.stdout))
    }

    func devTests(environment: [String: String] = [:]) throws -> String {
        let result = try kindling(
            ["cargo", "test", "-q"], in: dev,
            environment: devEnvironment.merging(["KINDLING_NO_RESTORE": "1"]) { $1 }.merging(environment) { $1 })
        return Self.testSummary(result.stdout)
    }

    /// The lines that say which tests ran and passed, without timings.
    static func testSummary(_ output: String) -> String {
        output.split(separator: "\n").filter { $0.hasPrefix("test result:") || $0.hasPrefix("running") }
            .map { $0.replacingOccurrences(of: #"; finished in [0-9.]+s"#, with: "", options: .regularExpression) }
            .joined(separator: "\n")
    }
}

/// What `cargo build -v` did.
struct BuildLog: CustomStringConvertible {
    var compiled: [String] = []
    var fresh: [String] = []
    var dirtyReasons: [String] = []
    let text: String

    init(_ text: String) {
        self.text = text
        for line in text.split(separator: "\n") {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            let words = trimmed.split(separator: " ")
            guard words.count >= 2 else { continue }
            switch words[0] {
            case "Compiling": compiled.append(String(words[1]))
            case "Fresh": fresh.append(String(words[1]))
            case "Dirty": dirtyReasons.append(trimmed)
            default: break
            }
        }
    }

    var description: String { "compiled \(compiled), \(fresh.count) fresh\n\(dirtyReasons.joined(separator: "\n"))" }
}

enum WorldError: Error, CustomStringConvertible {
    case failed(String, CommandResult)

    var description: String {
        switch self {
        case .failed(let what, let result): return "\(what) failed: \(result)"
        }
    }
}

/// The developer target's newest session of a crate's incremental state, and how many of its object files were
/// written after `since` (recompiled CGUs) out of all (the rest were reused).
func incrementalReuse(target: String, crate: String, since: Date) throws -> (recompiled: Int, total: Int) {
    let incremental = target + "/debug/incremental"
    let crateDirectory = try #require(
        try FileManager.default.contentsOfDirectory(atPath: incremental).first { $0.hasPrefix(crate + "-") })
    let sessions = try FileManager.default.contentsOfDirectory(atPath: incremental + "/" + crateDirectory)
        .filter { $0.hasPrefix("s-") && !$0.hasSuffix(".lock") && !$0.hasSuffix("-working") }
        .map { incremental + "/" + crateDirectory + "/" + $0 }
    let newest = try #require(
        sessions.max {
            (try? FileManager.default.attributesOfItem(atPath: $0)[.modificationDate] as? Date ?? .distantPast)
                ?? .distantPast
                < (try? FileManager.default.attributesOfItem(atPath: $1)[.modificationDate] as? Date ?? .distantPast)
                ?? .distantPast
        })
    let objects = try FileManager.default.contentsOfDirectory(atPath: newest).filter { $0.hasSuffix(".o") }
    let recompiled = try objects.filter { name in
        let date = try FileManager.default.attributesOfItem(atPath: newest + "/" + name)[.modificationDate] as? Date
        return (date ?? .distantPast) > since
    }
    return (recompiled.count, objects.count)
}
