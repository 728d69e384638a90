import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingSnapshot
import KindlingSystem
import KindlingTesting
import Testing

@testable import KindlingStore

@Suite("Capture and restore")
struct SnapshotTests {
    /// A tree with everything a target dir can hold: nested dirs, modes, ns mtimes, empty and multi-chunk files,
    /// symlinks (relative, absolute, dangling).
    static func makeTree(at root: String) throws {
        try Fixtures.write(
            Fixtures.bytes(count: 3_000_000, seed: 1), to: root + "/deps/libbig.rlib", mtime: 1_767_225_600_123_456_789)
        try Fixtures.write(
            Array("fn main() {}\n".utf8), to: root + "/src/main.rs", mode: 0o600, mtime: 1_767_225_601_000_000_001)
        try Fixtures.write([], to: root + "/.fingerprint/empty", mtime: 1_767_225_602_999_999_999)
        try Fixtures.write("#!/bin/sh\n", to: root + "/build/script", mode: 0o755)
        try Fixtures.write("read only", to: root + "/ro/file", mode: 0o444)
        chmod(root + "/ro", 0o555)
        symlink("../deps/libbig.rlib", root + "/src/link")
        symlink("/nonexistent/target", root + "/dangling")
        try FileSystem.createDirectories(root + "/empty-dir")
    }

    static func assertSameTree(_ a: String, _ b: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let listA = try FileManager.default.subpathsOfDirectory(atPath: a).sorted()
        let listB = try FileManager.default.subpathsOfDirectory(atPath: b).sorted()
        #expect(listA == listB, sourceLocation: sourceLocation)
        for path in listA {
            let left = try #require(Fixtures.status(a + "/" + path))
            let right = try #require(Fixtures.status(b + "/" + path))
            #expect(left.mode == right.mode, "mode of \(path)", sourceLocation: sourceLocation)
            #expect(left.mtime == right.mtime, "mtime of \(path)", sourceLocation: sourceLocation)
            #expect(left.isLink == right.isLink, sourceLocation: sourceLocation)
            if left.isLink {
                let targetA = try FileManager.default.destinationOfSymbolicLink(atPath: a + "/" + path)
                let targetB = try FileManager.default.destinationOfSymbolicLink(atPath: b + "/" + path)
                #expect(targetA == targetB, sourceLocation: sourceLocation)
            } else if !FileSystem.isDirectory(a + "/" + path) {
                #expect(
                    Fixtures.read(a + "/" + path) == Fixtures.read(b + "/" + path), "content of \(path)",
                    sourceLocation: sourceLocation)
            }
        }
    }

    func publish(_ directory: String, store: ChunkStore, key: SigningKey = Fixtures.key(1)) throws -> Manifest {
        try Publisher(store: store, key: key).publish(
            PublishRequest(repository: "r/x", commit: "c1", directory: directory)
        ).manifest
    }

    @Test("Restore reproduces the tree exactly: bytes, modes, nanosecond mtimes, symlinks")
    func roundTrip() throws {
        let work = TemporaryDirectory("snap")
        try Self.makeTree(at: work.file("source"))
        let store = try ChunkStore(root: work.file("store"))
        let manifest = try publish(work.file("source"), store: store)
        #expect(manifest.body.entries.contains { $0.path == "dangling" && $0.kind == .symlink })

        let summary = try TreeRestore().restore(manifest, from: store, into: work.file("out"), replace: false)
        #expect(summary.files == 5)
        try Self.assertSameTree(work.file("source"), work.file("out"))
        // Nothing but the result is left beside the destination.
        #expect(try FileManager.default.contentsOfDirectory(atPath: work.path).sorted() == ["out", "source", "store"])
        chmod(work.file("source/ro"), 0o755)
        chmod(work.file("out/ro"), 0o755)
    }

    @Test("Capturing the same tree twice adds nothing to the store")
    func dedup() throws {
        let work = TemporaryDirectory("snap")
        try Self.makeTree(at: work.file("source"))
        let store = try ChunkStore(root: work.file("store"))
        let first = try Publisher(store: store, key: Fixtures.key(1)).publish(
            PublishRequest(repository: "r/x", commit: "c1", directory: work.file("source")))
        let second = try Publisher(store: store, key: Fixtures.key(1)).publish(
            PublishRequest(repository: "r/x", commit: "c2", directory: work.file("source")))
        #expect(first.summary.newChunks > 0)
        #expect(second.summary.newChunks == 0)
        #expect(second.summary.newBytes == 0)
        chmod(work.file("source/ro"), 0o755)
    }

    @Test("A non-empty destination is refused without replace, and replaced atomically with it")
    func replaceSemantics() throws {
        let work = TemporaryDirectory("snap")
        try Self.makeTree(at: work.file("source"))
        let store = try ChunkStore(root: work.file("store"))
        let manifest = try publish(work.file("source"), store: store)
        try Fixtures.write("local work", to: work.file("out/mine.txt"))

        #expect(throws: SnapshotError.self) {
            try TreeRestore().restore(manifest, from: store, into: work.file("out"), replace: false)
        }
        #expect(Fixtures.read(work.file("out/mine.txt")) == Array("local work".utf8))

        let summary = try TreeRestore().restore(manifest, from: store, into: work.file("out"), replace: true)
        #expect(summary.replaced)
        #expect(!FileManager.default.fileExists(atPath: work.file("out/mine.txt")))
        try Self.assertSameTree(work.file("source"), work.file("out"))
        // An existing empty directory is fine without replace.
        try FileSystem.createDirectories(work.file("empty-target"))
        _ = try TreeRestore().restore(manifest, from: store, into: work.file("empty-target"), replace: false)
        for path in ["source/ro", "out/ro", "empty-target/ro"] { chmod(work.file(path), 0o755) }
    }

    @Test("A corrupt chunk aborts the restore; the destination and its parent are left as they were")
    func corruptChunkAbortsRestore() throws {
        let work = TemporaryDirectory("snap")
        try Self.makeTree(at: work.file("source"))
        let store = try ChunkStore(root: work.file("store"))
        let manifest = try publish(work.file("source"), store: store)
        let victim = try #require(manifest.body.entries.first { $0.path == "deps/libbig.rlib" }?.chunks.last?.id)
        var bytes = try #require(Fixtures.read(store.chunkPath(victim)))
        bytes[bytes.count / 2] ^= 0xff
        try Data(bytes).write(to: URL(fileURLWithPath: store.chunkPath(victim)))

        try Fixtures.write("previous", to: work.file("out/old.txt"))
        #expect(throws: SnapshotError.self) {
            try TreeRestore().restore(manifest, from: store, into: work.file("out"), replace: true)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: work.file("out")) == ["old.txt"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: work.path).sorted() == ["out", "source", "store"])
        #expect(throws: SnapshotError.self) {
            try TreeRestore().restore(manifest, from: store, into: work.file("fresh"), replace: false)
        }
        #expect(!FileManager.default.fileExists(atPath: work.file("fresh")))
        chmod(work.file("source/ro"), 0o755)
    }

    @Test("A restore with missing chunks fails before writing anything")
    func missingChunks() throws {
        let work = TemporaryDirectory("snap")
        try Self.makeTree(at: work.file("source"))
        let store = try ChunkStore(root: work.file("store"))
        let manifest = try publish(work.file("source"), store: store)
        let victim = try #require(
            manifest.body.entries.first { $0.kind == .file && !$0.chunks.isEmpty }?.chunks.first?.id)
        try store.index.deleteChunks([victim])
        #expect(throws: SnapshotError.self) {
            try TreeRestore().restore(manifest, from: store, into: work.file("out"), replace: false)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: work.path).sorted() == ["source", "store"])
        chmod(work.file("source/ro"), 0o755)
    }

    @Test("Staging left by a killed restore is removed by the next one")
    func abandonedStaging() throws {
        let work = TemporaryDirectory("snap")
        try Fixtures.write("x", to: work.file("source/a"))
        let store = try ChunkStore(root: work.file("store"))
        let manifest = try publish(work.file("source"), store: store)
        // pid 2^22 + 1 is above Linux's pid_max default, so it belongs to no process.
        try Fixtures.write("half", to: work.file(".out.kindling-staging-4194305-abc/partial"))
        _ = try TreeRestore().restore(manifest, from: store, into: work.file("out"), replace: false)
        #expect(try FileManager.default.contentsOfDirectory(atPath: work.path).sorted() == ["out", "source", "store"])
    }

    @Test("A file that changes during capture is reported, not captured inconsistently")
    func changedDuringCapture() throws {
        let work = TemporaryDirectory("snap")
        try Fixtures.write(Fixtures.bytes(count: 64 << 20, seed: 9), to: work.file("source/big"))
        let store = try ChunkStore(root: work.file("store"))
        let capture = TreeCapture(workers: 1) { path, _ in
            // Rewrite the file as soon as the walker has listed it, before it is read.
            if path == "big" {
                try? Fixtures.write(Fixtures.bytes(count: 1000, seed: 10), to: work.file("source/big"), mtime: 12345)
            }
            return true
        }
        #expect(throws: SnapshotError.self) { _ = try capture.capture(directory: work.file("source"), into: store) }
    }
}
