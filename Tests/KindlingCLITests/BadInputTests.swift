import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingTesting
import Testing

/// Every bad input named by the foundation issue: a clear one-line error, a non-zero exit, and nothing lost.
@Suite("CLI: bad input", .serialized)
struct BadInputTests {
    @Test("A manifest signed by an unknown key is refused")
    func unknownKey() throws {
        let world = try CLIWorld()
        _ = try world.publish(try world.makeSource())
        let other = TrustFile(keys: [TrustedKey(name: "someone-else", publicKey: Fixtures.key(9).publicKey)])
        try other.save(path: world.path("other-trust.json"))
        let result = try world.kindling(
            [
                "restore", "--store", world.store, "--trust", world.path("other-trust.json"), "--repo",
                "rust-lang/demo",
                "--commit", "c1", "--into", world.path("out"),
            ])
        expectCleanFailure(result, mentioning: "not in the trust file")
        #expect(!FileManager.default.fileExists(atPath: world.path("out")))
    }

    @Test("A valid signature over a tampered header, or a tampered body, is refused")
    func tamperedManifest() throws {
        let world = try CLIWorld()
        let id = try world.publish(try world.makeSource())
        let file = world.path("m.kdf")
        #expect(try world.kindling(["manifest", "export", "--store", world.store, id, "--out", file]).status == 0)
        let bytes = try #require(Fixtures.read(file))
        let manifest = try ManifestFile.decode(bytes)

        // Change the commit inside the signed header: same length, so the file still parses.
        var header = manifest.header
        header.commit = "c2"
        let forgedHeader = header.encoded()
        var writer = CanonicalWriter()
        writer.writeRaw(ManifestFile.magic)
        writer.writeVarint(ManifestFile.formatVersion)
        writer.writeBytes(forgedHeader)
        writer.writeRaw(manifest.signed.signature.bytes)
        writer.writeBytes(manifest.bodyBytes)
        try Data(writer.bytes).write(to: URL(fileURLWithPath: world.path("forged-header.kdf")))
        let forged = try world.kindling(
            [
                "restore", "--store", world.store, "--trust", world.trust, "--manifest",
                world.path("forged-header.kdf"),
                "--into", world.path("out"),
            ])
        expectCleanFailure(forged, mentioning: "invalid signature")

        // Change one byte of the body: it no longer matches the signed digest.
        var body = bytes
        body[body.count - 3] ^= 0x01
        try Data(body).write(to: URL(fileURLWithPath: world.path("forged-body.kdf")))
        let forgedBody = try world.kindling(
            [
                "restore", "--store", world.store, "--trust", world.trust, "--manifest", world.path("forged-body.kdf"),
                "--into", world.path("out"),
            ])
        expectCleanFailure(forgedBody, mentioning: "does not match the digest")
        #expect(!FileManager.default.fileExists(atPath: world.path("out")))
    }

    @Test("A key may not sign for a repository outside its scope")
    func repositoryNotAllowed() throws {
        let world = try CLIWorld(repos: "rust-lang/*")
        _ = try world.publish(try world.makeSource(), repo: "evil/demo")
        let result = try world.restore(into: world.path("out"), repo: "evil/demo")
        expectCleanFailure(result, mentioning: "may not sign for repository 'evil/demo'")
        #expect(!FileManager.default.fileExists(atPath: world.path("out")))
    }

    @Test("A corrupted chunk file is detected at restore and never written into the destination")
    func corruptChunk() throws {
        let world = try CLIWorld()
        _ = try world.publish(try world.makeSource())
        // Corrupt every chunk file: whichever the restore reads first fails.
        let chunks = world.store + "/chunks"
        for prefix in listing(chunks) {
            for name in listing(chunks + "/" + prefix) {
                let path = chunks + "/" + prefix + "/" + name
                var bytes = try #require(Fixtures.read(path))
                bytes[bytes.count - 1] ^= 0xff
                try Data(bytes).write(to: URL(fileURLWithPath: path))
            }
        }
        try Fixtures.write("keep me", to: world.path("out/local.txt"))
        let result = try world.restore(into: world.path("out"), extra: ["--replace"])
        expectCleanFailure(result, mentioning: "corrupt")
        #expect(listing(world.path("out")) == ["local.txt"])
        #expect(listing(world.path(".")).filter { $0.contains("staging") }.isEmpty)
        let verify = try world.kindling(["verify", "--store", world.store])
        #expect(verify.status == 1)
        #expect(verify.stdout.contains("corrupt chunk"))
    }

    @Test("Paths with '..' or absolute paths in a signed manifest are refused before anything is written")
    func unsafePaths() throws {
        let world = try CLIWorld()
        let key = try SecretKeyFile.load(path: world.key)
        for evil in ["../escape", "/etc/evil", "a/../../escape"] {
            var body = CanonicalWriter()
            body.writeVarint(1)
            body.writeString(evil)
            body.writeByte(EntryKind.file.rawValue)
            body.writeVarint(0o644)
            body.writeVarint(0)
            body.writeVarint(0)
            body.writeVarint(0)
            let header = ManifestHeader(
                repository: try RepositoryName("rust-lang/demo"), commit: "c1", createdAt: Date().nanosecondsSinceEpoch,
                publisher: key.publicKey, cacheKey: [:], bodyDigest: Blake2b.hash(body.bytes),
                bodyByteCount: body.bytes.count, entryCount: 1, fileByteCount: 0, chunkReferenceCount: 0)
            let signed = SignedHeader(signing: header, with: key)
            var file = CanonicalWriter()
            file.writeRaw(ManifestFile.magic)
            file.writeVarint(1)
            file.writeBytes(signed.headerBytes)
            file.writeRaw(signed.signature.bytes)
            file.writeBytes(body.bytes)
            try Data(file.bytes).write(to: URL(fileURLWithPath: world.path("evil.kdf")))
            let result = try world.kindling(
                [
                    "restore", "--store", world.store, "--trust", world.trust, "--manifest", world.path("evil.kdf"),
                    "--into", world.path("out"),
                ])
            expectCleanFailure(result, mentioning: "unsafe path")
            #expect(!FileManager.default.fileExists(atPath: world.path("out")))
            #expect(!FileManager.default.fileExists(atPath: world.path("escape")))
        }
    }

    @Test("Truncated or garbage manifest files are refused")
    func garbageManifestFiles() throws {
        let world = try CLIWorld()
        let id = try world.publish(try world.makeSource())
        let file = world.path("m.kdf")
        #expect(try world.kindling(["manifest", "export", "--store", world.store, id, "--out", file]).status == 0)
        let bytes = try #require(Fixtures.read(file))
        let cases: [(String, [UInt8])] = [
            ("truncated", Array(bytes.prefix(bytes.count / 2))), ("garbage", Fixtures.bytes(count: 500, seed: 1)),
            ("empty", []), ("header-only", Array(bytes.prefix(40))),
        ]
        for (name, content) in cases {
            try Data(content).write(to: URL(fileURLWithPath: world.path(name)))
            let result = try world.kindling(
                [
                    "restore", "--store", world.store, "--trust", world.trust, "--manifest", world.path(name),
                    "--into", world.path("out"),
                ])
            expectCleanFailure(result, mentioning: "is unusable")
            #expect(!FileManager.default.fileExists(atPath: world.path("out")))
        }
        let importGarbage = try world.kindling([
            "manifest", "import", "--store", world.store, "--trust", world.trust, world.path("garbage"),
        ])
        expectCleanFailure(importGarbage, mentioning: "is unusable")
        // A file larger than any manifest is refused before it is read (sparse: it takes no disk).
        let huge = world.path("huge.kdf")
        #expect(FileManager.default.createFile(atPath: huge, contents: nil))
        #expect(truncate(huge, 1 << 30) == 0)
        let tooLarge = try world.kindling(
            [
                "restore", "--store", world.store, "--trust", world.trust, "--manifest", huge, "--into",
                world.path("out"),
            ])
        expectCleanFailure(tooLarge, mentioning: "larger than any manifest")
    }

    @Test("Read-only commands on a store that does not exist say so, and create nothing")
    func missingStore() throws {
        let world = try CLIWorld()
        let typo = world.path("no-such-store")
        for command in [["store", "stats"], ["verify"], ["list"], ["gc", "--max-size", "1G"]] {
            let result = try world.kindling(command + ["--store", typo])
            expectCleanFailure(result, mentioning: "there is no store at")
        }
        #expect(!FileManager.default.fileExists(atPath: typo))
    }

    @Test("A trust file naming one public key twice is refused: which scope applies would depend on order")
    func duplicateTrustedKey() throws {
        let world = try CLIWorld()
        let text = try String(contentsOfFile: world.trust, encoding: .utf8)
        let document = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        let keys = try #require(document["keys"] as? [[String: Any]])
        var twin = try #require(keys.first)
        twin["name"] = "bors-again"
        twin["repositories"] = ["**"]
        var doubled = document
        doubled["keys"] = keys + [twin]
        try JSONSerialization.data(withJSONObject: doubled).write(to: URL(fileURLWithPath: world.trust))
        let list = try world.kindling(["trust", "list", "--file", world.trust])
        expectCleanFailure(list, mentioning: "repeats the public key")
    }

    @Test("A missing secret key, or one others can read, is refused before any work")
    func secretKeyProblems() throws {
        let world = try CLIWorld()
        let source = try world.makeSource()
        let missing = try world.kindling(
            [
                "publish", "--store", world.store, "--secret-key", world.path("nope.key"), "--repo", "rust-lang/demo",
                "--commit", "c1", "--dir", source,
            ])
        expectCleanFailure(missing, mentioning: "does not exist")
        chmod(world.key, 0o644)
        let open = try world.kindling(
            [
                "publish", "--store", world.store, "--secret-key", world.key, "--repo", "rust-lang/demo", "--commit",
                "c1",
                "--dir", source,
            ])
        expectCleanFailure(open, mentioning: "chmod 600")
        #expect(!FileManager.default.fileExists(atPath: world.store + "/index.sqlite"))
    }

    @Test(
        "A destination on a full filesystem fails cleanly and leaves nothing behind",
        .enabled(if: namespacesAvailable, "needs unprivileged user+mount namespaces to mount a small tmpfs"))
    func fullDiskOnRestore() throws {
        let world = try CLIWorld()
        _ = try world.publish(try world.makeSource(bytes: 3_000_000))
        let mountPoint = world.path("small")
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        // In a private mount namespace: a 1 MiB tmpfs, a restore of 3 MB into it, then a listing of what is left.
        let script = """
            mount -t tmpfs -o size=1m tmpfs "$1" || exit 99
            "$2" restore --store "$3" --trust "$4" --repo rust-lang/demo --commit c1 --into "$1/out"
            status=$?
            echo "left:$(ls -A "$1" | tr '\\n' ' ')" >&2
            exit $status
            """
        let result = try CommandRunner.run(
            "/usr/bin/unshare",
            ["-Urm", "sh", "-c", script, "sh", mountPoint, CommandRunner.kindlingPath, world.store, world.trust])
        #expect(result.status != 0 && result.status != 99, "\(result)")
        #expect(result.stderr.contains("no space left on device"), "\(result)")
        #expect(result.stderr.contains("left:\n") || result.stderr.hasSuffix("left:\n"), "\(result)")
        #expect(try world.kindling(["verify", "--store", world.store]).status == 0)
    }

    @Test(
        "A store on a full filesystem fails the publish cleanly and stays consistent",
        .enabled(if: namespacesAvailable, "needs unprivileged user+mount namespaces to mount a small tmpfs"))
    func fullDiskOnPublish() throws {
        let world = try CLIWorld()
        let source = try world.makeSource(bytes: 4_000_000)
        let mountPoint = world.path("small")
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        let script = """
            mount -t tmpfs -o size=2m tmpfs "$1" || exit 99
            "$2" publish --store "$1/store" --secret-key "$3" --repo rust-lang/demo --commit c1 --dir "$4"
            status=$?
            "$2" verify --store "$1/store" >&2 || echo "verify failed" >&2
            exit $status
            """
        let result = try CommandRunner.run(
            "/usr/bin/unshare",
            ["-Urm", "sh", "-c", script, "sh", mountPoint, CommandRunner.kindlingPath, world.key, source])
        #expect(result.status != 0 && result.status != 99, "\(result)")
        #expect(result.stderr.contains("no space left on device"), "\(result)")
        #expect(result.stderr.contains("store is healthy") || result.stdout.contains("store is healthy"), "\(result)")
        #expect(!result.stderr.contains("verify failed"), "\(result)")
    }

    @Test("SIGKILL during publish and during restore leaves the store consistent and the destination as it was")
    func killedMidway() throws {
        let world = try CLIWorld()
        for index in 0..<6 {
            try Fixtures.write(
                Fixtures.bytes(count: 8_000_000, seed: UInt64(index)), to: world.path("big/file\(index)"))
        }
        for delay in [0.05, 0.2, 0.5] {
            let publish = try CommandRunner.startKindling(
                [
                    "publish", "--store", world.store, "--secret-key", world.key, "--repo", "rust-lang/demo",
                    "--commit", "k", "--dir", world.path("big"),
                ])
            Thread.sleep(forTimeInterval: delay)
            kill(publish.processIdentifier, SIGKILL)
            publish.waitUntilExit()
            let verify = try world.kindling(["verify", "--store", world.store])
            // A kill before the index was created leaves no store at all, which verify says.
            let noStoreYet =
                !FileManager.default.fileExists(atPath: world.store + "/index.sqlite")
                && verify.stderr.contains("there is no store")
            #expect(verify.status == 0 || noStoreYet, "after kill at \(delay) s: \(verify)")
        }
        _ = try world.publish(world.path("big"), commit: "k")

        try Fixtures.write("previous", to: world.path("out/old.txt"))
        for delay in [0.02, 0.1, 0.3] {
            let restore = try CommandRunner.startKindling(
                [
                    "restore", "--store", world.store, "--trust", world.trust, "--repo", "rust-lang/demo", "--commit",
                    "k",
                    "--into", world.path("out"), "--replace",
                ])
            Thread.sleep(forTimeInterval: delay)
            kill(restore.processIdentifier, SIGKILL)
            restore.waitUntilExit()
            let contents = listing(world.path("out"))
            // Either untouched, or (if the kill came after the swap) fully restored.
            #expect(contents == ["old.txt"] || contents.count == 6, "after kill at \(delay) s: \(contents)")
            if contents.count == 6 { try Fixtures.write("previous", to: world.path("out/old.txt")) }
        }
        let final = try world.restore(into: world.path("out"), commit: "k", extra: ["--replace"])
        #expect(final.status == 0, "\(final)")
        #expect(listing(world.path(".")).filter { $0.contains("staging") }.isEmpty)
        for index in 0..<6 {
            #expect(Fixtures.read(world.path("out/file\(index)")) == Fixtures.read(world.path("big/file\(index)")))
        }
    }
}
