import Foundation
import KindlingTesting
import Testing

/// The README's "Trust: roots, rotation, revocation" steps, run as written, so the README cannot drift from the CLI.
///
/// Each block follows a `<!-- trust-steps:NAME -->` marker. A `sh` block runs line by line (a line ending in `\`
/// continues) through `/bin/sh -c`, in one folder (the lead's, holding every key: in life they sit on different
/// machines), with the built `kindling` first on PATH and `KINDLING_HOME` set to node 1's store. What the README
/// leaves to the reader, the test provides as shell variables: `$BORS`, `$BORS2`, `$BORS3` (bors keys it makes
/// with `kindling keygen`) and `$ID` (a manifest id it published). `NAME=...` lines keep their value for later
/// lines. A `kindling node ...` line starts a real node (on 127.0.0.1, port 0, with the test's peers); a `json`
/// block is node.json, with `$NAME` replaced by the variable's value. A line that fails fails the test with its
/// README line number.
@Suite("README: trust steps", .serialized)
struct ReadmeTrustStepsTests {
    static let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("README.md").path

    @Test("Set-up, bors key rotation, emergency revocation, withdrawal and root rotation, as the README says")
    func documentedSteps() throws {
        let world = TemporaryDirectory("readme-trust")
        let lead = world.file("lead")
        try FileManager.default.createDirectory(atPath: lead, withIntermediateDirectories: true)
        let stores = [world.file("node1"), world.file("node2")]
        let steps = try ReadmeSteps(readme: Self.readme, directory: lead, home: stores[0])
        let document = lead + "/trust-doc.json"
        for (name, file) in [("BORS", "bors.key"), ("BORS2", "bors-2.key"), ("BORS3", "bors-3.key")] {
            let keygen = try CommandRunner.kindling(["keygen", "--secret-key", lead + "/" + file])
            try #require(keygen.status == 0, "\(keygen)")
            steps.variables[name] = keygen.lastLine
        }

        // Set-up: a valid document, version 2 (init, then bors added), two of three roots signed.
        let setup = try steps.run("setup")
        #expect(setup.last?.stdout.contains("valid under its roots") == true, "\(setup.last.map(\.description) ?? "")")
        #expect(try Self.version(document) == 2)
        // Node 1 as the README starts it; node 2 with the README's node.json, a peer of node 1.
        let node1 = try steps.startNode(
            "node", store: stores[0], extra: ["--no-peer-exchange"], log: world.file("1.log"))
        try steps.writeNodeJSON("node-json", to: stores[1] + "/node.json")
        let node2 = try NodeProcess(
            store: stores[1], arguments: ["--no-peer-exchange", "--peer", node1.address], log: world.file("2.log"))
        let nodes = [node1, node2]
        try waitFor("node 2 connected") { try node2.peerCount() == 1 }
        try steps.run("publish")
        try Self.waitApplied(document, by: nodes)

        // bors publishes with its key on node 1; node 2 lists it, fetches it and restores it.
        let source = try Self.makeSource(world.file("src"))
        let byBors = try Self.publish(source, key: lead + "/bors.key", store: stores[0], commit: "c1")
        try waitFor("bors's snapshot at node 2") { try Self.snapshotIDs(node2).contains(byBors) }
        let restored = try Self.restore(store: stores[1], commit: "c1", into: world.file("restored-c1"))
        #expect(restored.status == 0, "\(restored)")

        // Rotating bors's key: the new key is trusted beside the old one, then the old one is retired.
        try steps.run("rotate-bors")
        try Self.waitApplied(document, by: nodes)
        let byBors2 = try Self.publish(source, key: lead + "/bors-2.key", store: stores[0], commit: "c2")
        try waitFor("bors-2's snapshot at node 2") { try Self.snapshotIDs(node2).contains(byBors2) }
        #expect(try Self.snapshotIDs(node2).contains(byBors))
        let fetched = try CommandRunner.kindling(
            ["fetch", "--store", stores[1], "--repo", "org/demo", "--commit", "c2"])
        #expect(fetched.status == 0, "\(fetched)")
        try steps.run("retire-bors")
        try Self.waitApplied(document, by: nodes)
        // What the retired key signed before stays usable; what it signs afterwards is refused (outside validity).
        #expect(try Self.snapshotIDs(node2).contains(byBors))
        #expect(try Self.snapshotIDs(node2).contains(byBors2))
        let restoredAfterRetire = try Self.restore(
            store: stores[1], commit: "c1", into: world.file("restored-c1-retired"))
        #expect(restoredAfterRetire.status == 0, "\(restoredAfterRetire)")
        Thread.sleep(forTimeInterval: 1.1)  // the retirement instant is in whole seconds
        let late = try CommandRunner.kindling(
            [
                "publish", "--store", stores[0], "--secret-key", lead + "/bors.key", "--repo", "org/demo", "--commit",
                "c1-late", "--dir", source,
            ])
        // Signed into bors's own store, but node 1 refuses to announce it: it is outside the key's validity.
        #expect(late.stdout.contains("did not announce") || late.stderr.contains("did not announce"), "\(late)")
        #expect(late.description.contains("valid"), "\(late)")
        #expect(try !Self.snapshotIDs(node2).contains(late.lastLine))

        // Emergency revocation of bors-2: node 2 drops its snapshot within 10 s and refuses to restore it, although
        // its store holds every chunk; nobody is banned.
        let started = Date()
        try steps.run("revoke")
        try Self.waitApplied(document, by: nodes, timeout: 10)
        try waitFor("the leaked key's snapshot gone from node 2", timeout: 10) {
            try !Self.snapshotIDs(node2).contains(byBors2)
        }
        print("the revocation reached node 2 \(Date().timeIntervalSince(started)) s after the steps began")
        expectCleanFailure(
            try Self.restore(store: stores[1], commit: "c2", into: world.file("restored-c2"), extra: ["--no-fetch"]),
            mentioning: "revoked")
        #expect(try Self.restore(store: stores[1], commit: "c2", into: world.file("restored-c2")).status != 0)
        #expect(!FileManager.default.fileExists(atPath: world.file("restored-c2/main.rs")))
        for node in nodes { #expect(try Self.banned(node) == 0) }

        // Withdrawing one snapshot of the fresh key: it goes, the key stays trusted.
        let byBors3 = try Self.publish(source, key: lead + "/bors-3.key", store: stores[0], commit: "c3")
        try waitFor("bors-3's snapshot at node 2") { try Self.snapshotIDs(node2).contains(byBors3) }
        let fetchedC3 = try CommandRunner.kindling(
            ["fetch", "--store", stores[1], "--repo", "org/demo", "--commit", "c3"])
        #expect(fetchedC3.status == 0, "\(fetchedC3)")
        steps.variables["ID"] = byBors3
        try steps.run("withdraw")
        try Self.waitApplied(document, by: nodes)
        try waitFor("the withdrawn snapshot gone from node 2") { try !Self.snapshotIDs(node2).contains(byBors3) }
        expectCleanFailure(
            try Self.restore(store: stores[1], commit: "c3", into: world.file("restored-c3"), extra: ["--no-fetch"]),
            mentioning: "withdrawn")
        let again = try Self.publish(source, key: lead + "/bors-3.key", store: stores[0], commit: "c4")
        try waitFor("bors-3 still trusted at node 2") { try Self.snapshotIDs(node2).contains(again) }

        // Rotating root 3 out for root 4: both nodes, configured with roots 1-3, follow it.
        try steps.run("rotate-roots")
        try Self.waitApplied(document, by: nodes)
        let rotated = try Self.version(document)
        // The next version signed by root 1 and the retired root 3 is refused: 1 of 2 required signatures.
        let weak = lead + "/weak.json"
        let strong = lead + "/strong.json"
        try FileManager.default.copyItem(atPath: document, toPath: weak)
        try Self.kindling(["trust", "edit", weak, "--expires", "30d"])
        try FileManager.default.copyItem(atPath: weak, toPath: strong)
        try Self.kindling(["trust", "sign", weak, "--root-key", lead + "/root1.key"])
        try Self.kindling(
            ["trust", "sign", weak, "--root-key", lead + "/root3.key", "--previous", lead + "/trust-doc-before.json"])
        expectCleanFailure(
            try CommandRunner.kindling(["trust", "publish", "--store", stores[0], weak]),
            mentioning: "required signatures")
        // The same version signed by the new roots 2 and 4 is accepted, and reaches node 2.
        for key in ["root2.key", "root4.key"] {
            try Self.kindling(["trust", "sign", strong, "--root-key", lead + "/" + key])
        }
        #expect(try Self.version(strong) == rotated + 1)
        let published = try CommandRunner.kindling(["trust", "publish", "--store", stores[0], strong])
        #expect(published.status == 0, "\(published)")
        try Self.waitApplied(strong, by: nodes)
        // A node started now with the new roots (as the README advises) gets the current document from its peer.
        let newRoots = try ["R1", "R2", "R4"].map { try #require(steps.variables[$0]) }
        let node3 = try NodeProcess(
            store: world.file("node3"),
            arguments: newRoots.flatMap { ["--root", $0] } + ["--threshold", "2", "--peer", node1.address],
            log: world.file("3.log"))
        try Self.waitApplied(strong, by: [node3])
        #expect(try Self.snapshotIDs(node3).contains(again))
        for node in nodes + [node3] { #expect(try Self.banned(node) == 0) }
    }

    /// The markers the test needs are there, each once, on a block, and nothing else in the README claims one.
    @Test("Every trust-steps marker names one block; the test knows every one")
    func markers() throws {
        let blocks = try ReadmeSteps.blocks(readme: Self.readme)
        #expect(
            Set(blocks.keys) == [
                "setup", "node", "node-json", "publish", "rotate-bors", "retire-bors", "revoke", "withdraw",
                "rotate-roots",
            ])
        #expect(blocks["node"]?.lines.count == 1)
        #expect(blocks.values.allSatisfy { !$0.lines.isEmpty })
    }

    // MARK: - Helpers

    static func version(_ path: String) throws -> Int {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let object = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        return try #require((object?["signed"] as? [String: Any])?["version"] as? Int)
    }

    static func trustVersion(_ node: NodeProcess) throws -> Int? {
        ((try node.status()["node"] as? [String: Any])?["trust"] as? [String: Any])?["version"] as? Int
    }

    static func waitApplied(_ document: String, by nodes: [NodeProcess], timeout: TimeInterval = 20) throws {
        let version = try Self.version(document)
        try waitFor("every node at trust document version \(version)", timeout: timeout) {
            try nodes.allSatisfy { try Self.trustVersion($0) == version }
        }
    }

    static func snapshotIDs(_ node: NodeProcess) throws -> [String] {
        ((try node.status()["snapshots"] as? [[String: Any]]) ?? []).compactMap { $0["id"] as? String }
    }

    static func banned(_ node: NodeProcess) throws -> Int {
        (try node.status()["node"] as? [String: Any])?["bannedPeers"] as? Int ?? -1
    }

    static func makeSource(_ root: String) throws -> String {
        try Fixtures.write(Fixtures.bytes(count: 200_000, seed: 7), to: root + "/deps/libdep.rlib")
        try Fixtures.write("fn main() {}\n", to: root + "/main.rs")
        return root
    }

    /// Publishes `dir` for org/demo at `commit` through node 1; returns the manifest id.
    static func publish(_ dir: String, key: String, store: String, commit: String) throws -> String {
        let result = try CommandRunner.kindling(
            ["publish", "--store", store, "--secret-key", key, "--repo", "org/demo", "--commit", commit, "--dir", dir])
        try #require(result.status == 0, "\(result)")
        return result.lastLine
    }

    static func restore(store: String, commit: String, into: String, extra: [String] = []) throws -> CommandResult {
        try CommandRunner.kindling(
            ["restore", "--store", store, "--repo", "org/demo", "--commit", commit, "--into", into] + extra)
    }

    static func kindling(_ arguments: [String]) throws {
        let result = try CommandRunner.kindling(arguments)
        try #require(result.status == 0, "\(result)")
    }
}

/// The `trust-steps` blocks of the README and a shell session that runs them.
final class ReadmeSteps {
    struct Line {
        /// The README line the command starts on (1-based).
        var number: Int
        var text: String
    }

    struct Block {
        var language: String
        var lines: [Line]
    }

    struct StepFailure: Error, CustomStringConvertible {
        var description: String
    }

    let blocks: [String: Block]
    let directory: String
    let environment: [String: String]
    /// Shell variables set by `NAME=...` lines, and the ones the test provides.
    var variables: [String: String] = [:]

    init(readme: String, directory: String, home: String) throws {
        blocks = try Self.blocks(readme: readme)
        self.directory = directory
        let binaries = URL(fileURLWithPath: CommandRunner.kindlingPath).deletingLastPathComponent().path
        environment = [
            "PATH": binaries + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"),
            "KINDLING_HOME": home,
        ]
    }

    /// Every block that follows a `<!-- trust-steps:NAME -->` line (blank lines between allowed); a marker twice, or
    /// one without a fenced block after it, is an error.
    static func blocks(readme: String) throws -> [String: Block] {
        let text = try String(contentsOfFile: readme, encoding: .utf8)
        let lines = text.components(separatedBy: "\n")
        var result: [String: Block] = [:]
        var index = 0
        while index < lines.count {
            let line = lines[index].trimmingCharacters(in: .whitespaces)
            index += 1
            guard line.hasPrefix("<!-- trust-steps:"), line.hasSuffix("-->") else { continue }
            let name = String(line.dropFirst("<!-- trust-steps:".count).dropLast("-->".count))
                .trimmingCharacters(in: .whitespaces)
            while index < lines.count && lines[index].trimmingCharacters(in: .whitespaces).isEmpty { index += 1 }
            guard index < lines.count, lines[index].hasPrefix("```"), result[name] == nil else {
                throw StepFailure(description: "README.md:\(index): marker '\(name)' is repeated or has no block")
            }
            let language = String(lines[index].dropFirst(3))
            index += 1
            var block = Block(language: language, lines: [])
            var pending: Line?
            while index < lines.count && !lines[index].hasPrefix("```") {
                let raw = lines[index]
                index += 1
                if var open = pending {
                    open.text += "\n" + raw
                    pending = open
                } else if raw.trimmingCharacters(in: .whitespaces).isEmpty {
                    continue
                } else {
                    pending = Line(number: index, text: raw)
                }
                if let open = pending, language != "sh" || !open.text.hasSuffix("\\") {
                    block.lines.append(open)
                    pending = nil
                }
            }
            guard index < lines.count else {
                throw StepFailure(description: "README.md: the block of '\(name)' is not closed")
            }
            index += 1
            result[name] = block
        }
        return result
    }

    func block(_ name: String, language: String) throws -> Block {
        guard let block = blocks[name], block.language == language else {
            throw StepFailure(description: "README.md has no ```\(language) block after <!-- trust-steps:\(name) -->")
        }
        return block
    }

    /// Runs every line of the `sh` block `name` in order; the first that exits non-zero fails the test, naming it.
    @discardableResult
    func run(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> [CommandResult] {
        var results: [CommandResult] = []
        for line in try block(name, language: "sh").lines {
            let assigned = Self.assignedVariable(line.text)
            // An assignment prints the value it kept on a line of its own, after whatever the command printed.
            // (On lines of their own: the README line may end in a comment.)
            let keep = assigned.map { "\nstatus=$?; [ $status -eq 0 ] || exit $status\nprintf '\\n%s' \"$\($0)\"" }
            let script = line.text + (keep ?? "")
            let result = try shell(script)
            guard result.status == 0 else {
                let failure = "README.md:\(line.number): `\(line.text)` failed in block '\(name)': \(result)"
                Issue.record(Comment(rawValue: failure), sourceLocation: sourceLocation)
                throw StepFailure(description: failure)
            }
            if let assigned { variables[assigned] = result.lastLine }
            results.append(result)
        }
        return results
    }

    /// Starts the one `kindling node ...` line of block `name` as a real node on `store` (the shell expands its
    /// words), with `extra` arguments after the README's.
    func startNode(_ name: String, store: String, extra: [String], log: String) throws -> NodeProcess {
        let lines = try block(name, language: "sh").lines
        guard lines.count == 1, let line = lines.first, line.text.hasPrefix("kindling node ") else {
            throw StepFailure(description: "README.md: block '\(name)' must be one `kindling node ...` line")
        }
        let words = String(line.text.dropFirst("kindling node ".count))
        let expanded = try shell("set -- \(words)\nprintf '%s\\0' \"$@\"")
        guard expanded.status == 0 else {
            throw StepFailure(description: "README.md:\(line.number): cannot expand `\(line.text)`: \(expanded)")
        }
        let arguments = expanded.stdout.split(separator: "\0", omittingEmptySubsequences: false).dropLast()
            .map(String.init)
        do {
            return try NodeProcess(store: store, arguments: arguments + extra, log: log)
        } catch {
            throw StepFailure(description: "README.md:\(line.number): `\(line.text)` did not start a node: \(error)")
        }
    }

    /// Writes the `json` block `name` to `path`, with every `$NAME` replaced by its variable's value.
    func writeNodeJSON(_ name: String, to path: String) throws {
        var text = try block(name, language: "json").lines.map(\.text).joined(separator: "\n")
        for (key, value) in variables.sorted(by: { $0.key.count > $1.key.count }) {
            text = text.replacingOccurrences(of: "$" + key, with: value)
        }
        guard !text.contains("$"), (try? JSONSerialization.jsonObject(with: Data(text.utf8))) != nil else {
            throw StepFailure(description: "README.md: block '\(name)' is not JSON once its variables are set: \(text)")
        }
        try Fixtures.write(text + "\n", to: path)
    }

    private func shell(_ script: String) throws -> CommandResult {
        var merged = environment
        for (key, value) in variables { merged[key] = value }
        return try CommandRunner.run("/bin/sh", ["-c", script], environment: merged, directory: directory)
    }

    /// `NAME` for a line `NAME=...` (a shell assignment), else nil.
    static func assignedVariable(_ line: String) -> String? {
        guard let equals = line.firstIndex(of: "=") else { return nil }
        let name = line[..<equals]
        guard let first = name.first, first == "_" || first.isLetter,
            name.allSatisfy({ $0 == "_" || ($0.isASCII && ($0.isLetter || $0.isNumber)) })
        else { return nil }
        return String(name)
    }
}
