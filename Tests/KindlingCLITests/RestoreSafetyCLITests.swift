import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingStore
import KindlingSystem
import KindlingTesting
import Testing

/// Issue 10, section 5, through the real `kindling` binary: hostile paths, Unicode spellings, modes, the store.
@Suite("CLI: restore safety", .serialized)
struct RestoreSafetyCLITests {
    static let nfc = "\u{E9}"
    static let nfd = "e\u{301}"

    /// Signs `entries` with the world's key as they are, without the checks `Manifest.sign` makes (a publisher
    /// with a patched binary, or a bug), and writes the manifest file.
    func writeSignedManifest(_ entries: [ManifestEntry], world: CLIWorld, to path: String) throws {
        let key = try SecretKeyFile.load(path: world.key)
        let body = ManifestBody(entries: entries)
        let bytes = body.encoded()
        let header = ManifestHeader(
            repository: try RepositoryName("rust-lang/demo"), commit: "c1", createdAt: Date().nanosecondsSinceEpoch,
            publisher: key.publicKey, cacheKey: [:], bodyDigest: Blake2b.hash(bytes), bodyByteCount: bytes.count,
            entryCount: entries.count, fileByteCount: body.fileByteCount, chunkReferenceCount: body.chunkReferenceCount)
        let signed = SignedHeader(signing: header, with: key)
        var file = CanonicalWriter()
        file.writeRaw(ManifestFile.magic)
        file.writeVarint(1)
        file.writeBytes(signed.headerBytes)
        file.writeRaw(signed.signature.bytes)
        file.writeBytes(bytes)
        try Data(file.bytes).write(to: URL(fileURLWithPath: path))
    }

    func restoreManifest(_ world: CLIWorld, _ file: String, into: String) throws -> CommandResult {
        try world.kindling(
            ["restore", "--store", world.store, "--trust", world.trust, "--manifest", file, "--into", into])
    }

    @Test("The signed Unicode-normalization attack is refused and creates nothing outside the destination")
    func normalizationAttack() throws {
        let world = try CLIWorld()
        let outside = world.path("outside")
        try FileSystem.createDirectories(outside)
        let entries: [ManifestEntry] = [
            .symlink(path: Self.nfd, target: outside, modificationTime: 0),
            .directory(path: Self.nfc, mode: 0o755, modificationTime: 0),
            .symlink(path: Self.nfd + "/d/pwn", target: "/etc/passwd", modificationTime: 0),
        ]
        try writeSignedManifest(entries, world: world, to: world.path("attack.kdf"))
        let result = try restoreManifest(world, world.path("attack.kdf"), into: world.path("out"))
        expectCleanFailure(result, mentioning: "unsafe path")
        #expect(listing(outside).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: world.path("out")))
    }

    @Test("Names that differ only in Unicode normalization survive publish and restore byte for byte")
    func normalizationRoundTrip() throws {
        let world = try CLIWorld()
        let source = world.path("source")
        try FileSystem.createDirectories(source)
        for (index, name) in [Self.nfc, Self.nfd].enumerated() {
            try Fixtures.write("file \(index)", to: source + "/f" + name)
            try Fixtures.write("inner \(index)", to: source + "/d" + name + "/inner")
        }
        try Fixtures.write("a file", to: source + "/o" + Self.nfc)
        try Fixtures.write("below a directory", to: source + "/o" + Self.nfd + "/x")
        _ = try world.publish(source)
        let result = try world.restore(into: world.path("out"))
        #expect(result.status == 0, "\(result)")
        #expect(rawListing(world.path("out")) == rawListing(source))
        #expect(rawListing(source).count == 9)
    }

    @Test("Restored modes lose the umask's bits, as tar's; --same-permissions keeps them exactly")
    func umask() throws {
        let world = try CLIWorld()
        let source = world.path("source")
        try Fixtures.write("all", to: source + "/open/all", mode: 0o777)
        try Fixtures.write("rw", to: source + "/open/rw", mode: 0o666)
        try Fixtures.write("#!/bin/sh\n", to: source + "/open/exe", mode: 0o755)
        #expect(chmod(source + "/open", 0o777) == 0)
        _ = try world.publish(source)
        let cases: [(String, [String], [UInt32])] = [
            ("022", [], [0o755, 0o755, 0o644, 0o755]),
            ("077", [], [0o700, 0o700, 0o600, 0o700]),
            ("022", ["--same-permissions"], [0o777, 0o777, 0o666, 0o755]),
        ]
        for (index, (mask, extra, expected)) in cases.enumerated() {
            let into = world.path("out\(index)")
            let arguments =
                [
                    "restore", "--store", world.store, "--trust", world.trust, "--repo", "rust-lang/demo",
                    "--commit", "c1", "--into", into,
                ] + extra
            let result = try CommandRunner.run(
                "/bin/sh", ["-c", "umask \(mask) && exec \"$0\" \"$@\"", CommandRunner.kindlingPath] + arguments)
            #expect(result.status == 0, "\(result)")
            let modes = ["open", "open/all", "open/rw", "open/exe"].map { Fixtures.status(into + "/" + $0)?.mode ?? 0 }
            #expect(modes == expected, "umask \(mask) \(extra)")
        }
    }

    @Test("restore --into the store, an ancestor of it or a folder in it is refused; the store survives")
    func intoTheStore() throws {
        let world = try CLIWorld()
        _ = try world.publish(try world.makeSource())
        #expect(symlink(world.path("."), world.path("alias")) == 0)
        let places = [
            world.path(""), world.store, world.store + "/inside", world.path("alias"), world.path("alias/store"),
        ]
        for into in places {
            for extra in [[], ["--replace"]] {
                let result = try world.restore(into: into, extra: extra)
                expectCleanFailure(result, mentioning: "store")
            }
        }
        let verify = try world.kindling(["verify", "--store", world.store])
        #expect(verify.status == 0, "\(verify)")
        let fine = try world.restore(into: world.path("out"))
        #expect(fine.status == 0, "\(fine)")
    }

    @Test("Modification times no clock holds are refused at decoding, never a crash")
    func timestampEdges() throws {
        let world = try CLIWorld()
        for (index, time) in [UInt64.max, UInt64(Int64.max) + 1].enumerated() {
            let file = world.path("time\(index).kdf")
            let entry = ManifestEntry.directory(path: "d", mode: 0o755, modificationTime: time)
            try writeSignedManifest([entry], world: world, to: file)
            let result = try restoreManifest(world, file, into: world.path("out"))
            expectCleanFailure(result, mentioning: "modification time")
            #expect(!FileManager.default.fileExists(atPath: world.path("out")))
        }
    }
}

/// Every path below `root` as bytes (hex), with its kind, content and mode: a comparison Unicode cannot blur.
func rawListing(_ root: String) -> [String: String] {
    var result: [String: String] = [:]
    func walk(_ directory: DirectoryDescriptor, prefix: [UInt8]) {
        for name in (try? directory.names()) ?? [] {
            let path = prefix.isEmpty ? name : prefix + [UInt8(ascii: "/")] + name
            let key = path.map { String(format: "%02x", $0) }.joined()
            var info = stat()
            guard fstatat(directory.descriptor, cPath(name), &info, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            let mode = String(info.st_mode & 0o7777, radix: 8)
            if info.st_mode & S_IFMT == S_IFDIR {
                result[key] = "dir " + mode
                if let child = try? directory.openDirectory(bytes: name) { walk(child, prefix: path) }
            } else {
                let fd = openat(directory.descriptor, cPath(name), O_RDONLY | O_NOFOLLOW)
                let content = (try? PosixFile(descriptor: fd, path: "").readAll(limit: 1 << 20)) ?? []
                result[key] = "file " + mode + " " + String(decoding: content, as: UTF8.self)
            }
        }
    }
    if let top = try? DirectoryDescriptor(opening: root) { walk(top, prefix: []) }
    return result
}
