import Foundation
public import KindlingCrypto
public import KindlingManifest
import KindlingSystem
import Synchronization

/// The content-addressed store (Specs/store.md): zstd-compressed chunk files under `chunks/`, and an SQLite index
/// of chunks, manifests and pins.
///
/// Durability rule: a chunk file is written to `tmp/`, renamed into place, and made durable (syncfs) *before* its
/// index row is committed. So a kill at any moment leaves files that are not indexed (swept by `gc`), never an
/// index row whose file is missing or incomplete. Readers trust only the index and always re-hash what they read.
public final class ChunkStore: Sendable {
    public let root: String
    let index: StoreIndex
    /// Chunks written to disk but not yet indexed; `commit()` makes them durable and indexes them.
    private let pending = Mutex<[Digest: PendingChunk]>([:])
    /// Chunks some thread is compressing and writing right now: a second writer of the same chunk (hard-linked or
    /// duplicate files read in parallel) skips it instead of doing the work twice.
    private let inFlight = Mutex<Set<Digest>>([])
    /// Held for a whole commit: two commits at once (a download's background commit and its final one) would
    /// flush and index the same batch twice.
    private let committing = Mutex<Void>(())
    /// Chunks read since the last flush, for LRU order.
    private let touched = Mutex<Set<Digest>>([])
    /// Compressed chunks received or served a moment ago, verified: served again without a read or a re-hash.
    let verifiedCache: VerifiedChunkCache

    /// What `verifiedCache` holds at most by default: about 500 average chunks, a few seconds of a swarm.
    public static let defaultVerifiedCacheBytes = 32 << 20

    /// The largest chunk file accepted from disk: a compressed maximum-size chunk plus zstd's worst-case overhead.
    static let maxStoredChunkBytes = ManifestLimits.maxChunkBytes + (ManifestLimits.maxChunkBytes >> 7) + 1024

    /// Opens (creating if needed) the store at `root`. `verifiedCacheBytes` bounds the memory kept for serving
    /// chunks just received or served (0 turns it off).
    public init(root: String, verifiedCacheBytes: Int = defaultVerifiedCacheBytes) throws(StoreError) {
        self.root = root
        self.verifiedCache = VerifiedChunkCache(capacityBytes: verifiedCacheBytes)
        do {
            try FileSystem.createDirectories(root, mode: 0o700)
            try FileSystem.createDirectories(root + "/tmp")
            if !FileSystem.isDirectory(root + "/chunks") {
                try FileSystem.createDirectories(root + "/chunks")
                Self.spreadSubdirectories(root + "/chunks")
            }
            for prefix in 0..<256 {
                let name = root + "/chunks/" + Hex.encode([UInt8(prefix)])
                if !FileSystem.isDirectory(name) { try FileSystem.createDirectories(name) }
            }
        } catch {
            throw .cannotOpen(path: root, reason: error.description)
        }
        self.index = try StoreIndex(path: root + "/index.sqlite")
    }

    /// Marks a new `chunks/` folder as the top of a hierarchy for ext4's inode allocator (`chattr +T`): its 256
    /// folders, made next, then go to different block groups, and so do the chunk files written in them
    /// (`writeChunkFile`). Best effort: other file systems lack the flag, and only speed depends on it.
    static func spreadSubdirectories(_ path: String) {
        InodeFlags.add(InodeFlags.topDirectory, toDirectory: path)
    }

    /// The default store: `$KINDLING_HOME`, else `~/.cache/kindling`.
    public static var defaultRoot: String {
        let environment = ProcessInfo.processInfo.environment
        if let home = environment["KINDLING_HOME"], !home.isEmpty { return home }
        let userHome = environment["HOME"] ?? NSHomeDirectory()
        return userHome + "/.cache/kindling"
    }

    func chunkPath(_ id: Digest) -> String {
        let hex = id.hex
        return root + "/chunks/" + hex.prefix(2) + "/" + hex
    }

    // MARK: Writing chunks

    /// True when the chunk is indexed (durably stored) or written and waiting for `commit()`.
    public func contains(_ id: Digest) throws(StoreError) -> Bool {
        if pending.withLock({ $0[id] != nil }) { return true }
        return try index.chunkSize(id) != nil
    }

    /// The subset of `ids` this store holds (indexed or pending).
    public func presentChunks(among ids: [Digest]) throws(StoreError) -> Set<Digest> {
        var present = try index.presentChunks(ids)
        pending.withLock { pending in
            for id in ids where pending[id] != nil { present.insert(id) }
        }
        return present
    }

    /// Compresses and writes a chunk whose id the caller computed from `plain`. Returns the bytes it takes on
    /// disk, or nil when the store already had it. It becomes visible to other processes at the next `commit()`.
    @discardableResult
    public func storeChunk(
        _ plain: UnsafeRawBufferPointer, id: Digest, compressor: ZstdCompressor
    ) throws(StoreError) -> Int? {
        guard plain.count <= ManifestLimits.maxChunkBytes else { throw .chunkTooLarge(id, size: plain.count) }
        guard try claim(id) else { return nil }
        defer { inFlight.withLock { _ = $0.remove(id) } }
        let compressed = compressor.compress(plain)
        try writeChunkFile(id: id, compressed: compressed, plainSize: plain.count)
        return compressed.count
    }

    /// True when the caller should write `id`: the store lacks it and no other thread is writing it.
    private func claim(_ id: Digest) throws(StoreError) -> Bool {
        let claimed = inFlight.withLock { inFlight in
            pending.withLock { $0[id] == nil } && inFlight.insert(id).inserted
        }
        guard claimed else { return false }
        if try index.chunkSize(id) != nil {
            inFlight.withLock { _ = $0.remove(id) }
            touched.withLock { _ = $0.insert(id) }
            return false
        }
        return true
    }

    /// Stores a compressed chunk received from a peer, after checking that it decompresses to bytes with this id.
    /// Returns false when the store already had it. The verified bytes are kept for serving (`verifiedCache`).
    @discardableResult
    public func storeCompressedChunk(
        _ compressed: [UInt8], id: Digest, expectedSize: Int, decompressor: ZstdDecompressor
    ) throws(StoreError) -> Bool {
        let plainSize = try Self.verifyCompressed(compressed, id: id, expectedSize: expectedSize, decompressor)
        guard try claim(id) else {
            verifiedCache.insert(id, compressed: compressed, plainSize: plainSize)
            return false
        }
        defer { inFlight.withLock { _ = $0.remove(id) } }
        try writeChunkFile(id: id, compressed: compressed, plainSize: plainSize)
        verifiedCache.insert(id, compressed: compressed, plainSize: plainSize)
        return true
    }

    /// Decompresses `compressed` (bounded) into the decompressor's scratch memory and checks the result's hash
    /// against `id`; returns the plain size. Nothing is allocated per chunk.
    private static func verifyCompressed(
        _ compressed: [UInt8], id: Digest, expectedSize: Int?, _ decompressor: ZstdDecompressor
    ) throws(StoreError) -> Int {
        let (matches, plainSize) = try compressed.withBytes { (buffer) throws(StoreError) -> (Bool, Int) in
            try decompressor.withDecompressed(
                buffer, expectedSize: expectedSize, limit: ManifestLimits.maxChunkBytes, id: id
            ) { plain in (Blake2b.hash(plain) == id, plain.count) }
        }
        guard matches else { throw .corruptChunk(id, reason: "content does not match its id") }
        return plainSize
    }

    /// Writes the file under a temporary name in its own folder, then renames it into place. Not in `tmp/`: a new
    /// file takes an inode from its folder's block group, and ext4 without a journal scans past every free inode
    /// of a recently written inode table block to find one, so with one folder for thousands of chunk files that
    /// search grew with each file and took a quarter of a swarm download's CPU (Specs/store.md, "Durability").
    /// The 256 chunk folders, spread over block groups (`spreadSubdirectories`), spread the files out. A leftover
    /// `.tmp-` file is unindexed; gc sweeps it.
    private func writeChunkFile(id: Digest, compressed: [UInt8], plainSize: Int) throws(StoreError) {
        let destination = chunkPath(id)
        let temporary = root + "/chunks/" + id.hex.prefix(2) + "/" + FileSystem.randomName(prefix: ".tmp-")
        do throws(FileError) {
            let file = try PosixFile(opening: temporary, flags: O_WRONLY | O_CREAT | O_EXCL, mode: 0o644)
            try file.write(compressed)
            try FileSystem.rename(temporary, to: destination, operation: "renaming chunk into")
        } catch {
            try? FileSystem.removeFile(temporary)
            throw .file(error)
        }
        pending.withLock { $0[id] = PendingChunk(id: id, plainSize: plainSize, storedSize: compressed.count) }
    }

    /// Makes every chunk written so far durable, then indexes it. After this returns, a crash loses none of them.
    public func commit() throws(StoreError) {
        try committing.withLock { (_: inout Void) throws(StoreError) in try commitPending() }
    }

    private func commitPending() throws(StoreError) {
        let batch = pending.withLock { Array($0.values) }
        if !batch.isEmpty {
            try syncFileSystem()
            try index.insertChunks(batch, now: Self.now)
            pending.withLock { pending in
                for chunk in batch { pending[chunk.id] = nil }
            }
        }
        try flushUsage()
    }

    /// Deletes chunk files written since the last commit without indexing them (after a failed capture, so that a
    /// full disk gets its space back at once rather than at the next gc).
    public func discardPending() {
        let batch = pending.withLock { pending in
            defer { pending.removeAll() }
            return Array(pending.keys)
        }
        verifiedCache.remove(batch)
        for id in batch { try? FileSystem.removeFile(chunkPath(id)) }
    }

    /// Records which chunks were read, so that eviction removes the least recently used first.
    public func flushUsage() throws(StoreError) {
        let ids = touched.withLock { touched in
            defer { touched.removeAll() }
            return touched
        }
        try index.touchChunks(ids, now: Self.now)
    }

    /// One syncfs, not a flush per chunk file: chunk files are small (64 KiB on average), and flushing each
    /// (sync_file_range, then fsync of their folders) took a 315 MB fetch from 1.9 s to 2.9 s and doubled the
    /// receiver's CPU time (tools/bench/mesh.py, single transfer). The cost is that a commit also waits for other
    /// programs' dirty pages; downloads commit in the background (SwarmDownload), so they do not stall on it.
    private func syncFileSystem() throws(StoreError) {
        do throws(FileError) { try FileSystem.syncFileSystem(containing: root) } catch { throw .file(error) }
    }

    // MARK: Reading chunks

    /// The plain bytes of an indexed chunk, verified against its id. Never returns bytes that do not match.
    /// `recordUse: false` keeps maintenance reads (verify) from counting as use for eviction.
    public func readChunk(
        _ id: Digest, expectedSize: Int? = nil, decompressor: ZstdDecompressor, recordUse: Bool = true
    ) throws(StoreError) -> [UInt8] {
        let compressed = try readChunkFile(id)
        let plain = try compressed.withBytes { (buffer) throws(StoreError) -> [UInt8] in
            try decompressor.decompress(
                buffer, expectedSize: expectedSize, limit: ManifestLimits.maxChunkBytes, id: id)
        }
        guard Blake2b.hash(plain) == id else { throw .corruptChunk(id, reason: "content does not match its id") }
        if recordUse { touched.withLock { _ = $0.insert(id) } }
        return plain
    }

    /// The stored (compressed) form of a chunk, after checking that it still matches its id: what peers are served.
    /// Bytes verified a moment ago (`cachedVerifiedChunk`) are returned as they are; others are read and re-hashed.
    public func readVerifiedCompressedChunk(
        _ id: Digest, decompressor: ZstdDecompressor
    ) throws(StoreError) -> (compressed: [UInt8], plainSize: Int) {
        if let cached = cachedVerifiedChunk(id) { return cached }
        let compressed = try readChunkFile(id)
        let plainSize = try Self.verifyCompressed(compressed, id: id, expectedSize: nil, decompressor)
        verifiedCache.insert(id, compressed: compressed, plainSize: plainSize)
        touched.withLock { _ = $0.insert(id) }
        return (compressed, plainSize)
    }

    /// The compressed form of a chunk this store verified a moment ago (received, or read to be served), without
    /// touching the disk: cheap enough to call on any thread. Nil when it is not in memory.
    public func cachedVerifiedChunk(_ id: Digest) -> (compressed: [UInt8], plainSize: Int)? {
        guard let entry = verifiedCache.entry(id) else { return nil }
        touched.withLock { _ = $0.insert(id) }
        return (entry.compressed, entry.plainSize)
    }

    private func readChunkFile(_ id: Digest) throws(StoreError) -> [UInt8] {
        let path = chunkPath(id)
        do throws(FileError) {
            let file = try PosixFile(opening: path, flags: O_RDONLY)
            return try file.readAll(limit: Self.maxStoredChunkBytes)
        } catch {
            if error.errno == .noSuchFile { throw .missingChunk(id) }
            if error.errno == .fileTooLarge { throw .chunkTooLarge(id, size: Self.maxStoredChunkBytes) }
            throw .file(error)
        }
    }

    // MARK: Manifests

    /// Records a trusted signed header (its body may follow later).
    public func saveHeader(_ trusted: TrustedHeader) throws(StoreError) {
        try index.insertHeader(trusted.signed, body: nil, now: Self.now)
    }

    /// Records a trusted manifest with its body.
    public func saveManifest(_ trusted: TrustedManifest) throws(StoreError) {
        try index.insertHeader(trusted.manifest.signed, body: trusted.manifest.bodyBytes, now: Self.now)
    }

    /// The signed header of a manifest, as stored. Check it with a `TrustPolicy` before use: the trust file may
    /// have changed (a key revoked) since it was stored.
    public func signedHeader(_ id: Digest) throws(StoreError) -> SignedHeader? {
        guard let row = try index.manifestRow(id) else { return nil }
        return try Self.decodeHeader(row)
    }

    /// The complete manifest, or nil when the store has only its header (or nothing).
    public func manifest(_ id: Digest) throws(StoreError) -> Manifest? {
        guard let row = try index.manifestRow(id), let body = row.body else { return nil }
        let signed = try Self.decodeHeader(row)
        do {
            return try Manifest(signed: signed, bodyBytes: body)
        } catch {
            throw .corruptManifest(id, reason: error.description)
        }
    }

    /// Headers of stored manifests, newest first, optionally for one repository and commit.
    public func manifestSummaries(
        repository: RepositoryName? = nil, commit: String? = nil
    ) throws(StoreError) -> [ManifestSummary] {
        var summaries: [ManifestSummary] = []
        for row in try index.manifestRows(repository: repository?.text, commit: commit) {
            guard let signed = try? Self.decodeHeader(row) else { continue }
            summaries.append(ManifestSummary(signed: signed, hasBody: row.body != nil, pinned: false))
        }
        let pins = try index.pins()
        return summaries.map { summary in
            var summary = summary
            summary.pinned = pins[summary.id] != nil
            return summary
        }
    }

    public func removeManifest(_ id: Digest) throws(StoreError) {
        try index.deleteManifest(id)
    }

    /// Which chunks of `manifest` are missing from the store, in manifest order, without duplicates.
    public func missingChunks(of manifest: Manifest) throws(StoreError) -> [ChunkReference] {
        var seen = Set<Digest>()
        var unique: [ChunkReference] = []
        for entry in manifest.body.entries {
            for chunk in entry.chunks where seen.insert(chunk.id).inserted {
                unique.append(chunk)
            }
        }
        let present = try presentChunks(among: unique.map(\.id))
        return unique.filter { !present.contains($0.id) }
    }

    private static func decodeHeader(_ row: ManifestRow) throws(StoreError) -> SignedHeader {
        do {
            return try SignedHeader(headerBytes: row.header, signature: try Signature(bytes: row.signature))
        } catch {
            throw .corruptManifest(row.id, reason: "\(error)")
        }
    }

    // MARK: Pins

    public func pin(_ id: Digest, reason: String) throws(StoreError) {
        guard try index.manifestRow(id) != nil else { throw .manifestNotFound(id.hex) }
        try index.setPinned(id, pinned: true, reason: reason, now: Self.now)
    }

    public func unpin(_ id: Digest) throws(StoreError) {
        try index.setPinned(id, pinned: false, reason: "", now: Self.now)
    }

    public func pins() throws(StoreError) -> [Digest: String] {
        try index.pins()
    }

    // MARK: Wanted snapshots

    /// Records that a fetch of `id` is under way (or finished), so that a restarted node resumes it.
    public func setWanted(_ id: Digest, wanted: Bool) throws(StoreError) {
        try index.setWanted(id, wanted: wanted, now: Self.now)
    }

    public func wantedManifests() throws(StoreError) -> [Digest] {
        try index.wanted()
    }

    static var now: Int64 { Int64(Date().timeIntervalSince1970) }
}

/// What the store knows of one manifest without decoding its body.
public struct ManifestSummary: Sendable {
    public var signed: SignedHeader
    public var hasBody: Bool
    public var pinned: Bool

    public var id: Digest { signed.id }
    public var header: ManifestHeader { signed.header }
}
