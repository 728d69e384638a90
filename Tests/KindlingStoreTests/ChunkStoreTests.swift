import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingTesting
import Testing

@testable import KindlingStore

@Suite("Chunk store")
struct ChunkStoreTests {
    func put(_ bytes: [UInt8], in store: ChunkStore) throws -> Digest {
        let id = Blake2b.hash(bytes)
        try bytes.withUnsafeBytes { _ = try store.storeChunk($0, id: id, compressor: ZstdCompressor()) }
        return id
    }

    @Test("Committed chunks survive reopening and read back verified")
    func writeCommitReopen() throws {
        let directory = TemporaryDirectory("store")
        let data = Fixtures.bytes(count: 100_000, seed: 1)
        let id: Digest
        do {
            let store = try ChunkStore(root: directory.path)
            id = try put(data, in: store)
            #expect(try store.contains(id))
            try store.commit()
        }
        let reopened = try ChunkStore(root: directory.path)
        #expect(try reopened.readChunk(id, expectedSize: data.count, decompressor: ZstdDecompressor()) == data)
        #expect(try reopened.statistics().chunkCount == 1)
    }

    @Test("A chunk written but never committed (a killed writer) is not indexed, and gc sweeps its file")
    func uncommittedChunksAreNotIndexed() throws {
        let directory = TemporaryDirectory("store")
        let id: Digest
        do {
            let store = try ChunkStore(root: directory.path)
            id = try put(Fixtures.bytes(count: 5000, seed: 2), in: store)
            // No commit: the process "dies" here.
        }
        let reopened = try ChunkStore(root: directory.path)
        #expect(try !reopened.contains(id))
        #expect(FileManager.default.fileExists(atPath: reopened.chunkPath(id)))
        let report = try reopened.collectGarbage(maxStoredBytes: nil, graceSeconds: -1)
        #expect(report.orphanFilesRemoved == 1)
        #expect(!FileManager.default.fileExists(atPath: reopened.chunkPath(id)))
        #expect(try reopened.verify(repair: false).isHealthy)
    }

    @Test("Corrupt and missing chunk files are detected on read and by verify, and repaired")
    func corruptionDetected() throws {
        let directory = TemporaryDirectory("store")
        let store = try ChunkStore(root: directory.path)
        let good = try put(Fixtures.bytes(count: 70_000, seed: 3), in: store)
        let flipped = try put(Fixtures.bytes(count: 70_000, seed: 4), in: store)
        let gone = try put(Fixtures.bytes(count: 70_000, seed: 5), in: store)
        try store.commit()

        // Replace one chunk file with a valid zstd frame of other content, delete another.
        let other = Fixtures.bytes(count: 70_000, seed: 99)
        let otherCompressed = other.withUnsafeBytes { ZstdCompressor().compress($0) }
        try Data(otherCompressed).write(to: URL(fileURLWithPath: store.chunkPath(flipped)))
        unlink(store.chunkPath(gone))

        let decompressor = ZstdDecompressor()
        #expect(throws: StoreError.self) { try store.readChunk(flipped, decompressor: decompressor) }
        #expect(throws: StoreError.missingChunk(gone)) { try store.readChunk(gone, decompressor: decompressor) }
        #expect(try store.readChunk(good, decompressor: decompressor).count == 70_000)

        let report = try store.verify(repair: true)
        #expect(report.corruptChunks == [flipped.hex])
        #expect(report.missingChunks == [gone.hex])
        #expect(report.repaired)
        #expect(try store.verify(repair: false).isHealthy)
        #expect(try !store.contains(flipped))
    }

    @Test("Garbage and truncated chunk files are corrupt, not crashes")
    func garbageChunkFiles() throws {
        let directory = TemporaryDirectory("store")
        let store = try ChunkStore(root: directory.path)
        let data = Fixtures.bytes(count: 200_000, seed: 6)
        let id = try put(data, in: store)
        try store.commit()
        let path = store.chunkPath(id)
        let original = try #require(Fixtures.read(path))
        for replacement in [[], [1, 2, 3], Array(original.prefix(original.count / 2)), Array(original.dropLast())] {
            try Data(replacement).write(to: URL(fileURLWithPath: path))
            #expect(throws: StoreError.self) {
                try store.readChunk(id, expectedSize: data.count, decompressor: ZstdDecompressor())
            }
        }
    }

    @Test("Decompression is bounded: a frame that inflates past the chunk limit is rejected")
    func decompressionBomb() throws {
        let zeros = [UInt8](repeating: 0, count: ManifestLimits.maxChunkBytes * 4)
        let bomb = zeros.withUnsafeBytes { ZstdCompressor().compress($0) }
        #expect(bomb.count < 1000)
        let id = Blake2b.hash(zeros)
        #expect(throws: StoreError.chunkTooLarge(id, size: zeros.count)) {
            try bomb.withUnsafeBytes {
                try ZstdDecompressor().decompress($0, expectedSize: nil, limit: ManifestLimits.maxChunkBytes, id: id)
            }
        }
        let directory = TemporaryDirectory("store")
        let store = try ChunkStore(root: directory.path)
        #expect(throws: StoreError.self) {
            try store.storeCompressedChunk(bomb, id: id, expectedSize: zeros.count, decompressor: ZstdDecompressor())
        }
    }

    @Test("A chunk received from a peer is stored only if it matches its id")
    func verifiedReceive() throws {
        let directory = TemporaryDirectory("store")
        let store = try ChunkStore(root: directory.path)
        let data = Fixtures.bytes(count: 10_000, seed: 7)
        let compressed = data.withUnsafeBytes { ZstdCompressor().compress($0) }
        let wrongID = Blake2b.hash(Fixtures.bytes(count: 10_000, seed: 8))
        #expect(throws: StoreError.self) {
            try store.storeCompressedChunk(
                compressed, id: wrongID, expectedSize: data.count, decompressor: ZstdDecompressor())
        }
        #expect(try !store.contains(wrongID))
        let rightID = Blake2b.hash(data)
        #expect(
            try store.storeCompressedChunk(
                compressed, id: rightID, expectedSize: data.count, decompressor: ZstdDecompressor()))
        try store.commit()
        #expect(try store.readChunk(rightID, decompressor: ZstdDecompressor()) == data)
    }

    @Test("gc evicts least recently used chunks down to the cap and never a pinned manifest's")
    func lruEvictionWithPins() throws {
        let directory = TemporaryDirectory("store")
        let store = try ChunkStore(root: directory.path)
        let key = Fixtures.key(1)
        let policy = TrustPolicy.trustingOwnKey(key)
        var manifests: [Manifest] = []
        for index in 0..<3 {
            let data = Fixtures.bytes(count: 100_000, seed: UInt64(10 + index))
            let id = try put(data, in: store)
            let manifest = try Manifest.sign(
                repository: "r", commit: "c\(index)", createdAt: UInt64(index), cacheKey: [:],
                body: ManifestBody(entries: [
                    .file(
                        path: "f", mode: 0o644, modificationTime: 0,
                        chunks: [ChunkReference(id: id, length: data.count)])
                ]), with: key)
            try store.saveManifest(try policy.verify(manifest))
            manifests.append(manifest)
        }
        try store.commit()
        // Make chunk 0 the oldest by use, chunk 1 the newest; pin manifest 0.
        try store.index.touchChunks([manifests[0].body.entries[0].chunks[0].id], now: 1)
        try store.index.touchChunks([manifests[2].body.entries[0].chunks[0].id], now: 2)
        try store.index.touchChunks([manifests[1].body.entries[0].chunks[0].id], now: 3)
        try store.pin(manifests[0].id, reason: "test")

        let report = try store.collectGarbage(maxStoredBytes: 250_000)
        // About 300 KB stored. Chunk 0 is the oldest but pinned; chunk 2 is the next oldest and goes, which is enough.
        #expect(report.evictedChunks == 1)
        #expect(try store.missingChunks(of: manifests[0]).isEmpty)
        #expect(try store.missingChunks(of: manifests[1]).isEmpty)
        #expect(try store.missingChunks(of: manifests[2]).count == 1)
        #expect(try store.verify(repair: false).isHealthy)

        let tight = try store.collectGarbage(maxStoredBytes: 1)
        #expect(tight.pinnedExceedCap)
        #expect(try store.missingChunks(of: manifests[0]).isEmpty)
        #expect(try store.missingChunks(of: manifests[1]).count == 1)
    }

    @Test("gc never runs under a lease (a publish or restore in progress) and spares snapshots being fetched")
    func leasesAndWantedSnapshots() throws {
        let directory = TemporaryDirectory("store")
        let store = try ChunkStore(root: directory.path)
        let key = Fixtures.key(1)
        var manifests: [Manifest] = []
        for index in 0..<2 {
            let data = Fixtures.bytes(count: 100_000, seed: UInt64(20 + index))
            let id = try put(data, in: store)
            let manifest = try Manifest.sign(
                repository: "r", commit: "c\(index)", createdAt: UInt64(index), cacheKey: [:],
                body: ManifestBody(entries: [
                    .file(
                        path: "f", mode: 0o644, modificationTime: 0,
                        chunks: [ChunkReference(id: id, length: data.count)])
                ]), with: key)
            try store.saveManifest(try TrustPolicy.trustingOwnKey(key).verify(manifest))
            manifests.append(manifest)
        }
        try store.commit()

        // A second opening of the store stands for another process: flock locks belong to open files.
        var lease: StoreLease? = try ChunkStore(root: directory.path).lease()
        let skipped = try store.collectGarbage(maxStoredBytes: 0, waitForLeases: false)
        #expect(skipped.skippedWhileLeased)
        #expect(skipped.evictedChunks == 0)
        #expect(try store.missingChunks(of: manifests[0]).isEmpty)
        #expect(lease != nil)
        lease = nil

        try store.setWanted(manifests[1].id, wanted: true)
        let report = try store.collectGarbage(maxStoredBytes: 0, waitForLeases: false)
        #expect(!report.skippedWhileLeased)
        #expect(report.evictedChunks == 1)
        #expect(try store.missingChunks(of: manifests[0]).count == 1)
        #expect(try store.missingChunks(of: manifests[1]).isEmpty, "a snapshot being fetched keeps its chunks")
    }

    @Test("Manifests are stored only through the trust gate and read back intact")
    func manifestStorage() throws {
        let directory = TemporaryDirectory("store")
        let store = try ChunkStore(root: directory.path)
        let key = Fixtures.key(3)
        let manifest = try Manifest.sign(
            repository: "a/b", commit: "c", createdAt: 5, cacheKey: ["k": "v"], body: ManifestBody(entries: []),
            with: key)
        let trusted = try TrustPolicy.trustingOwnKey(key).verify(manifest)
        try store.saveHeader(trusted.header)
        #expect(try store.manifest(manifest.id) == nil)
        #expect(try store.signedHeader(manifest.id) == manifest.signed)
        try store.saveManifest(trusted)
        #expect(try store.manifest(manifest.id) == manifest)
        #expect(
            try store.manifestSummaries(repository: try RepositoryName("a/b"), commit: "c").map(\.id) == [manifest.id])
        #expect(try store.manifestSummaries(repository: try RepositoryName("a/b"), commit: "other").isEmpty)
    }
}

@Suite("Chunk store: several processes")
struct SharedStoreTests {
    @Test("A long-lived store handle sees what another handle (another process) commits later")
    func seesOtherWriters() throws {
        let directory = TemporaryDirectory("store")
        let reader = try ChunkStore(root: directory.path)
        let key = Fixtures.key(1)
        let first = try Manifest.sign(
            repository: "a/b", commit: "1", createdAt: 1, cacheKey: [:], body: ManifestBody(entries: []), with: key)
        let writer = try ChunkStore(root: directory.path)
        try writer.saveManifest(try TrustPolicy.trustingOwnKey(key).verify(first))
        // The reader looks once (this used to leave a read transaction open)...
        #expect(try reader.manifest(first.id) == first)
        let second = try Manifest.sign(
            repository: "a/b", commit: "2", createdAt: 2, cacheKey: [:], body: ManifestBody(entries: []), with: key)
        try writer.saveManifest(try TrustPolicy.trustingOwnKey(key).verify(second))
        // ...and must still see the next commit.
        #expect(try reader.manifest(second.id) == second)
        #expect(try reader.manifestSummaries(repository: try RepositoryName("a/b")).count == 2)
    }
}
