import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingTesting
import Testing

/// Issue 12's "Done means": root-signed trust documents published on one node reach every node of a line of real
/// node processes over loopback, are applied at once, and refused when replayed, under-signed or expired.
@Suite("CLI: trust documents through nodes", .serialized)
struct TrustDocumentNodeTests {
    static let roots = [Fixtures.key(101), Fixtures.key(102), Fixtures.key(103)]

    static var rootArguments: [String] {
        roots.flatMap { ["--root", $0.publicKey.text] } + ["--threshold", "2"]
    }

    /// A document of `version` trusting `keys`, signed by the roots of `signers` (indices into `roots`).
    static func document(
        _ version: UInt64, keys: [TrustedKey], signers: [Int], expires: TimeInterval = 30 * 86400
    ) throws -> [UInt8] {
        let rootSet = try TrustRoots(keys: roots.map(\.publicKey), threshold: 2)
        let instant = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 + expires).rounded(.down))
        var signed = SignedTrustDocument(
            document: TrustDocument(version: version, expires: instant, roots: rootSet, keys: keys))
        for index in signers { signed = signed.signed(with: roots[index]) }
        return signed.encoded()
    }

    static func trustVersion(_ node: NodeProcess) throws -> Int? {
        ((try node.status()["node"] as? [String: Any])?["trust"] as? [String: Any])?["version"] as? Int
    }

    static func snapshotIDs(_ node: NodeProcess) throws -> [String] {
        ((try node.status()["snapshots"] as? [[String: Any]]) ?? []).compactMap { $0["id"] as? String }
    }

    static func banned(_ node: NodeProcess) throws -> Int {
        (try node.status()["node"] as? [String: Any])?["bannedPeers"] as? Int ?? -1
    }

    /// Three nodes in a line: v1 trusts A, A's snapshot reaches node 3; v2 (revokes A) published on node 1 reaches
    /// node 3 within 10 s, which drops and refuses A's snapshot, no bans; v1 again, a v3 under threshold, and an
    /// expired v3 are refused; after a restart v2 is kept and v1 refused.
    @Test("A revocation published on one node reaches a line of nodes in 10 s; replays, weak and expired refused")
    func revocationThroughALine() throws {
        let world = try CLIWorld()
        let keyA = try PublicKey(text: world.publicKey)
        let keyB = Fixtures.key(110).publicKey
        let documents = world.path("docs")
        let v1Path = documents + "/v1.json"
        try Fixtures.write(
            try Self.document(
                1, keys: [TrustedKey(name: "bors-a", publicKey: keyA, repositories: [RepositoryGlob("rust-lang/*")])],
                signers: [0, 1]), to: v1Path)
        let stores = [world.store, world.path("store2"), world.path("store3")]
        // Node 1 gets its roots as flags; nodes 2 and 3 in node.json, where restore finds them too.
        let rootsJSON = Self.roots.map { "\"\($0.publicKey.text)\"" }.joined(separator: ", ")
        for store in stores.dropFirst() {
            try Fixtures.write(#"{"roots": [\#(rootsJSON)], "threshold": 2}"#, to: store + "/node.json")
        }
        let line = ["--no-peer-exchange"]
        let node1 = try NodeProcess(
            store: stores[0], arguments: line + Self.rootArguments, log: world.path("node1.log"))
        let node2 = try NodeProcess(
            store: stores[1], arguments: line + ["--peer", node1.address], log: world.path("node2.log"))
        let node3Arguments = line + ["--peer", node2.address]
        var node3 = try NodeProcess(store: stores[2], arguments: node3Arguments, log: world.path("node3.log"))
        try waitFor("the line connected") { try node2.peerCount() == 2 && node3.peerCount() == 1 }

        // v1 on node 1 reaches node 3.
        let publishV1 = try world.kindling(["trust", "publish", "--store", stores[0], v1Path])
        #expect(publishV1.status == 0, "\(publishV1)")
        try waitFor("v1 at node 3", timeout: 10) { try Self.trustVersion(node3) == 1 }

        // A publishes on node 1; node 3 fetches it (node 2 relays the announcement).
        let source = try world.makeSource()
        let manifest = try world.publish(source)
        try waitFor("A's snapshot at node 3") { try Self.snapshotIDs(node3).contains(manifest) }
        let fetch = try world.kindling(["fetch", "--store", stores[2], "--repo", "rust-lang/demo", "--commit", "c1"])
        #expect(fetch.status == 0, "\(fetch)")

        // v2 revokes A and trusts B, published on node 1 only.
        let v2Path = documents + "/v2.json"
        try Fixtures.write(
            try Self.document(
                2,
                keys: [
                    TrustedKey(
                        name: "bors-a", publicKey: keyA, repositories: [RepositoryGlob("rust-lang/*")], revoked: true),
                    TrustedKey(name: "bors-b", publicKey: keyB, repositories: [RepositoryGlob("rust-lang/*")]),
                ], signers: [1, 2]), to: v2Path)
        let started = Date()
        let publishV2 = try world.kindling(["trust", "publish", "--store", stores[0], v2Path])
        #expect(publishV2.status == 0, "\(publishV2)")
        try waitFor("node 3 dropped A's snapshot", timeout: 10) {
            try Self.trustVersion(node3) == 2 && !Self.snapshotIDs(node3).contains(manifest)
        }
        let elapsed = Date().timeIntervalSince(started)
        #expect(elapsed < 10, "v2 took \(elapsed) s to reach node 3")
        print("v2 published on node 1 was applied by node 3, two hops away, after \(elapsed) s")
        // Node 3 refuses to restore it, with no --trust: its node's document decides.
        let restore = try world.kindling(
            [
                "restore", "--store", stores[2], "--repo", "rust-lang/demo", "--commit", "c1", "--into",
                world.path("restored"),
            ])
        #expect(restore.status != 0, "\(restore)")
        #expect(restore.stderr.contains("no trusted snapshot"), "\(restore)")
        // Without the node's help, from the store alone: the node's document (read from its trust state) refuses it.
        let local = try world.kindling(
            [
                "restore", "--store", stores[2], "--repo", "rust-lang/demo", "--commit", "c1", "--no-fetch", "--into",
                world.path("restored"),
            ])
        expectCleanFailure(local, mentioning: "revoked")
        #expect(!FileManager.default.fileExists(atPath: world.path("restored/main.rs")))
        for node in [node1, node2, node3] { #expect(try Self.banned(node) == 0) }

        // Re-offering v1 is refused (rollback), on any node.
        let replay = try world.kindling(["trust", "publish", "--store", stores[2], v1Path])
        expectCleanFailure(replay, mentioning: "older than the version 2")
        // A v3 signed by one root only.
        let weakPath = documents + "/v3-one-root.json"
        try Fixtures.write(
            try Self.document(3, keys: [TrustedKey(name: "bors-b", publicKey: keyB)], signers: [0]), to: weakPath)
        expectCleanFailure(
            try world.kindling(["trust", "publish", "--store", stores[0], weakPath]), mentioning: "required signatures")
        // An expired v3.
        let expiredPath = documents + "/v3-expired.json"
        try Fixtures.write(
            try Self.document(
                3, keys: [TrustedKey(name: "bors-b", publicKey: keyB)], signers: [0, 1, 2], expires: -3600),
            to: expiredPath)
        expectCleanFailure(
            try world.kindling(["trust", "publish", "--store", stores[0], expiredPath]), mentioning: "expired")
        let refusal = ((try node1.status()["node"] as? [String: Any])?["trust"] as? [String: Any])?["lastRefusal"]
        #expect((refusal as? String)?.contains("expired") == true)
        #expect(try Self.trustVersion(node1) == 2)

        // A restart keeps v2 (the highest version) and refuses v1 after it.
        node3.stop()
        node3 = try NodeProcess(store: stores[2], arguments: node3Arguments, log: world.path("node3-again.log"))
        #expect(try Self.trustVersion(node3) == 2)
        #expect(!(try Self.snapshotIDs(node3)).contains(manifest))
        expectCleanFailure(
            try world.kindling(["trust", "publish", "--store", stores[2], v1Path]),
            mentioning: "older than the version 2")
        for node in [node1, node2, node3] { #expect(try Self.banned(node) == 0) }
        _ = node2
    }

    @Test("The trust state folder is private: files 0600 in a 0700 folder; a node refuses a folder others can write")
    func privateState() throws {
        let world = try CLIWorld()
        let path = world.path("v1.json")
        try Fixtures.write(
            try Self.document(
                1, keys: [TrustedKey(name: "a", publicKey: try PublicKey(text: world.publicKey))],
                signers: [0, 2]), to: path)
        let node = try NodeProcess(store: world.store, arguments: Self.rootArguments, log: world.path("node.log"))
        #expect(try world.kindling(["trust", "publish", "--store", world.store, path]).status == 0)
        let folder = world.store + "/trust-state"
        let folderMode = (try FileManager.default.attributesOfItem(atPath: folder)[.posixPermissions] as? Int) ?? -1
        #expect(folderMode == 0o700)
        for name in ["current", "v1"] {
            let mode =
                (try FileManager.default.attributesOfItem(atPath: folder + "/" + name)[.posixPermissions] as? Int)
            #expect(mode == 0o600, "\(name)")
        }
        node.stop()
        chmod(folder, 0o777)
        #expect(throws: NodeProcessError.self) {
            _ = try NodeProcess(store: world.store, arguments: Self.rootArguments, log: world.path("again.log"))
        }
        #expect(
            Fixtures.read(world.path("again.log")).map { String(decoding: $0, as: UTF8.self) }?.contains(
                "refusing the trust state folder") == true)
    }
}
