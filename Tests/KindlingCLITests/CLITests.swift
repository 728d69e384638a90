import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingTesting
import Testing

@Suite("CLI: local commands", .serialized)
struct CLITests {
    @Test("keygen writes a 0600 key, prints the public key, and never overwrites")
    func keygen() throws {
        let world = try CLIWorld()
        #expect(world.publicKey.hasPrefix("ed25519:") && world.publicKey.count == 72)
        #expect(Fixtures.status(world.key)?.mode == 0o600)
        let again = try world.kindling(["keygen", "--secret-key", world.key])
        expectCleanFailure(again, mentioning: "refusing to overwrite")
    }

    @Test("trust add and list; duplicates are refused")
    func trust() throws {
        let world = try CLIWorld()
        let list = try world.kindling(["trust", "list", "--file", world.trust, "--json"])
        #expect(list.status == 0)
        #expect(list.stdout.contains(world.publicKey))
        let duplicate = try world.kindling(
            [
                "trust", "add", "--file", world.trust, "--name", "bors", "--public-key", world.publicKey, "--repos",
                "a/*",
            ])
        expectCleanFailure(duplicate, mentioning: "already has a key")
        let badKey = try world.kindling(
            ["trust", "add", "--file", world.trust, "--name", "x", "--public-key", "nope", "--repos", "a/*"])
        expectCleanFailure(badKey, mentioning: "not a kindling public key")
        // A secret key pasted where the public key goes is refused without echoing any of it.
        let secretText = try String(contentsOfFile: world.key, encoding: .utf8).trimmingCharacters(
            in: .whitespacesAndNewlines)
        let pasted = try world.kindling(
            ["trust", "add", "--file", world.trust, "--name", "y", "--public-key", secretText, "--repos", "a/*"])
        expectCleanFailure(pasted, mentioning: "that is a secret key")
        let secretHex = secretText.split(separator: ":").last.map(String.init) ?? secretText
        #expect(!pasted.stderr.contains(secretHex.prefix(8)), "the error echoed part of the secret: \(pasted.stderr)")
    }

    @Test("publish then restore reproduces the directory; read-only commands speak JSON")
    func publishRestore() throws {
        let world = try CLIWorld()
        let source = try world.makeSource()
        let id = try world.publish(source, extra: ["--key-value", "profile=debug", "--pin"])
        #expect(Digest(hex: id) != nil)

        let restored = try world.restore(into: world.path("out"))
        #expect(restored.status == 0, "\(restored)")
        for file in ["deps/libdep.rlib", "main.rs", "run.sh"] {
            #expect(Fixtures.read(source + "/" + file) == Fixtures.read(world.path("out/" + file)))
        }
        #expect(Fixtures.status(world.path("out/run.sh"))?.mode == 0o755)

        let refused = try world.restore(into: world.path("out"))
        expectCleanFailure(refused, mentioning: "not empty; pass --replace")
        #expect(try world.restore(into: world.path("out"), extra: ["--replace"]).status == 0)

        let list = try world.kindling(["list", "--store", world.store, "--json"])
        let rows = try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]]
        #expect(rows?.first?["id"] as? String == id)
        #expect(rows?.first?["pinned"] as? Bool == true)
        let stats = try world.kindling(["store", "stats", "--store", world.store, "--json"])
        let statsObject = try JSONSerialization.jsonObject(with: Data(stats.stdout.utf8)) as? [String: Any]
        #expect(statsObject?["completeManifestCount"] as? Int == 1)
        let verify = try world.kindling(["verify", "--store", world.store, "--json"])
        #expect(verify.status == 0, "\(verify)")
        let show = try world.kindling(["manifest", "show", "--store", world.store, String(id.prefix(12)), "--json"])
        #expect(show.stdout.contains("\"profile\" : \"debug\""))

        // The wrong cache key finds nothing usable, and says why.
        let mismatch = try world.restore(into: world.path("other"), extra: ["--key-value", "profile=release"])
        expectCleanFailure(mismatch, mentioning: "cache key differs (profile=debug)")
    }

    @Test("gc honours the cap and the pins")
    func gc() throws {
        let world = try CLIWorld()
        let pinned = try world.publish(try world.makeSource("a", bytes: 400_000), commit: "a", extra: ["--pin"])
        _ = try world.publish(
            try world.makeSource("b", bytes: 400_000).replacingOccurrences(of: "", with: ""), commit: "b")
        try Fixtures.write(Fixtures.bytes(count: 500_000, seed: 77), to: world.path("c/blob"))
        _ = try world.publish(world.path("c"), commit: "c")
        let gc = try world.kindling(["gc", "--store", world.store, "--max-size", "100K", "--json"])
        #expect(gc.status == 0, "\(gc)")
        #expect(gc.stdout.contains("\"pinnedExceedCap\" : true"))
        // The pinned snapshot still restores completely.
        let restore = try world.kindling(
            [
                "restore", "--store", world.store, "--trust", world.trust, "--repo", "rust-lang/demo", "--commit", "a",
                "--into", world.path("restored-a"),
            ])
        #expect(restore.status == 0, "\(restore)")
        let evicted = try world.restore(into: world.path("restored-c"), commit: "c")
        expectCleanFailure(evicted, mentioning: "lacks")
        #expect(!pinned.isEmpty)
        let badSize = try world.kindling(["gc", "--store", world.store, "--max-size", "lots"])
        #expect(badSize.status != 0)
    }
}
