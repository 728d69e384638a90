import Glibc
public import KindlingChunking
import KindlingCrypto
public import KindlingManifest
public import KindlingStore
import KindlingSystem
import Synchronization

/// Progress of a long operation: bytes done out of bytes in all.
public typealias ProgressHandler = @Sendable (_ done: Int, _ total: Int) -> Void

/// What a capture found and what it added to the store.
public struct CaptureSummary: Sendable, Codable {
    public var files = 0
    public var directories = 0
    public var symlinks = 0
    public var skippedSpecialFiles = 0
    public var bytes = 0
    public var chunks = 0
    /// Chunks (and their plain bytes) that the store did not have yet.
    public var newChunks = 0
    public var newBytes = 0
    /// What the new chunks take on disk, compressed.
    public var newStoredBytes = 0
    public var seconds = 0.0
}

/// Captures a directory tree into a store: walks it, chunks every file (FastCDC), stores the chunks compressed, and
/// returns the manifest entries. Files are read in parallel, largest first, with bounded memory per worker.
public struct TreeCapture: Sendable {
    public var chunker: Chunker
    public var workers: Int
    /// Decides what is captured (the cargo integration selects parts of `target/`). Default: everything.
    public var include: @Sendable (_ relativePath: String, _ kind: EntryKind) -> Bool

    public init(
        chunker: Chunker = Chunker(), workers: Int = ParallelWork.defaultWorkerCount,
        include: @escaping @Sendable (String, EntryKind) -> Bool = { _, _ in true }
    ) {
        self.chunker = chunker
        self.workers = workers
        self.include = include
    }

    public func capture(
        directory: String, into store: ChunkStore, progress: ProgressHandler? = nil
    ) throws(SnapshotError) -> (entries: [ManifestEntry], summary: CaptureSummary) {
        let clock = ContinuousClock.now
        var walker = TreeWalker(root: directory, include: include)
        let items = try walker.walk()
        var summary = CaptureSummary()
        summary.skippedSpecialFiles = walker.skippedSpecialFiles

        let files = items.enumerated().filter { $0.element.kind == .file }
        let totalBytes = files.reduce(0) { $0 + $1.element.size }
        // Largest first, so that one huge file does not start last and leave the other workers idle.
        let order = files.sorted { $0.element.size > $1.element.size }.map(\.offset)
        let results = Mutex<[Int: FileResult]>([:])
        let done = Atomic<Int>(0)
        let chunker = chunker
        do throws(SnapshotError) {
            try ParallelWork.forEach(order, workers: workers, state: { _ in ZstdCompressor(level: 3) }) {
                (compressor, index) throws(SnapshotError) in
                let item = items[index]
                let result = try Self.captureFile(
                    root: directory, item: item, chunker: chunker, store: store, compressor: compressor)
                results.withLock { $0[index] = result }
                let total = done.wrappingAdd(item.size, ordering: .relaxed).newValue
                progress?(total, totalBytes)
            }
            // Durable and indexed before anyone can see a manifest that refers to these chunks.
            do throws(StoreError) { try store.commit() } catch { throw .store(error) }
        } catch {
            // Keep what was written for the next attempt if the index takes it; otherwise give the space back.
            do { try store.commit() } catch { store.discardPending() }
            throw error
        }

        let captured = results.withLock { $0 }
        var entries: [ManifestEntry] = []
        entries.reserveCapacity(items.count)
        for (index, item) in items.enumerated() {
            switch item.kind {
            case .directory:
                summary.directories += 1
                entries.append(.directory(path: item.path, mode: item.mode, modificationTime: item.modificationTime))
            case .symlink:
                summary.symlinks += 1
                entries.append(
                    .symlink(path: item.path, target: item.symlinkTarget ?? "", modificationTime: item.modificationTime)
                )
            case .file:
                guard let result = captured[index] else { continue }
                summary.files += 1
                summary.bytes += result.size
                summary.chunks += result.chunks.count
                summary.newChunks += result.newChunks
                summary.newBytes += result.newBytes
                summary.newStoredBytes += result.newStoredBytes
                entries.append(
                    .file(
                        path: item.path, mode: item.mode, modificationTime: item.modificationTime, chunks: result.chunks
                    ))
            }
        }
        summary.seconds = (ContinuousClock.now - clock).seconds
        return (ManifestBody(entries: entries).entries, summary)
    }

    private struct FileResult: Sendable {
        var chunks: [ChunkReference] = []
        var size = 0
        var newChunks = 0
        var newBytes = 0
        var newStoredBytes = 0
    }

    private static func captureFile(
        root: String, item: FoundItem, chunker: Chunker, store: ChunkStore, compressor: ZstdCompressor
    ) throws(SnapshotError) -> FileResult {
        let path = root + "/" + item.path
        var result = FileResult()
        do throws(CaptureFailure) {
            let file: PosixFile
            do throws(FileError) {
                file = try PosixFile(opening: path, flags: O_RDONLY | O_NOFOLLOW)
            } catch {
                throw .file(error)
            }
            try chunker.chunk(
                read: { (buffer) throws(CaptureFailure) -> Int in
                    do throws(FileError) { return try file.read(into: buffer) } catch { throw .file(error) }
                },
                body: { (chunk) throws(CaptureFailure) in
                    let id = Blake2b.hash(chunk)
                    let stored: Int?
                    do throws(StoreError) {
                        stored = try store.storeChunk(chunk, id: id, compressor: compressor)
                    } catch {
                        throw .store(error)
                    }
                    if let stored {
                        result.newChunks += 1
                        result.newBytes += chunk.count
                        result.newStoredBytes += stored
                    }
                    result.chunks.append(ChunkReference(id: id, length: chunk.count))
                    result.size += chunk.count
                })
            // A file that a running build rewrote under us would give a manifest that matches no real state.
            let info: stat
            do throws(FileError) { info = try file.status() } catch { throw .file(error) }
            let mtime = ManifestLimits.modificationTime(seconds: info.st_mtim.tv_sec, nanoseconds: info.st_mtim.tv_nsec)
            guard mtime == item.modificationTime, Int(info.st_size) == result.size else {
                throw .changed
            }
        } catch {
            switch error {
            case .changed: throw .changedDuringCapture(path: path)
            case .file(let failure) where failure.errno == .noSuchFile: throw .changedDuringCapture(path: path)
            case .file(let failure): throw .file(failure)
            case .store(let failure): throw .store(failure)
            }
        }
        return result
    }

    private enum CaptureFailure: Error {
        case file(FileError)
        case store(StoreError)
        case changed
    }
}

extension Duration {
    var seconds: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }
}
