import Foundation
import KindlingCrypto
import KindlingManifest
public import KindlingSnapshot
import KindlingStore
import KindlingSystem
import Synchronization

/// bors's side: turns a workspace built at the build root into a publish request and a capture filter.
public struct CargoPublishing: Sendable {
    public let workspace: CargoWorkspace
    public let root: BuildRoot
    public let profile: String
    public let targetTriple: String?

    public init(workspace: CargoWorkspace, root: BuildRoot, profile: String, targetTriple: String?) {
        self.workspace = workspace
        self.root = root
        self.profile = profile
        self.targetTriple = targetTriple
    }

    /// Profile folders to capture: with `--target`, the target's folder and the host folder (build scripts and
    /// proc-macros are built for the host).
    public var profileDirectories: [String] {
        let directory = CargoCacheKey.profileDirectory(profile)
        return targetTriple.map { [$0 + "/" + directory, directory] } ?? [directory]
    }

    public func prepare(
        allowDirty: Bool, pin: Bool
    ) throws(CargoError) -> (request: PublishRequest, capture: TreeCapture, key: CargoCacheKey) {
        let changes = try workspace.checkout.uncommittedChanges()
        if !changes.isEmpty && !allowDirty {
            throw .dirtyTree("\(changes.count) paths, first: \(changes[0].trimmingCharacters(in: .whitespaces))")
        }
        let commit = try workspace.checkout.head()
        let key = try CargoCacheKey.compute(
            workspace: workspace, root: root, profile: CargoCacheKey.profileDirectory(profile), target: targetTriple)
        for directory in profileDirectories where !FileSystem.isDirectory(workspace.targetDirectory + "/" + directory) {
            throw .notAWorkspace(
                "\(workspace.targetDirectory)/\(directory) does not exist; build first ('kindling cargo build')")
        }
        // A symlink where cargo keeps its bookkeeping would send every restore's repair outside its target.
        try CargoBookkeeping.check(targetDirectory: workspace.targetDirectory, profiles: profileDirectories)
        let record = CargoRecord(
            root: root.path, workspaceDirectory: workspace.relativeRoot, profileDirectories: profileDirectories,
            sources: try recordSources(), directories: try recordDirectories(), externalInputs: recordExternalInputs())
        let selection = TargetSelection(
            targetDirectory: workspace.targetDirectory, profileDirectories: profileDirectories)
        let request = PublishRequest(
            repository: workspace.repository.text, commit: commit, directory: workspace.targetDirectory,
            cacheKey: key.entries,
            extra: [CargoRecord.extraKey: record.encoded()], pin: pin)
        return (request, TreeCapture(include: { selection.includes($0, kind: $1) }), key)
    }

    /// Size, hash and mtime of every tracked file: what the freshness repair compares against.
    func recordSources() throws(CargoError) -> [CargoRecord.Source] {
        let tracked = try workspace.checkout.trackedFiles()
        let toplevel = workspace.checkout.toplevel
        let sources = Mutex<[CargoRecord.Source]>([])
        ParallelWork.forEach(tracked) { (_: Int, path: String) in
            let full = toplevel + "/" + path
            // Deleted in the working tree but still in the index: nothing to record.
            guard let mtime = modificationTime(full), let (digest, size) = hashFile(full) else { return }
            sources.withLock {
                $0.append(CargoRecord.Source(path: path, size: size, digest: digest, modificationTime: mtime))
            }
        }
        return sources.withLock { $0 }.sorted { Array($0.path.utf8).lexicographicallyPrecedes(Array($1.path.utf8)) }
    }

    /// Every directory holding tracked files (the top level aside), with the names in it and its mtime.
    func recordDirectories() throws(CargoError) -> [CargoRecord.Directory] {
        let toplevel = workspace.checkout.toplevel
        // By bytes: NFC and NFD spellings of a folder are two folders on disk, and each needs its record.
        var directories = Set<[UInt8]>()
        for path in try workspace.checkout.trackedFiles() {
            var parent = Array(path.utf8)[...]
            while let slash = parent.lastIndex(of: UInt8(ascii: "/")) {
                parent = parent[..<slash]
                guard directories.insert(Array(parent)).inserted else { break }
            }
        }
        let paths = directories.sorted { $0.lexicographicallyPrecedes($1) }.map { String(decoding: $0, as: UTF8.self) }
        return paths.compactMap { path in
            let full = toplevel + "/" + path
            guard let mtime = modificationTime(full), let names = try? FileSystem.contents(of: full) else { return nil }
            return CargoRecord.Directory(path: path, names: CargoRecord.namesDigest(names), modificationTime: mtime)
        }
    }

    /// Hashes of the inputs outside the build root that the target's dep files and build scripts name.
    func recordExternalInputs() -> [CargoRecord.ExternalInput] {
        let units = BuildInputs.units(
            targetDirectory: workspace.targetDirectory, profileDirectories: profileDirectories,
            workspaceRoot: root.workspaceRoot(relative: workspace.relativeRoot))
        let sysroot = BuildInputs.sysroot(directory: workspace.root, environment: workspace.toolchainEnvironment)
        let paths = BuildInputs.externalInputs(of: units, root: root, sysroot: sysroot)
        // Only regular files are hashed: a dep file may name a FIFO or /dev/zero, which would hang the read.
        return paths.map { path in
            var info = stat()
            let regular = stat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFREG
            return CargoRecord.ExternalInput(path: path, digest: regular ? hashFile(path)?.digest : nil)
        }
    }
}
