import Foundation
import KindlingTesting
import Testing

/// A running `kindling node` re-reads its trust file when it changes and on SIGHUP, without a restart; a file that
/// fails to load keeps the policy in force.
@Suite("CLI: trust file reload in a running node", .serialized)
struct TrustReloadTests {
    /// The commits of the snapshots the node lists, and its `trustProblem`.
    static func view(_ node: NodeProcess) throws -> (commits: Set<String>, problem: String?) {
        let status = try node.status()
        let snapshots = (status["snapshots"] as? [[String: Any]]) ?? []
        let problem = (status["node"] as? [String: Any])?["trustProblem"] as? String
        return (Set(snapshots.compactMap { $0["commit"] as? String }), problem)
    }

    static func log(_ node: NodeProcess) -> String {
        String(decoding: Fixtures.read(node.log) ?? [], as: UTF8.self)
    }

    @Test("A key revoked in the trust file is dropped within seconds; a broken file keeps the policy; SIGHUP reloads")
    func trustFileReload() throws {
        let world = try CLIWorld()
        // A second publisher key, trusted too.
        let otherKey = world.path("other.key")
        let keygen = try world.kindling(["keygen", "--secret-key", otherKey])
        #expect(keygen.status == 0, "\(keygen)")
        let add = try world.kindling([
            "trust", "add", "--file", world.trust, "--name", "other", "--public-key", keygen.lastLine, "--repos", "**",
        ])
        #expect(add.status == 0, "\(add)")
        let node = try NodeProcess(
            store: world.store, arguments: ["--trust", world.trust], log: world.path("node.log"))
        _ = try world.publish(try world.makeSource("a"), commit: "by-bors")
        // The second one signed by the other key (same store: the node announces it).
        let published = try world.kindling([
            "publish", "--store", world.store, "--secret-key", otherKey, "--repo", "rust-lang/demo", "--commit",
            "by-other-key", "--dir", try world.makeSource("c", bytes: 200_000),
        ])
        #expect(published.status == 0, "\(published)")
        try waitFor("the node lists the snapshots") {
            try Self.view(node).commits.isSuperset(of: ["by-bors", "by-other-key"])
        }

        // 1. `kindling trust revoke` on the node's file: the node notices on its own.
        let revoke = try world.kindling(["trust", "revoke", "--file", world.trust, "--name", "bors"])
        #expect(revoke.status == 0, "\(revoke)")
        let revokedAt = Date()
        try waitFor("the revoked key's snapshots are no longer listed", timeout: 10) {
            !(try Self.view(node).commits.contains("by-bors"))
        }
        let seconds = Date().timeIntervalSince(revokedAt)
        print("trust file reload: revoked key's snapshot gone \(String(format: "%.2f", seconds)) s after the revoke")
        #expect(seconds < 5)
        #expect(try Self.view(node).commits.contains("by-other-key"))
        #expect(node.process.isRunning)
        // A restore judges the stored manifest under the trust file as it is now.
        let restore = try world.restore(into: world.path("out"), commit: "by-bors")
        #expect(restore.status != 0, "\(restore)")
        #expect(!FileManager.default.fileExists(atPath: world.path("out")))

        // 2. A file that does not parse: the policy in force stays, and status and the log say why.
        let good = Fixtures.read(world.trust) ?? []
        try Fixtures.write("{ \"kindling-trust\": 1, \"keys\": [", to: world.trust)
        try waitFor("status reports the broken file", timeout: 10) { try Self.view(node).problem != nil }
        let broken = try Self.view(node)
        #expect(broken.problem?.contains("malformed") == true, "\(broken)")
        #expect(broken.commits.contains("by-other-key"), "a broken trust file must not mean trusting nothing")
        #expect(Self.log(node).contains("could not reload the trust file"))
        #expect(node.process.isRunning)
        try Fixtures.write(good, to: world.trust, mode: 0o644)
        try waitFor("the good file again clears the problem", timeout: 10) { try Self.view(node).problem == nil }

        // 3. A file another user could have written is refused too; once that is fixed (which the file's own
        // identity does not show, so polling cannot see it), SIGHUP reloads it.
        let folder = (world.trust as NSString).deletingLastPathComponent
        var info = stat()
        #expect(stat(folder, &info) == 0)
        let mode = info.st_mode & 0o7777
        #expect(chmod(folder, mode | 0o020) == 0)
        let revokeOther = try world.kindling(["trust", "revoke", "--file", world.trust, "--name", "other"])
        // The CLI itself refuses to edit a trust file in a group-writable folder; write what it would have.
        if revokeOther.status != 0 {
            let text = String(decoding: good, as: UTF8.self)
            let edited = text.replacingOccurrences(
                of: "\"name\" : \"other\",", with: "\"name\" : \"other\",\n      \"revoked\" : true,")
            #expect(edited != text, "the trust file's layout changed: \(text)")
            try Fixtures.write(edited, to: world.trust, mode: 0o644)
        }
        try waitFor("status reports the unsafe file", timeout: 10) { try Self.view(node).problem != nil }
        #expect(try Self.view(node).problem?.contains("chmod") == true)
        #expect(try Self.view(node).commits.contains("by-other-key"))
        #expect(chmod(folder, mode) == 0)
        Thread.sleep(forTimeInterval: 3)
        #expect(try Self.view(node).commits.contains("by-other-key"), "nothing but SIGHUP should reload it now")
        kill(node.process.processIdentifier, SIGHUP)
        try waitFor("SIGHUP reloads the file", timeout: 5) {
            let view = try Self.view(node)
            return !view.commits.contains("by-other-key") && view.problem == nil
        }
        #expect(node.process.isRunning, "SIGHUP must not stop the node")
        #expect(Self.log(node).contains("why=SIGHUP"))
        node.stop()
        #expect(node.process.terminationStatus == 0)
    }

    @Test("Two manifests of one commit by one key: restore refuses both, status and the node's log name them")
    func equivocationRefused() throws {
        let world = try CLIWorld()
        let node = try NodeProcess(
            store: world.store, arguments: ["--trust", world.trust], log: world.path("node.log"))
        let first = try world.publish(try world.makeSource("a"), commit: "c1")
        let second = try world.publish(try world.makeSource("b", bytes: 200_000), commit: "c1")
        #expect(first != second && first.count == 64 && second.count == 64)
        try waitFor("the node reports the equivocation") {
            let node = (try node.status()["node"] as? [String: Any]) ?? [:]
            return ((node["equivocations"] as? [Any]) ?? []).count == 1
        }
        let status = try world.kindling(["status", "--store", world.store, "--all"])
        #expect(status.status == 0, "\(status)")
        let line = status.stdout.split(separator: "\n").first { $0.hasPrefix("EQUIVOCATION") } ?? ""
        #expect(line.contains(first) && line.contains(second) && line.contains("rust-lang/demo@c1"), "\(status)")
        #expect(line.contains(world.publicKey), "\(status)")
        #expect(Self.log(node).contains("equivocation"))
        #expect(Self.log(node).contains(first) && Self.log(node).contains(second))
        let restore = try world.restore(into: world.path("out"))
        expectCleanFailure(restore, mentioning: "broken or stolen")
        #expect(!FileManager.default.fileExists(atPath: world.path("out")))
        // Named by its manifest id, it is refused too.
        let export = try world.kindling([
            "manifest", "export", "--store", world.store, first, "--out", world.path("first.manifest"),
        ])
        #expect(export.status == 0, "\(export)")
        let restoreFile = try world.kindling([
            "restore", "--store", world.store, "--trust", world.trust, "--manifest", world.path("first.manifest"),
            "--into", world.path("out2"),
        ])
        expectCleanFailure(restoreFile, mentioning: "broken or stolen")
        // Without a node, the store's own headers show it.
        node.stop()
        let offline = try world.restore(into: world.path("out3"))
        expectCleanFailure(offline, mentioning: "broken or stolen")
    }
}
