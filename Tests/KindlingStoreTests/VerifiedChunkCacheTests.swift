import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingSystem
import KindlingTesting
import Testing

@testable import KindlingStore

@Suite("Chunk store: verified chunks kept for serving")
struct VerifiedChunkCacheTests {
    /// A chunk as a peer sends it: compressed, with its id.
    func received(seed: UInt64, count: Int = 70_000) -> (plain: [UInt8], compressed: [UInt8], id: Digest) {
        let plain = Fixtures.bytes(count: count, seed: seed)
        return (plain, plain.withUnsafeBytes { ZstdCompressor().compress($0) }, Blake2b.hash(plain))
    }

    /// Stores a received chunk as a download does; true when it was new.
    @discardableResult
    func receive(
        _ chunk: (plain: [UInt8], compressed: [UInt8], id: Digest), as id: Digest? = nil, size: Int? = nil,
        in store: ChunkStore, _ decompressor: ZstdDecompressor = ZstdDecompressor()
    ) throws -> Bool {
        try store.storeCompressedChunk(
            chunk.compressed, id: id ?? chunk.id, expectedSize: size ?? chunk.plain.count, decompressor: decompressor)
    }

    @Test("A chunk just received is served from memory: the bytes that were verified, without reading its file")
    func receivedChunkServedFromMemory() throws {
        let directory = TemporaryDirectory("store")
        let store = try ChunkStore(root: directory.path)
        let chunk = received(seed: 1)
        let decompressor = ZstdDecompressor()
        #expect(try receive(chunk, in: store, decompressor))
        try store.commit()
        // The file goes bad on disk after it was verified: what is served is still the verified bytes.
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: store.chunkPath(chunk.id)))
        let cached = try #require(store.cachedVerifiedChunk(chunk.id))
        #expect(cached.compressed == chunk.compressed && cached.plainSize == chunk.plain.count)
        let served = try store.readVerifiedCompressedChunk(chunk.id, decompressor: decompressor)
        #expect(served.compressed == chunk.compressed && served.plainSize == chunk.plain.count)
    }

    @Test("Without the cache (or once it forgot a chunk) a serve re-hashes the file, and refuses a bad one")
    func uncachedServeReverifies() throws {
        let directory = TemporaryDirectory("store")
        let store = try ChunkStore(root: directory.path, verifiedCacheBytes: 0)
        let chunk = received(seed: 2)
        let decompressor = ZstdDecompressor()
        try receive(chunk, in: store, decompressor)
        try store.commit()
        #expect(store.cachedVerifiedChunk(chunk.id) == nil)
        let served = try store.readVerifiedCompressedChunk(chunk.id, decompressor: decompressor)
        #expect(served.compressed == chunk.compressed)
        let other = received(seed: 3)
        try Data(other.compressed).write(to: URL(fileURLWithPath: store.chunkPath(chunk.id)))
        #expect(throws: StoreError.corruptChunk(chunk.id, reason: "content does not match its id")) {
            try store.readVerifiedCompressedChunk(chunk.id, decompressor: decompressor)
        }
    }

    @Test("A chunk read and verified to be served once is kept for the next serve")
    func servedChunkKept() throws {
        let directory = TemporaryDirectory("store")
        let chunk = received(seed: 4)
        do {
            let writer = try ChunkStore(root: directory.path)
            try chunk.plain.withUnsafeBytes {
                _ = try writer.storeChunk($0, id: chunk.id, compressor: ZstdCompressor())
            }
            try writer.commit()
        }
        let store = try ChunkStore(root: directory.path)
        #expect(store.cachedVerifiedChunk(chunk.id) == nil)
        let first = try store.readVerifiedCompressedChunk(chunk.id, decompressor: ZstdDecompressor())
        #expect(store.cachedVerifiedChunk(chunk.id).map(\.compressed) == first.compressed)
    }

    @Test("Bad bytes from a peer are neither stored nor kept")
    func corruptNotKept() throws {
        let directory = TemporaryDirectory("store")
        let store = try ChunkStore(root: directory.path)
        let chunk = received(seed: 5)
        let wrongID = received(seed: 6).id
        #expect(throws: StoreError.self) {
            try receive(chunk, as: wrongID, in: store)
        }
        #expect(store.cachedVerifiedChunk(wrongID) == nil)
        #expect(store.verifiedCache.count == 0)
    }

    @Test("The cache holds at most its byte bound, oldest out first, and forgets chunks the store deletes")
    func boundedAndForgetsDeleted() throws {
        let directory = TemporaryDirectory("store")
        let store = try ChunkStore(root: directory.path, verifiedCacheBytes: 200_000)
        let decompressor = ZstdDecompressor()
        let chunks = (10..<15).map { received(seed: UInt64($0)) }
        for chunk in chunks {
            try receive(chunk, in: store, decompressor)
        }
        #expect(store.verifiedCache.bytes <= 200_000)
        #expect(chunks.prefix(3).allSatisfy { store.cachedVerifiedChunk($0.id) == nil })
        #expect(chunks.suffix(2).allSatisfy { store.cachedVerifiedChunk($0.id) != nil })
        // A failed download's batch is discarded: its chunks are gone from disk and from memory.
        store.discardPending()
        #expect(store.verifiedCache.count == 0 && store.verifiedCache.bytes == 0)

        for chunk in chunks.suffix(2) {
            try receive(chunk, in: store, decompressor)
        }
        try store.commit()
        #expect(store.verifiedCache.count == 2)
        _ = try store.collectGarbage(maxStoredBytes: 0, graceSeconds: -1)
        #expect(store.verifiedCache.count == 0)
        #expect(throws: StoreError.missingChunk(chunks[4].id)) {
            try store.readVerifiedCompressedChunk(chunks[4].id, decompressor: decompressor)
        }
    }

    @Test("Many inserts and removals keep the cache's bookkeeping bounded and its byte count exact")
    func churn() {
        let cache = VerifiedChunkCache(capacityBytes: 10_000)
        var expected: [Digest: Int] = [:]
        for round in 0..<5000 {
            let id = Blake2b.hash([UInt8(truncatingIfNeeded: round), UInt8(truncatingIfNeeded: round >> 8)])
            let size = 100 + round % 900
            cache.insert(id, compressed: [UInt8](repeating: 1, count: size), plainSize: size)
            expected[id] = size
            if round % 3 == 0 {
                cache.remove([id])
                expected[id] = nil
            }
            #expect(cache.bytes <= 10_000)
        }
        #expect(cache.orderLength <= 2 * cache.count + 1100)
        let live = expected.filter { cache.entry($0.key) != nil }
        #expect(cache.bytes == live.values.reduce(0, +))
        #expect(cache.count == live.count)
    }

    @Test("A decompression context reuses its memory across chunks of different sizes and still checks each")
    func scratchReuse() throws {
        let directory = TemporaryDirectory("store")
        let store = try ChunkStore(root: directory.path)
        let decompressor = ZstdDecompressor()
        for (seed, count) in [(20, 300_000), (21, 5_000), (22, 1 << 20), (23, 64)] {
            let chunk = received(seed: UInt64(seed), count: count)
            #expect(try receive(chunk, in: store, decompressor))
            #expect(throws: StoreError.self) {
                try receive(chunk, size: count + 1, in: store, decompressor)
            }
        }
        try store.commit()
        let last = received(seed: 23, count: 64)
        #expect(try store.readChunk(last.id, decompressor: decompressor) == last.plain)
    }
}

@Suite("Chunk store: where chunk files are written")
struct ChunkFilePlacementTests {
    @Test("A chunk file is written beside its final name, not in tmp/, and a leftover temporary file is swept by gc")
    func temporaryFilesInChunkFolders() throws {
        let directory = TemporaryDirectory("store")
        let store = try ChunkStore(root: directory.path)
        let data = Fixtures.bytes(count: 50_000, seed: 30)
        let id = Blake2b.hash(data)
        try data.withUnsafeBytes { _ = try store.storeChunk($0, id: id, compressor: ZstdCompressor()) }
        try store.commit()
        let folder = directory.path + "/chunks/" + id.hex.prefix(2)
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == [id.hex])
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path + "/tmp").isEmpty)

        // A writer killed between its write and its rename leaves a temporary file: unindexed, and swept.
        let leftover = folder + "/.tmp-deadbeef"
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: leftover))
        #expect(try store.verify(repair: false).isHealthy)
        let report = try store.collectGarbage(maxStoredBytes: nil, graceSeconds: -1)
        #expect(report.orphanFilesRemoved == 1)
        #expect(!FileManager.default.fileExists(atPath: leftover))
        #expect(try store.readChunk(id, decompressor: ZstdDecompressor()) == data)
    }

    @Test("A new store's chunk folder is marked for spreading its subfolders over block groups, where supported")
    func chunkFolderSpreadsSubfolders() throws {
        let directory = TemporaryDirectory("store")
        _ = try ChunkStore(root: directory.path)
        // Only file systems that keep the flag (ext4) have something to check: probe with another folder.
        let probe = directory.path + "/probe"
        try FileManager.default.createDirectory(atPath: probe, withIntermediateDirectories: false)
        ChunkStore.spreadSubdirectories(probe)
        guard let probed = InodeFlags.of(directory: probe), probed & InodeFlags.topDirectory != 0 else { return }
        let flags = try #require(InodeFlags.of(directory: directory.path + "/chunks"))
        #expect(flags & InodeFlags.topDirectory != 0)
        #expect((InodeFlags.of(directory: directory.path) ?? 0) & InodeFlags.topDirectory == 0)
    }
}
