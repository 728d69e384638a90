import Foundation
import KindlingTesting
import Testing

/// A scratch area with a publisher key, a trust file and a store, driven through the real `kindling` binary.
final class CLIWorld {
    let directory = TemporaryDirectory("cli")
    var store: String { directory.file("store") }
    var key: String { directory.file("bors.key") }
    var trust: String { directory.file("trust.json") }
    private(set) var publicKey = ""

    init(repos: String = "rust-lang/*") throws {
        let keygen = try CommandRunner.kindling(["keygen", "--secret-key", key])
        #expect(keygen.status == 0, "\(keygen)")
        publicKey = keygen.lastLine
        let add = try kindling([
            "trust", "add", "--file", trust, "--name", "bors", "--public-key", publicKey, "--repos", repos,
        ])
        #expect(add.status == 0, "\(add)")
    }

    func path(_ relative: String) -> String { directory.file(relative) }

    @discardableResult
    func kindling(_ arguments: [String]) throws -> CommandResult {
        try CommandRunner.kindling(arguments)
    }

    /// Publishes `dir` and returns the manifest id (the last line of stdout).
    func publish(
        _ dir: String, repo: String = "rust-lang/demo", commit: String = "c1", extra: [String] = []
    ) throws -> String {
        let result = try kindling(
            ["publish", "--store", store, "--secret-key", key, "--repo", repo, "--commit", commit, "--dir", dir] + extra
        )
        #expect(result.status == 0, "\(result)")
        return result.lastLine
    }

    func restore(
        into: String, repo: String = "rust-lang/demo", commit: String = "c1", extra: [String] = []
    ) throws -> CommandResult {
        try kindling(
            ["restore", "--store", store, "--trust", trust, "--repo", repo, "--commit", commit, "--into", into] + extra)
    }

    /// A small tree of text and binary files.
    func makeSource(_ relative: String = "src", bytes: Int = 300_000) throws -> String {
        let root = path(relative)
        try Fixtures.write(Fixtures.bytes(count: bytes, seed: 42), to: root + "/deps/libdep.rlib")
        try Fixtures.write("fn main() {}\n", to: root + "/main.rs")
        try Fixtures.write("#!/bin/sh\necho hi\n", to: root + "/run.sh", mode: 0o755)
        return root
    }
}

/// Asserts the failure contract: non-zero exit and exactly one line on stderr, `kindling: error: ...`.
func expectCleanFailure(
    _ result: CommandResult, mentioning needle: String, sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(result.status != 0, "expected failure: \(result)", sourceLocation: sourceLocation)
    let lines = result.stderr.split(separator: "\n")
    #expect(lines.count == 1, "expected one error line: \(result)", sourceLocation: sourceLocation)
    #expect(result.stderr.hasPrefix("kindling: error: "), "\(result)", sourceLocation: sourceLocation)
    #expect(result.stderr.contains(needle), "expected '\(needle)' in: \(result.stderr)", sourceLocation: sourceLocation)
}

func listing(_ path: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
}

/// True when unprivileged user+mount namespaces work here (needed to mount a tiny tmpfs without root).
let namespacesAvailable: Bool = {
    guard let result = try? CommandRunner.run("/usr/bin/unshare", ["-Urm", "true"]) else { return false }
    return result.status == 0
}()
