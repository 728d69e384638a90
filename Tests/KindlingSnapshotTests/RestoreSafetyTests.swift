import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingTesting
import Synchronization
import Testing

@testable import KindlingSnapshot
@testable import KindlingStore
@testable import KindlingSystem

/// Names that are the same text in Unicode but different bytes: the filesystem keeps them apart, and so must we.
enum Spelling {
    /// "é" precomposed (NFC, C3 A9) and decomposed (NFD, 65 CC 81).
    static let nfc = "\u{E9}"
    static let nfd = "e\u{301}"
}

/// Raw listing of a directory tree: every relative path as bytes, with its kind and (for files) its content.
func rawTree(_ root: String) -> [[UInt8]: String] {
    var result: [[UInt8]: String] = [:]
    func walk(_ directory: DirectoryDescriptor, prefix: [UInt8]) {
        for name in (try? directory.names()) ?? [] {
            let path = prefix.isEmpty ? name : prefix + [UInt8(ascii: "/")] + name
            var info = stat()
            guard fstatat(directory.descriptor, cPath(name), &info, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            let meta = " \(String(info.st_mode & 0o7777, radix: 8)) \(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)"
            switch info.st_mode & S_IFMT {
            case S_IFDIR:
                result[path] = "dir" + meta
                if let child = try? directory.openDirectory(bytes: name) { walk(child, prefix: path) }
            case S_IFLNK:
                var buffer = [CChar](repeating: 0, count: 4097)
                let count = readlinkat(directory.descriptor, cPath(name), &buffer, 4096)
                let target = buffer[0..<max(0, count)].map { UInt8(bitPattern: $0) }
                result[path] = "link:" + String(decoding: target, as: UTF8.self)
            default:
                let fd = openat(directory.descriptor, cPath(name), O_RDONLY | O_NOFOLLOW)
                let file = PosixFile(descriptor: fd, path: "")
                let bytes = (try? file.readAll(limit: 1 << 20)) ?? []
                result[path] = "file:" + bytes.map { String(format: "%02x", $0) }.joined() + meta
            }
        }
    }
    if let top = try? DirectoryDescriptor(opening: root) { walk(top, prefix: []) }
    return result
}

@Suite("Restore safety: bytes, links, modes, store, staging, timestamps")
struct RestoreSafetyTests {
    /// The reproduced attack: a symlink at NFD "é" to a folder outside, a directory at NFC "é", and a symlink at
    /// NFD "é/d/pwn". Keyed by String, the directory hid the symlink and the restore created d/pwn outside.
    static func attackEntries(outside: String) -> [ManifestEntry] {
        [
            .symlink(path: Spelling.nfd, target: outside, modificationTime: 0),
            .directory(path: Spelling.nfc, mode: 0o755, modificationTime: 0),
            .symlink(path: Spelling.nfd + "/d/pwn", target: "/etc/passwd", modificationTime: 0),
        ]
    }

    @Test("The normalization attack is refused by validation, encoded or in memory")
    func attackRefusedByValidation() throws {
        let body = ManifestBody(entries: Self.attackEntries(outside: "/tmp"))
        #expect(throws: FormatError.self) { try body.validate() }
        #expect(throws: FormatError.self) { try ManifestBody(decoding: body.encoded()) }
        #expect(throws: FormatError.self) {
            try Manifest.sign(
                repository: "r/x", commit: "c1", createdAt: 1, cacheKey: [:], body: body, with: Fixtures.key(1))
        }
    }

    @Test("Writing the attack's entries creates nothing outside the staging folder, openat2 or component walk")
    func attackContainedByDescriptors() throws {
        for walk in [false, true] {
            let work = TemporaryDirectory("safety")
            let outside = work.file("outside")
            try FileSystem.createDirectories(outside)
            try FileSystem.createDirectories(work.file("staging"))
            let store = try ChunkStore(root: work.file("store"))
            let staging = try DirectoryDescriptor(opening: work.file("staging"))
            // The walk is what runs where openat2 is missing (kernels before 5.6, seccomp): force it.
            DirectoryDescriptor.openat2Unavailable.store(walk, ordering: .relaxed)
            defer { DirectoryDescriptor.openat2Unavailable.store(false, ordering: .relaxed) }
            #expect(throws: SnapshotError.self) {
                try TreeRestore().write(
                    Self.attackEntries(outside: outside), from: store, into: staging, mask: 0, progress: nil)
            }
            #expect(listing(outside).isEmpty, "walk: \(walk)")
            // A file entry below a symlink (by bytes) is refused too, and its content never lands outside.
            let file = ManifestEntry.file(path: Spelling.nfd + "/f", mode: 0o644, modificationTime: 0, chunks: [])
            #expect(throws: SnapshotError.self) {
                try TreeRestore().write([file], from: store, into: staging, mask: 0, progress: nil)
            }
            #expect(listing(outside).isEmpty, "walk: \(walk)")
        }
    }

    @Test("A tree whose names differ only in Unicode normalization round-trips byte for byte")
    func normalizationRoundTrip() throws {
        let work = TemporaryDirectory("safety")
        let source = work.file("source")
        try FileSystem.createDirectories(source)
        // Files, directories and a link under both spellings, and a file and a directory sharing one text.
        for (index, name) in [Spelling.nfc, Spelling.nfd].enumerated() {
            try Fixtures.write("file \(index)", to: source + "/f" + name)
            try Fixtures.write("inner \(index)", to: source + "/d" + name + "/inner")
            #expect(symlink("f" + name, source + "/l" + name) == 0)
        }
        try Fixtures.write("a file", to: source + "/o" + Spelling.nfc)
        try Fixtures.write("below a directory", to: source + "/o" + Spelling.nfd + "/x")
        let before = rawTree(source)
        #expect(before.count == 11)
        let store = try ChunkStore(root: work.file("store"))
        let manifest = try Publisher(store: store, key: Fixtures.key(1))
            .publish(PublishRequest(repository: "r/x", commit: "c1", directory: source)).manifest
        #expect(manifest.body.entries.count == 11)
        _ = try TreeRestore().restore(manifest, from: store, into: work.file("out"), replace: false)
        #expect(rawTree(work.file("out")) == before)
    }

    @Test("Modes lose the umask's bits unless samePermissions keeps them exactly")
    func umaskApplies() throws {
        let work = TemporaryDirectory("safety")
        let store = try ChunkStore(root: work.file("store"))
        let entries: [ManifestEntry] = [
            .directory(path: "open", mode: 0o777, modificationTime: 0),
            .file(path: "open/all", mode: 0o777, modificationTime: 0, chunks: []),
            .file(path: "open/rw", mode: 0o666, modificationTime: 0, chunks: []),
            .file(path: "open/exe", mode: 0o755, modificationTime: 0, chunks: []),
        ]
        for (mask, expected) in [(mode_t(0o022), [0o755, 0o755, 0o644, 0o755]), (0, [0o777, 0o777, 0o666, 0o755])] {
            let staging = work.file("staging-\(mask)")
            try FileSystem.createDirectories(staging)
            _ = try TreeRestore().write(
                entries, from: store, into: try DirectoryDescriptor(opening: staging), mask: mask, progress: nil)
            let modes = ["open", "open/all", "open/rw", "open/exe"].map {
                Int(Fixtures.status(staging + "/" + $0)?.mode ?? 0)
            }
            #expect(modes == expected, "mask \(String(mask, radix: 8))")
        }
    }

    @Test("A restore into the store, an ancestor of it, or below it is refused, and the store survives")
    func storeOverlapRefused() throws {
        let work = TemporaryDirectory("safety")
        try Fixtures.write("x", to: work.file("source/a"))
        let store = try ChunkStore(root: work.file("home/store"))
        let manifest = try Publisher(store: store, key: Fixtures.key(1))
            .publish(PublishRequest(repository: "r/x", commit: "c1", directory: work.file("source"))).manifest
        #expect(symlink(work.file("home"), work.file("alias")) == 0)
        for into in ["home", "home/store", "home/store/sub/dir", "alias", "alias/store/chunks", "home/./store/"] {
            for replace in [false, true] {
                #expect(throws: SnapshotError.self, "\(into) replace: \(replace)") {
                    try TreeRestore().restore(manifest, from: store, into: work.file(into), replace: replace)
                }
            }
        }
        #expect(try store.missingChunks(of: manifest).isEmpty)
        #expect(!FileSystem.exists(work.file("home/store/sub")))
        // A sibling of the store is fine.
        _ = try TreeRestore().restore(manifest, from: store, into: work.file("home/out"), replace: false)
        #expect(Fixtures.read(work.file("home/out/a")) == Array("x".utf8))
    }

    @Test("Only staging folders this user's killed restores left are removed: no links, no other user's folders")
    func stagingCleanupLeavesPlantedFolders() throws {
        let work = TemporaryDirectory("safety")
        try Fixtures.write("x", to: work.file("source/a"))
        let store = try ChunkStore(root: work.file("store"))
        let manifest = try Publisher(store: store, key: Fixtures.key(1))
            .publish(PublishRequest(repository: "r/x", commit: "c1", directory: work.file("source"))).manifest
        let parent = work.file("parent")
        // No process has a pid above pid_max (at most 2^22).
        let dead = ".out.kindling-staging-4194305-"
        try Fixtures.write("ours", to: parent + "/" + dead + "abc/partial")
        try Fixtures.write("victim", to: work.file("victim/keep"))
        #expect(symlink(work.file("victim"), parent + "/" + dead + "def") == 0)
        try Fixtures.write("theirs", to: parent + "/" + dead + "123/file")
        try Fixtures.write("not our name", to: parent + "/" + dead + "xyz!/file")
        let someoneElse = geteuid() == 0
        if someoneElse {
            // Another user's folder under a name we would choose (only root can make one in a test).
            #expect(chown(parent + "/" + dead + "123", 65534, 65534) == 0)
            #expect(chown(parent + "/" + dead + "123/file", 65534, 65534) == 0)
        }
        _ = try TreeRestore().restore(manifest, from: store, into: parent + "/out", replace: false)
        var expected = [dead + "def", dead + "xyz!", "out"]
        if someoneElse { expected.append(dead + "123") }
        #expect(listing(parent) == expected.sorted())
        #expect(Fixtures.read(work.file("victim/keep")) == Array("victim".utf8))
        if someoneElse { #expect(Fixtures.read(parent + "/" + dead + "123/file") == Array("theirs".utf8)) }
    }

    @Test("Timestamps at the edges: capture clamps, decoding refuses what no clock holds, nothing traps")
    func timestampEdges() throws {
        #expect(ManifestLimits.modificationTime(seconds: -5, nanoseconds: 7) == 0)
        let limit = ManifestLimits.maxModificationTime
        #expect(ManifestLimits.modificationTime(seconds: Int.max, nanoseconds: 999_999_999) == limit)
        #expect(ManifestLimits.modificationTime(seconds: 20_000_000_000, nanoseconds: 0) == limit)
        #expect(ManifestLimits.modificationTime(seconds: 1, nanoseconds: 2) == 1_000_000_002)

        let work = TemporaryDirectory("safety")
        let source = work.file("source")
        // Before 1970 and after 2262 (ext4 holds dates up to 2446): both captured and restored without a trap.
        for (name, seconds) in [("old", -1_000_000_000), ("future", 14_000_000_000)] {
            try Fixtures.write(name, to: source + "/" + name)
            var times = [timespec(tv_sec: seconds, tv_nsec: 5), timespec(tv_sec: seconds, tv_nsec: 5)]
            #expect(utimensat(AT_FDCWD, source + "/" + name, &times, 0) == 0)
        }
        let store = try ChunkStore(root: work.file("store"))
        let manifest = try Publisher(store: store, key: Fixtures.key(1))
            .publish(PublishRequest(repository: "r/x", commit: "c1", directory: source)).manifest
        let times = Dictionary(uniqueKeysWithValues: manifest.body.entries.map { ($0.path, $0.modificationTime) })
        #expect(times["old"] == 0)
        let future = try #require(times["future"])
        // Clamped to the limit, or kept when this filesystem itself capped the date below it.
        #expect(future <= ManifestLimits.maxModificationTime && future > 9_000_000_000_000_000_000)
        _ = try TreeRestore().restore(manifest, from: store, into: work.file("out"), replace: false)
        #expect(Fixtures.status(work.file("out/old"))?.mtime == 0)

        for edge in [UInt64.max, ManifestLimits.maxModificationTime + 1] {
            let body = ManifestBody(entries: [.directory(path: "d", mode: 0o755, modificationTime: edge)])
            #expect(throws: FormatError.self) { try body.validate() }
            #expect(throws: FormatError.self) { try ManifestBody(decoding: body.encoded()) }
        }
        let atLimit = ManifestBody(
            entries: [.directory(path: "d", mode: 0o755, modificationTime: ManifestLimits.maxModificationTime)])
        #expect(try ManifestBody(decoding: atLimit.encoded()) == atLimit)
    }
}

private func listing(_ path: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
}
