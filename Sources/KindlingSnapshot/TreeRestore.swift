import Glibc
import KindlingCrypto
public import KindlingManifest
public import KindlingStore
import KindlingSystem
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
    /// Modes are the manifest's less the process umask (as tar does for a user), or exactly the manifest's with
    /// `samePermissions`. `prepare` runs on the filled staging folder just before it is swapped in: what it changes
    /// arrives with the rest, atomically, and when it throws nothing is swapped in.
    ///
    /// Every entry is created relative to an open descriptor of the staging folder, by the bytes of its path, and
    /// no symlink is ever followed on the way (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, else O_NOFOLLOW on
    /// every component): whatever a snapshot holds, nothing is written outside the destination.
    public func restore(
        _ manifest: Manifest, from store: ChunkStore, into destination: String, replace: Bool,
        samePermissions: Bool = false, progress: ProgressHandler? = nil,
        prepare: ((_ staging: String) throws -> Void)? = nil
    ) throws(SnapshotError) -> RestoreSummary {
        let clock = ContinuousClock.now
        let destination = Self.normalised(destination)
        let (parentPath, name) = Self.split(destination)
        guard !name.isEmpty, name != ".", name != ".." else { throw .notADirectory(path: destination) }
        try Self.refuseStoreOverlap(destination: destination, storeRoot: store.root)
        do throws(FileError) { try FileSystem.createDirectories(parentPath) } catch { throw .file(error) }
        let parent: DirectoryDescriptor
        do throws(FileError) { parent = try DirectoryDescriptor(opening: parentPath) } catch { throw .file(error) }
        let existing: stat?
        do throws(FileError) { existing = try parent.status(named: name.utf8) } catch { throw .file(error) }
        let destinationExists = existing != nil
        if let info = existing {
            guard info.st_mode & S_IFMT == S_IFDIR else { throw .notADirectory(path: destination) }
            let contents: [[UInt8]]
            do throws(FileError) { contents = try parent.openDirectory(name).names() } catch { throw .file(error) }
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

        Self.removeAbandonedStaging(in: parent, name: name)
        let stagingName = "." + name + Self.stagingMarker + "\(ProcessControl.processID)-" + FileSystem.randomName()
        let stagingPath = (parentPath == "/" ? "" : parentPath) + "/" + stagingName
        do throws(FileError) {
            try parent.makeNewDirectory(named: stagingName.utf8, mode: 0o700)
        } catch {
            throw .file(error)
        }

        var summary = RestoreSummary()
        do throws(SnapshotError) {
            let staging: DirectoryDescriptor
            do throws(FileError) { staging = try parent.openDirectory(stagingName) } catch { throw .file(error) }
            let umask = FileSystem.currentUmask()
            summary = try write(
                manifest.body.entries, from: store, into: staging, mask: samePermissions ? 0 : umask,
                progress: progress)
            if let prepare {
                do { try prepare(stagingPath) } catch { throw .preparation(String(describing: error)) }
            }
            // The staging directory was private while being filled; the result gets an ordinary directory mode.
            do throws(FileError) { try staging.setMode(0o777 & ~umask) } catch { throw .file(error) }
            try Self.makeDurable(staging, workers: workers)
            do throws(FileError) {
                if destinationExists {
                    try parent.exchange(named: stagingName, with: name)
                    summary.replaced = true
                    // The staging name now holds the old contents.
                    try? parent.removeTree(named: Array(stagingName.utf8))
                } else {
                    try parent.moveWithoutReplacing(named: stagingName, to: name)
                }
            } catch {
                throw .file(error)
            }
        } catch {
            try? parent.removeTree(named: Array(stagingName.utf8))
            throw error
        }
        do throws(StoreError) { try store.flushUsage() } catch { throw .store(error) }
        summary.seconds = (ContinuousClock.now - clock).seconds
        return summary
    }

    static let stagingMarker = ".kindling-staging-"

    /// Writes `entries` below `staging`, each relative to its descriptor, never through a symlink. `mask` is
    /// taken from every mode (the umask; 0 keeps the manifest's modes exactly).
    func write(
        _ entries: [ManifestEntry], from store: ChunkStore, into staging: DirectoryDescriptor, mask: mode_t,
        progress: ProgressHandler?
    ) throws(SnapshotError) -> RestoreSummary {
        var summary = RestoreSummary()
        // Directories first (sorted paths put parents before children), files in parallel, symlinks last.
        for entry in entries where entry.kind == .directory {
            let (parent, leaf) = Self.splitRelative(entry.path)
            let directory = try Self.openParent(parent, in: staging)
            do throws(FileError) { try directory.makeDirectory(named: leaf, mode: 0o700) } catch { throw .file(error) }
            summary.directories += 1
        }
        let files = entries.filter { $0.kind == .file }.sorted { $0.size > $1.size }
        let totalBytes = files.reduce(0) { $0 + $1.size }
        let written = Atomic<Int>(0)
        try ParallelWork.forEach(files, workers: workers, state: { _ in ZstdDecompressor() }) {
            (decompressor, entry) throws(SnapshotError) in
            try Self.writeFile(entry, from: store, staging: staging, mask: mask, decompressor: decompressor)
            let done = written.wrappingAdd(entry.size, ordering: .relaxed).newValue
            progress?(done, totalBytes)
        }
        summary.files = files.count
        summary.bytes = totalBytes
        for entry in entries where entry.kind == .symlink {
            let (parent, leaf) = Self.splitRelative(entry.path)
            let directory = try Self.openParent(parent, in: staging)
            do throws(FileError) {
                try directory.makeSymlink(named: leaf, pointingTo: entry.symlinkTarget ?? "")
                try directory.setTimes(named: leaf, nanoseconds: entry.modificationTime)
            } catch {
                throw .file(error)
            }
            summary.symlinks += 1
        }
        // Directory modes and times last, deepest first: writing into a directory changes its mtime.
        for entry in entries.reversed() where entry.kind == .directory {
            do throws(FileError) {
                let directory = try staging.openDirectory(entry.path)
                try directory.setMode(mode_t(entry.mode) & ~mask)
                try directory.setTimes(nanoseconds: entry.modificationTime)
            } catch {
                throw .file(error)
            }
        }
        return summary
    }

    private static func writeFile(
        _ entry: ManifestEntry, from store: ChunkStore, staging: DirectoryDescriptor, mask: mode_t,
        decompressor: ZstdDecompressor
    ) throws(SnapshotError) {
        let (parent, leaf) = splitRelative(entry.path)
        let directory = try openParent(parent, in: staging)
        let file: PosixFile
        do throws(FileError) { file = try directory.createFile(named: leaf, mode: 0o600) } catch { throw .file(error) }
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
        do throws(FileError) {
            try file.setMode(mode_t(entry.mode) & ~mask)
            try file.setTimes(nanoseconds: entry.modificationTime)
        } catch {
            throw .file(error)
        }
        // The disk works while the other files are decompressed: the flush before the swap then waits far less.
        file.startWriteback()
    }

    /// The directory holding an entry, opened below the staging folder without following links; missing
    /// parents are created (a manifest need not list every directory).
    private static func openParent(
        _ parent: Substring.UTF8View, in staging: DirectoryDescriptor
    ) throws(SnapshotError) -> DirectoryDescriptor {
        do throws(FileError) {
            return try staging.openDirectory(bytes: Array(parent), create: true, mode: 0o755)
        } catch {
            throw .file(error)
        }
    }

    /// "a/b/c" gives ("a/b", "c"), by bytes; "c" gives ("", "c").
    static func splitRelative(_ path: String) -> (parent: Substring.UTF8View, leaf: Substring.UTF8View) {
        let utf8 = path.utf8
        guard let slash = utf8.lastIndex(of: UInt8(ascii: "/")) else {
            return (path[path.startIndex..<path.startIndex].utf8, path[...].utf8)
        }
        return (path[..<slash].utf8, path[utf8.index(after: slash)...].utf8)
    }

    /// Makes what the restore wrote durable before the swap, and only that: the data of every file under the
    /// staging folder (as `prepare` left it; its writeback started as it was written, so this mostly waits for what
    /// is still in flight), then an fsync of every directory, deepest first, which commits the journal with the
    /// files' metadata (the batch method of git's core.fsyncMethod). A syncfs would do it in one call, but it also
    /// waits for every other dirty page on the filesystem, such as those of a build running next to the restore.
    /// Everything is opened below the staging descriptor, by bytes, without following links.
    static func makeDurable(_ staging: DirectoryDescriptor, workers: Int) throws(SnapshotError) {
        var files: [[UInt8]] = []
        var directories: [[UInt8]] = [[]]
        var index = 0
        do throws(FileError) {
            while index < directories.count {
                let relative = directories[index]
                index += 1
                let directory = try staging.openDirectory(bytes: relative)
                for name in try directory.names() {
                    let path = relative.isEmpty ? name : relative + [UInt8(ascii: "/")] + name
                    guard let info = try directory.status(named: name) else {
                        throw FileError(
                            call: "fstatat", "inspecting", staging.path + "/" + String(decoding: path, as: UTF8.self),
                            errno: .noSuchFile)
                    }
                    switch info.st_mode & S_IFMT {
                    case S_IFDIR: directories.append(path)
                    case S_IFREG: files.append(path)
                    default: break  // symlinks: their directory's flush covers them
                    }
                }
            }
        } catch {
            throw .file(error)
        }
        try ParallelWork.forEach(files, workers: workers) { (_: Int, path: [UInt8]) throws(SnapshotError) in
            do throws(FileError) {
                try staging.openFile(bytes: path, flags: O_RDONLY).waitForWriteback()
            } catch {
                throw .file(error)
            }
        }
        for directory in directories.reversed() {
            do throws(FileError) { try staging.openDirectory(bytes: directory).sync() } catch { throw .file(error) }
        }
    }

    /// Staging directories of restores that were killed: their process is gone. Only what a restore of this
    /// user made is removed: a real directory (never a symlink), owned by this user, named exactly as a restore
    /// names its staging folder (`.<name>.kindling-staging-<pid>-<hex>`). A directory another user planted under
    /// such a name, in a parent others can write, is left alone.
    static func removeAbandonedStaging(in parent: DirectoryDescriptor, name: String) {
        let prefix = Array(("." + name + stagingMarker).utf8)
        let user = ProcessControl.effectiveUserID
        for candidate in (try? parent.names()) ?? [] where candidate.starts(with: prefix) {
            let rest = candidate[prefix.count...].split(separator: UInt8(ascii: "-"), omittingEmptySubsequences: false)
            guard rest.count == 2, let pid = Int32(String(decoding: rest[0], as: UTF8.self)), pid > 0,
                !rest[1].isEmpty, rest[1].allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) })
            else { continue }
            guard let info = (try? parent.status(named: candidate)) ?? nil,
                info.st_mode & S_IFMT == S_IFDIR, info.st_uid == user
            else { continue }
            if !ProcessControl.isAlive(pid) {
                // The owner is checked again on the open directory: a swap after the check above changes nothing.
                try? parent.removeTree(named: candidate, owner: user)
            }
        }
    }

    /// Refuses a destination that is the store, an ancestor of it, or inside it, compared by device and inode of
    /// the real directories (a symlink, a bind mount or a "/./" spelling cannot hide the overlap): a replace there
    /// would swap the store away and delete it.
    static func refuseStoreOverlap(destination: String, storeRoot: String) throws(SnapshotError) {
        guard let storeChain = ancestry(ofPath: storeRoot), let store = storeChain.first else { return }
        // The destination, or the nearest directory above it that exists (before anything is created).
        var existing = destination
        var chain = ancestry(ofPath: existing)
        while chain == nil, existing != "/", !existing.isEmpty {
            existing = split(existing).parent
            chain = ancestry(ofPath: existing)
        }
        guard let chain, let nearest = chain.first else { return }
        if existing == destination && storeChain.contains(nearest) {
            throw .destinationHoldsStore(path: destination, store: storeRoot)
        }
        if chain.contains(store) { throw .destinationInStore(path: destination, store: storeRoot) }
    }

    static func ancestry(ofPath path: String) -> [FileIdentity]? {
        (try? DirectoryDescriptor(opening: path))?.ancestry()
    }

    static func normalised(_ path: String) -> String {
        var path = path
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        if !path.hasPrefix("/") {
            if let cwd = FileSystem.currentDirectory() { path = (cwd == "/" ? "" : cwd) + "/" + path }
        }
        return path
    }

    static func split(_ path: String) -> (parent: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let parent = String(path[..<slash])
        return (parent.isEmpty ? "/" : parent, String(path[path.index(after: slash)...]))
    }
}
