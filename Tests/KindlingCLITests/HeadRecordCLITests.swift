import Foundation
import KindlingTesting
import Testing

/// Head records end to end (Specs/freshness.md): `kindling publish --branch` signs one, hands it to its node, and a
/// developer node's `status --json` shows it.
@Suite("CLI: head records", .serialized)
struct HeadRecordCLITests {
    static func heads(_ node: NodeProcess) throws -> [[String: Any]] {
        ((try node.status()["node"] as? [String: Any])?["heads"] as? [[String: Any]]) ?? []
    }

    @Test("publish --branch signs a head record that reaches a developer node; without a branch it says none is signed")
    func publishReachesDeveloper() throws {
        let world = try CLIWorld()
        let source = try world.makeSource()
        let bors = try NodeProcess(
            store: world.store, arguments: ["--trust", world.trust], log: world.path("bors.log"))
        let dev = try NodeProcess(
            store: world.path("dev-store"), arguments: ["--trust", world.trust, "--peer", bors.address],
            log: world.path("dev.log"))
        try waitFor("developer connected") { try bors.peerCount() == 1 }

        let plain = try world.kindling(
            [
                "publish", "--store", world.store, "--secret-key", world.key, "--repo", "rust-lang/demo", "--commit",
                "c0", "--dir", source,
            ])
        #expect(plain.status == 0, "\(plain)")
        #expect(plain.stderr.contains("no head record signed"))

        var sequences: [UInt64] = []
        for commit in ["c1", "c2"] {
            let publish = try world.kindling(
                [
                    "publish", "--store", world.store, "--secret-key", world.key, "--repo", "rust-lang/demo",
                    "--commit",
                    commit, "--dir", source, "--branch", "master", "--head-expires", "1h",
                ])
            #expect(publish.status == 0, "\(publish)")
            #expect(!publish.stderr.contains("did not take the head record"), "\(publish)")
            let line = try #require(publish.stdout.split(separator: "\n").first { $0.hasPrefix("head record ") })
            sequences.append(try #require(UInt64(line.split(separator: " ")[2].dropLast())))
        }
        #expect(sequences[1] > sequences[0])
        try waitFor("the developer node holds the second record") {
            try Self.heads(dev).first?["sequence"] as? UInt64 == sequences[1]
        }
        let head = try #require(try Self.heads(dev).first)
        #expect(head["repository"] as? String == "rust-lang/demo")
        #expect(head["expired"] as? Bool == false)
        let entries = try #require(head["entries"] as? [[String: Any]])
        #expect(entries.count == 1)
        #expect(entries.first?["branch"] as? String == "master" && entries.first?["commit"] as? String == "c2")
        // The text status shows it too.
        let text = try world.kindling(["status", "--store", world.path("dev-store"), "--all"])
        #expect(text.stdout.contains("head       rust-lang/demo record \(sequences[1])"), "\(text)")
        _ = bors
    }
}
