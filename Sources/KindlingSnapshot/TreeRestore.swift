import CKindlingShims
import Glibc
import KindlingCrypto
public import KindlingManifest
public import KindlingStore
import Synchronization

/// What a restore wrote.
public struct RestoreSummary: Sendable, Codable {
    public var files = 0
    public var directories = 0
    public var symlinks = 0
    public var bytes = 0
    public var seconds = 0.0
    /// True when an existing destination was replaced.
    public var replaced = false
}

/// Materialises a manifest from the store into a directory, all or nothing.
///
/// Everything is written into a staging directory beside the destination, every chunk is re-hashed before it is
/// written, the staging tree is made durable, and only then is it swapped in with one atomic rename (or an atomic
/// exchange when the destination exists). An error, a kill or a full disk at any point leaves the destination as
/// it was; a killed restore leaves only a `.<name>.kindling-staging-<pid>-*` directory, removed by the next restore.
public struct TreeRestore: Sendable {
    public var workers: Int

    public init(workers: Int = ParallelWork.defaultWorkerCount) {
        self.workers = workers
    }

    /// Restores `manifest` into `destination`. Without `replace`, refuses a destination that is not empty.
    /// `prepare` runs on the filled staging folder just before it is swapped in: what it changes arrives with the
    /// rest, atomically, and when it throws nothing is swapped in.
    public func restore(
        _ manifest: Manifest, from store: ChunkStore, into destination: String, replace: Bool,
        progress: ProgressHandler? = nil, prepare: ((_ staging: String) throws -> Void)? = nil
    ) throws(SnapshotError) -> RestoreSummary {
        let clock = ContinuousClock.now
        let destination = Self.normalised(destination)
        let destinationExists = FileSystem.exists(destination)
        if destinationExists {
            guard FileSystem.isDirectory(destination) else { throw .notADirectory(path: destination) }
            let contents: [String]
            do throws(FileError) { contents = try FileSystem.contents(of: destination) } catch { throw .file(error) }
            if !contents.isEmpty && !replace { throw .destinationNotEmpty(path: destination) }
        }
        // Held to the end: gc must not evict a chunk between the check below and its read.
        let lease: StoreLease
        do throws(StoreError) { lease = try store.lease() } catch { throw .store(error) }
        defer { withExtendedLifetime(lease) {} }
        // Check before writing anything: a restore that can't finish should not start.
        let missing: [ChunkReference]
        do throws(StoreError) { missing = try store.missingChunks(of: manifest) } catch { throw .store(error) }
        guard missing.isEmpty else {
            throw .missingChunks(count: missing.count, bytes: missing.reduce(0) { $0 + $1.length })
        }

        let (parent, name) = Self.split(destination)
        do throws(FileError) { try FileSystem.createDirectories(parent) } catch { throw .file(error) }
        Self.removeAbandonedStaging(parent: parent, name: name)
        let staging = parent + "/." + name + ".kindling-staging-\(getpid())-" + FileSystem.randomName()
        guard mkdir(staging, 0o700) == 0 else { throw .file(FileError("creating staging directory", staging)) }

        var summary = RestoreSummary()
        do throws(SnapshotError) {
            summary = try write(manifest, from: store, into: staging, progress: progress)
            if let prepare {
                do { try prepare(staging) } catch { throw .preparation(String(describing: error)) }
            }
            // The staging directory was private while being filled; the result gets an ordinary directory mode.
            let mask = umask(0o022)
            umask(mask)
            guard chmod(staging, 0o777 & ~mask) == 0 else { throw .file(FileError("setting mode of", staging)) }
            try Self.makeDurable(staging, workers: workers)
            if destinationExists {
                guard ckindling_exchange_paths(staging, destination) == 0 else {
                    throw .file(FileError("swapping in", destination))
                }
                summary.replaced = true
                // The staging path now holds the old contents.
                try? FileSystem.removeTree(staging)
            } else {
                guard ckindling_rename_noreplace(staging, destination) == 0 else {
                    throw .file(FileError("moving into place", destination))
                }
            }
        } catch {
            try? FileSystem.removeTree(staging)
            throw error
        }
        do throws(StoreError) { try store.flushUsage() } catch { throw .store(error) }
        summary.seconds = (ContinuousClock.now - clock).seconds
        return summary
    }

    private func write(
        _ manifest: Manifest, from store: ChunkStore, into staging: String, progress: ProgressHandler?
    ) throws(SnapshotError) -> RestoreSummary {
        let entries = manifest.body.entries
        var summary = RestoreSummary()
        // Directories first (sorted paths put parents before children), files in parallel, symlinks last.
        for entry in entries where entry.kind == .directory {
            let path = staging + "/" + entry.path
            guard mkdir(path, 0o700) == 0 || errno == EEXIST else { throw .file(FileError("creating directory", path)) }
            summary.directories += 1
        }
        let files = entries.filter { $0.kind == .file }.sorted { $0.size > $1.size }
        let totalBytes = files.reduce(0) { $0 + $1.size }
        let written = Atomic<Int>(0)
        try ParallelWork.forEach(files, workers: workers, state: { _ in ZstdDecompressor() }) {
            (decompressor, entry) throws(SnapshotError) in
            try Self.writeFile(entry, from: store, staging: staging, decompressor: decompressor)
            let done = written.wrappingAdd(entry.size, ordering: .relaxed).newValue
            progress?(done, totalBytes)
        }
        summary.files = files.count
        summary.bytes = totalBytes
        for entry in entries where entry.kind == .symlink {
            let path = staging + "/" + entry.path
            try Self.ensureParent(of: entry.path, in: staging)
            guard symlink(entry.symlinkTarget ?? "", path) == 0 else { throw .file(FileError("creating symlink", path)) }
            try Self.setTimes(path, entry.modificationTime, followLinks: false)
            summary.symlinks += 1
        }
        // Directory modes and times last, deepest first: writing into a directory changes its mtime.
        for entry in entries.reversed() where entry.kind == .directory {
            let path = staging + "/" + entry.path
            guard chmod(path, mode_t(entry.mode)) == 0 else { throw .file(FileError("setting mode of", path)) }
            try Self.setTimes(path, entry.modificationTime, followLinks: false)
        }
        return summary
    }

    private static func writeFile(
        _ entry: ManifestEntry, from store: ChunkStore, staging: String, decompressor: ZstdDecompressor
    ) throws(SnapshotError) {
        try ensureParent(of: entry.path, in: staging)
        let path = staging + "/" + entry.path
        let file: PosixFile
        do throws(FileError) {
            file = try PosixFile(opening: path, flags: O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: 0o600)
        } catch {
            throw .file(error)
        }
        for chunk in entry.chunks {
            // Verified against its id by the store before it gets here (invariant 2).
            let bytes: [UInt8]
            do throws(StoreError) {
                bytes = try store.readChunk(chunk.id, expectedSize: chunk.length, decompressor: decompressor)
            } catch {
                throw .store(error)
            }
            do throws(FileError) { try file.write(bytes) } catch { throw .file(error) }
        }
        guard fchmod(file.descriptor, mode_t(entry.mode)) == 0 else { throw .file(FileError("setting mode of", path)) }
        var times = [timespec(entry.modificationTime), timespec(entry.modificationTime)]
        guard futimens(file.descriptor, &times) == 0 else { throw .file(FileError("setting times of", path)) }
        // The disk works while the other files are decompressed: the flush before the swap then waits far less.
        _ = ckindling_start_writeback(file.descriptor)
    }

    /// Creates missing parents of `relative` (a manifest need not list every directory).
    private static func ensureParent(of relative: String, in staging: String) throws(SnapshotError) {
        guard let slash = relative.lastIndex(of: "/") else { return }
        let parent = staging + "/" + relative[..<slash]
        if FileSystem.isDirectory(parent) { return }
        do throws(FileError) { try FileSystem.createDirectories(parent, mode: 0o755) } catch { throw .file(error) }
    }

    private static func setTimes(_ path: String, _ nanoseconds: UInt64, followLinks: Bool) throws(SnapshotError) {
        var times = [timespec(nanoseconds), timespec(nanoseconds)]
        guard utimensat(AT_FDCWD, path, &times, followLinks ? 0 : AT_SYMLINK_NOFOLLOW) == 0 else {
            throw .file(FileError("setting times of", path))
        }
    }

    /// Makes what the restore wrote durable before the swap, and only that: the data of every file under the
    /// staging folder (as `prepare` left it; its writeback started as it was written, so this mostly waits for what
    /// is still in flight), then an fsync of every directory, deepest first, which commits the journal with the
    /// files' metadata (the batch method of git's core.fsyncMethod). A syncfs would do it in one call, but it also
    /// waits for every other dirty page on the filesystem, such as those of a build running next to the restore.
    static func makeDurable(_ staging: String, workers: Int) throws(SnapshotError) {
        var files: [String] = []
        var directories: [String] = [staging]
        var index = 0
        while index < directories.count {
            let directory = directories[index]
            index += 1
            let names: [String]
            do throws(FileError) { names = try FileSystem.contents(of: directory) } catch { throw .file(error) }
            for name in names {
                let path = directory + "/" + name
                var info = stat()
                guard lstat(path, &info) == 0 else { throw .file(FileError("inspecting", path)) }
                switch info.st_mode & S_IFMT {
                case S_IFDIR: directories.append(path)
                case S_IFREG: files.append(path)
                default: break  // symlinks: their directory's flush covers them
                }
            }
        }
        try ParallelWork.forEach(files, workers: workers) { (_: Int, path: String) throws(SnapshotError) in
            try flush(path, flags: O_RDONLY | O_NOFOLLOW, dataOnly: true)
        }
        for directory in directories.reversed() {
            try flush(directory, flags: O_RDONLY | O_DIRECTORY | O_NOFOLLOW, dataOnly: false)
        }
    }

    private static func flush(_ path: String, flags: Int32, dataOnly: Bool) throws(SnapshotError) {
        do throws(FileError) { try FileSystem.flush(path, flags: flags, dataOnly: dataOnly) } catch { throw .file(error) }
    }

    /// Staging directories of restores that were killed: their process is gone.
    private static func removeAbandonedStaging(parent: String, name: String) {
        let prefix = "." + name + ".kindling-staging-"
        for candidate in (try? FileSystem.contents(of: parent)) ?? [] where candidate.hasPrefix(prefix) {
            let rest = candidate.dropFirst(prefix.count)
            guard let pid = rest.split(separator: "-").first.flatMap({ Int32($0) }) else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH {
                try? FileSystem.removeTree(parent + "/" + candidate)
            }
        }
    }

    static func normalised(_ path: String) -> String {
        var path = path
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        if !path.hasPrefix("/") {
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX))
            if getcwd(&buffer, buffer.count) != nil {
                let cwd = String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
                path = (cwd == "/" ? "" : cwd) + "/" + path
            }
        }
        return path
    }

    static func split(_ path: String) -> (parent: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let parent = String(path[..<slash])
        return (parent.isEmpty ? "/" : parent, String(path[path.index(after: slash)...]))
    }
}

extension timespec {
    init(_ nanoseconds: UInt64) {
        self.init(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
    }
}
