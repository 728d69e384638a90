import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingSystem
import Synchronization

/// What `gc` did.
public struct GarbageReport: Sendable, Codable {
    public var evictedChunks = 0
    public var freedBytes = 0
    public var orphanFilesRemoved = 0
    public var temporaryFilesRemoved = 0
    public var storedBytesAfter = 0
    /// Bytes held by chunks of pinned manifests, which are never evicted.
    public var pinnedBytes = 0
    /// True when pinned chunks alone exceed the cap, so the cap could not be met.
    public var pinnedExceedCap = false
    /// True when gc did nothing because a publish or restore held a lease (`waitForLeases: false`).
    public var skippedWhileLeased = false
}

/// What `verify` found.
public struct VerifyReport: Sendable, Codable {
    public var checkedChunks = 0
    public var checkedBytes = 0
    public var corruptChunks: [String] = []
    public var missingChunks: [String] = []
    public var badManifests: [String] = []
    public var repaired = false

    public var isHealthy: Bool { corruptChunks.isEmpty && missingChunks.isEmpty && badManifests.isEmpty }
}

/// Counts for `kindling store stats`.
public struct StoreStatistics: Sendable, Codable {
    public var root: String
    public var chunkCount: Int
    public var plainBytes: Int
    public var storedBytes: Int
    public var manifestCount: Int
    public var completeManifestCount: Int
    public var pinnedManifestCount: Int
}

extension ChunkStore {
    public func statistics() throws(StoreError) -> StoreStatistics {
        let totals = try index.chunkTotals()
        let summaries = try manifestSummaries()
        var complete = 0
        for summary in summaries where summary.hasBody {
            if let manifest = try? manifest(summary.id), (try? missingChunks(of: manifest).isEmpty) == true {
                complete += 1
            }
        }
        return StoreStatistics(
            root: root, chunkCount: totals.count, plainBytes: totals.plain, storedBytes: totals.stored,
            manifestCount: summaries.count, completeManifestCount: complete,
            pinnedManifestCount: summaries.filter(\.pinned).count)
    }

    /// Chunk ids referenced by pinned manifests, and by manifests being fetched (evicting those would undo the
    /// fetch's progress): these are never evicted.
    func protectedChunks() throws(StoreError) -> Set<Digest> {
        var protected = Set<Digest>()
        for id in Set(try pins().keys).union(try wantedManifests()) {
            guard let manifest = try? manifest(id) else { continue }
            for entry in manifest.body.entries {
                for chunk in entry.chunks { protected.insert(chunk.id) }
            }
        }
        return protected
    }

    /// Evicts least recently used chunks until the stored size is at most `maxStoredBytes` (never a chunk of a
    /// pinned manifest), then removes files that are not indexed and older than `graceSeconds` (left by killed
    /// writers; the grace period spares chunks another process is writing right now).
    ///
    /// It never runs while a lease is held (`StoreLease`): with `waitForLeases` it waits for them, else it returns
    /// at once with `skippedWhileLeased`.
    public func collectGarbage(
        maxStoredBytes: Int?, graceSeconds: Double = 3600, waitForLeases: Bool = true
    ) throws(StoreError) -> GarbageReport {
        var report = GarbageReport()
        guard let exclusive = try GarbageCollectionLock(root: root, wait: waitForLeases) else {
            report.skippedWhileLeased = true
            return report
        }
        defer { withExtendedLifetime(exclusive) {} }
        try commit()
        let protected = try protectedChunks()
        let rows = try index.chunksByLastUse()
        var total = rows.reduce(0) { $0 + $1.stored }
        report.pinnedBytes = rows.reduce(0) { $0 + (protected.contains($1.id) ? $1.stored : 0) }
        var evicted: [Digest] = []
        if let maxStoredBytes {
            for row in rows where total > maxStoredBytes && !protected.contains(row.id) {
                evicted.append(row.id)
                total -= row.stored
                report.freedBytes += row.stored
            }
            report.pinnedExceedCap = total > maxStoredBytes
        }
        // Index first, files second: a crash in between leaves unindexed files, which the sweep below removes.
        try index.deleteChunks(evicted)
        verifiedCache.remove(evicted)
        for id in evicted { try? FileSystem.removeFile(chunkPath(id)) }
        report.evictedChunks = evicted.count
        report.storedBytesAfter = total

        let indexed = Set(rows.map(\.id)).subtracting(evicted)
        let cutoff = Date().timeIntervalSince1970 - graceSeconds
        for prefix in 0..<256 {
            let directory = root + "/chunks/" + Hex.encode([UInt8(prefix)])
            for name in (try? FileSystem.contents(of: directory)) ?? [] {
                if let id = Digest(hex: name), indexed.contains(id) { continue }
                if Self.modificationTime(directory + "/" + name) < cutoff,
                    (try? FileSystem.removeFile(directory + "/" + name)) != nil
                {
                    report.orphanFilesRemoved += 1
                }
            }
        }
        for name in (try? FileSystem.contents(of: root + "/tmp")) ?? [] {
            let path = root + "/tmp/" + name
            if Self.modificationTime(path) < cutoff, (try? FileSystem.removeTree(path)) != nil {
                report.temporaryFilesRemoved += 1
            }
        }
        return report
    }

    /// Re-hashes every indexed chunk and decodes every manifest. With `repair`, drops what is bad from the index
    /// (and deletes corrupt files) so that the next fetch gets them again.
    public func verify(
        repair: Bool, workers: Int = ParallelWork.defaultWorkerCount,
        progress: (@Sendable (_ done: Int, _ total: Int) -> Void)? = nil
    ) throws(StoreError) -> VerifyReport {
        try commit()
        let rows = try index.chunksByLastUse()
        let results = Mutex<(checked: Int, bytes: Int, corrupt: [Digest], missing: [Digest])>((0, 0, [], []))
        ParallelWork.forEach(rows, workers: workers, state: { _ in ZstdDecompressor() }) {
            (decompressor: inout ZstdDecompressor, row: (id: Digest, plain: Int, stored: Int)) in
            var outcome: (corrupt: Bool, missing: Bool) = (false, false)
            do throws(StoreError) {
                _ = try readChunk(row.id, expectedSize: row.plain, decompressor: decompressor, recordUse: false)
            } catch {
                if case .missingChunk = error { outcome.missing = true } else { outcome.corrupt = true }
            }
            let done = results.withLock { state in
                state.checked += 1
                state.bytes += row.plain
                if outcome.corrupt { state.corrupt.append(row.id) }
                if outcome.missing { state.missing.append(row.id) }
                return state.checked
            }
            progress?(done, rows.count)
        }
        let state = results.withLock { $0 }
        var report = VerifyReport(
            checkedChunks: state.checked, checkedBytes: state.bytes,
            corruptChunks: state.corrupt.map(\.hex).sorted(), missingChunks: state.missing.map(\.hex).sorted())
        var badManifests: [Digest] = []
        for row in try index.manifestRows(repository: nil, commit: nil) {
            do {
                _ = try signedHeader(row.id)
                _ = try manifest(row.id)
            } catch {
                badManifests.append(row.id)
            }
        }
        report.badManifests = badManifests.map(\.hex).sorted()
        if repair && !report.isHealthy {
            try index.deleteChunks(state.corrupt + state.missing)
            verifiedCache.remove(state.corrupt + state.missing)
            for id in state.corrupt { try? FileSystem.removeFile(chunkPath(id)) }
            for id in badManifests { try index.deleteManifest(id) }
            report.repaired = true
        }
        return report
    }

    static func modificationTime(_ path: String) -> TimeInterval {
        guard let info = (try? FileSystem.status(path)) ?? nil else { return .infinity }
        return TimeInterval(info.st_mtim.tv_sec)
    }
}
