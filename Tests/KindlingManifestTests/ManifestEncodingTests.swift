import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingTesting
import Testing

@Suite("Manifest encoding")
struct ManifestEncodingTests {
    static func sampleBody() -> ManifestBody {
        let chunk = ChunkReference(id: Blake2b.hash(Array("hello".utf8)), length: 5)
        return ManifestBody(
            entries: [
                .directory(path: "src", mode: 0o755, modificationTime: 1_700_000_000_123_456_789),
                .file(path: "src/a.txt", mode: 0o644, modificationTime: 1_700_000_001_000_000_001, chunks: [chunk]),
                .file(path: "empty", mode: 0o600, modificationTime: 0, chunks: []),
                .symlink(path: "link", target: "src/a.txt", modificationTime: 5),
            ],
            extra: ["cargo.sources": [1, 2, 3], "note": []])
    }

    static func sampleManifest(
        key: SigningKey = Fixtures.key(7), repository: String = "rust-lang/demo"
    ) throws -> Manifest {
        try Manifest.sign(
            repository: repository, commit: "abc123", createdAt: 1_767_225_600_000_000_000,
            cacheKey: ["profile": "debug", "target": "x86_64-unknown-linux-gnu"], body: sampleBody(), with: key)
    }

    @Test("A manifest survives encoding and decoding unchanged")
    func roundTrip() throws {
        let manifest = try Self.sampleManifest()
        let decoded = try ManifestFile.decode(ManifestFile.encode(manifest))
        #expect(decoded == manifest)
        #expect(decoded.body.entries.map(\.path) == ["empty", "link", "src", "src/a.txt"])
        #expect(decoded.header.fileByteCount == 5)
        #expect(decoded.header.chunkReferenceCount == 1)
        #expect(decoded.signed.hasValidSignature)
        #expect(decoded.id == Blake2b.hash(manifest.signed.headerBytes))
    }

    @Test("Encoding is canonical: map and entry order do not change the bytes")
    func canonicalOrder() throws {
        let body = Self.sampleBody()
        let shuffled = ManifestBody(entries: body.entries.reversed(), extra: body.extra)
        #expect(shuffled.encoded() == body.encoded())
    }

    @Test("Two map keys that differ in bytes but are the same Unicode text are rejected, not merged")
    func canonicallyEquivalentKeys() throws {
        var writer = CanonicalWriter()
        writer.writeVarint(0)  // no entries
        writer.writeVarint(2)
        // "e" + combining acute (65 CC 81) sorts before the precomposed "é" (C3 A9); Swift calls them equal.
        writer.writeString("e\u{301}")
        writer.writeBytes([1])
        writer.writeString("\u{E9}")
        writer.writeBytes([2])
        #expect(throws: FormatError.self) { try ManifestBody(decoding: writer.bytes) }
    }

    @Test("A symlink with a mode other than 0o777 is rejected (one encoding per tree)")
    func symlinkMode() throws {
        func body(linkMode: UInt64) -> [UInt8] {
            var writer = CanonicalWriter()
            writer.writeVarint(1)
            writer.writeString("link")
            writer.writeByte(2)
            writer.writeVarint(linkMode)
            writer.writeVarint(5)
            writer.writeString("target")
            writer.writeVarint(0)
            return writer.bytes
        }
        #expect(throws: FormatError.self) { try ManifestBody(decoding: body(linkMode: 0o755)) }
        #expect(try ManifestBody(decoding: body(linkMode: 0o777)).entries.first?.mode == 0o777)
    }

    @Test("Every truncation of a manifest file is rejected with an error, never a crash")
    func truncations() throws {
        let bytes = ManifestFile.encode(try Self.sampleManifest())
        for length in 0..<bytes.count {
            #expect(throws: FormatError.self) { try ManifestFile.decode(Array(bytes[0..<length])) }
        }
        #expect(throws: FormatError.self) { try ManifestFile.decode(bytes + [0]) }
    }

    @Test("Single-byte corruption never yields a different valid manifest with a valid signature")
    func corruption() throws {
        let manifest = try Self.sampleManifest()
        let bytes = ManifestFile.encode(manifest)
        let policy = TrustPolicy(trust: Fixtures.trust([("k", Fixtures.key(7))]))
        for index in stride(from: 0, to: bytes.count, by: 1) {
            var corrupted = bytes
            corrupted[index] ^= 0x40
            guard let decoded = try? ManifestFile.decode(corrupted) else { continue }
            // If it still decodes, the signature (over the header, which commits to the body) must fail.
            #expect(throws: TrustError.self, "byte \(index)") { try policy.evaluate(decoded.signed) }
        }
    }

    @Test("Non-minimal integers, unsorted keys and unknown kinds are rejected")
    func nonCanonicalInputs() throws {
        // A varint with a redundant continuation byte.
        var reader = CanonicalReader([0x85, 0x00])
        #expect(throws: FormatError.self) { _ = try reader.readVarint("x") }
        var overflow = CanonicalReader([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02])
        #expect(throws: FormatError.self) { _ = try overflow.readVarint("x") }

        var writer = CanonicalWriter()
        writer.writeVarint(2)
        for path in ["b", "a"] {  // out of order
            writer.writeString(path)
            writer.writeByte(EntryKind.directory.rawValue)
            writer.writeVarint(0o755)
            writer.writeVarint(0)
        }
        writer.writeVarint(0)
        #expect(throws: FormatError.self) { try ManifestBody(decoding: writer.bytes) }

        var unknownKind = CanonicalWriter()
        unknownKind.writeVarint(1)
        unknownKind.writeString("a")
        unknownKind.writeByte(9)
        unknownKind.writeVarint(0)
        unknownKind.writeVarint(0)
        unknownKind.writeVarint(0)
        #expect(throws: FormatError.self) { try ManifestBody(decoding: unknownKind.bytes) }
    }

    @Test(
        "Unsafe paths are rejected",
        arguments: ["/etc/passwd", "../x", "a/../../x", "a/./b", "a//b", "a/", "", "a\u{0}b", "..", "."])
    func unsafePaths(path: String) {
        #expect(throws: FormatError.self) { try RelativePath.validate(path) }
        var writer = CanonicalWriter()
        writer.writeVarint(1)
        writer.writeString(path)
        writer.writeByte(EntryKind.file.rawValue)
        writer.writeVarint(0o644)
        writer.writeVarint(0)
        writer.writeVarint(0)
        writer.writeVarint(0)
        #expect(throws: FormatError.self) { try ManifestBody(decoding: writer.bytes) }
    }

    @Test("Entries below a symlink or a file of the same manifest are rejected (no escape through links)")
    func noEntriesBelowLinks() {
        let throughLink = ManifestBody(entries: [
            .symlink(path: "out", target: "/etc", modificationTime: 0),
            .file(path: "out/passwd", mode: 0o644, modificationTime: 0, chunks: []),
        ])
        #expect(throws: FormatError.self) { try throughLink.validate() }
        #expect(throws: FormatError.self) { try ManifestBody(decoding: throughLink.encoded()) }
        let belowFile = ManifestBody(entries: [
            .file(path: "a", mode: 0o644, modificationTime: 0, chunks: []),
            .file(path: "a/b", mode: 0o644, modificationTime: 0, chunks: []),
        ])
        #expect(throws: FormatError.self) { try belowFile.validate() }
    }

    @Test("A body that does not match the signed header is rejected")
    func bodyMismatch() throws {
        let manifest = try Self.sampleManifest()
        var other = Self.sampleBody()
        other.extra["note"] = [9]
        #expect(throws: FormatError.self) { try Manifest(signed: manifest.signed, bodyBytes: other.encoded()) }
    }

    @Test("Oversized counts are refused before allocation")
    func hostileCounts() {
        var writer = CanonicalWriter()
        writer.writeVarint(UInt64(1) << 40)  // claims a trillion entries in a few bytes
        #expect(throws: FormatError.self) { try ManifestBody(decoding: writer.bytes) }
        var header = CanonicalWriter()
        header.writeRaw(ManifestHeader.magic)
        header.writeVarint(1)
        header.writeVarint(UInt64(1) << 50)  // repository length
        #expect(throws: FormatError.self) { try ManifestHeader(decoding: header.bytes) }
    }

    @Test("Invalid repository and commit names are refused when signing")
    func names() {
        for repository in ["", "/abs", "a b", "a//b", "x/", ".", "..", "a/..", "../b", "a/./b", "a\u{1B}[31m", "a\nb"] {
            #expect(throws: FormatError.self) { try Self.sampleManifest(repository: repository) }
        }
    }
}
