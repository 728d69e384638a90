import Glibc
import KindlingManifest
import KindlingStore
import KindlingSystem

/// One item found on disk by `TreeWalker`.
struct FoundItem: Sendable {
    var path: String
    var kind: EntryKind
    var mode: UInt32
    var modificationTime: UInt64
    var size: Int
    var symlinkTarget: String?
}

/// Lists a directory tree without following symlinks. Sockets, FIFOs and devices are skipped (and counted).
struct TreeWalker {
    let root: String
    /// Decides whether a path is captured; for a directory, false skips its whole subtree.
    let include: @Sendable (_ relativePath: String, _ kind: EntryKind) -> Bool

    private(set) var skippedSpecialFiles = 0

    init(root: String, include: @escaping @Sendable (String, EntryKind) -> Bool) {
        self.root = root
        self.include = include
    }

    mutating func walk() throws(SnapshotError) -> [FoundItem] {
        guard FileSystem.isDirectory(root) else { throw .notADirectory(path: root) }
        var items: [FoundItem] = []
        try walk(relative: "", into: &items)
        return items
    }

    private mutating func walk(relative: String, into items: inout [FoundItem]) throws(SnapshotError) {
        let directory = relative.isEmpty ? root : root + "/" + relative
        let names = try Self.rawNames(in: directory)
        // By bytes, as the manifest orders paths: String order is Unicode-canonical and ties NFC with NFD.
        for name in names.sorted(by: { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }) {
            let path = relative.isEmpty ? name : relative + "/" + name
            let full = root + "/" + path
            let found: stat?
            do throws(FileError) { found = try FileSystem.status(full) } catch { throw .file(error) }
            guard let info = found else { continue }  // removed while walking: it is not part of the tree
            let mtime = ManifestLimits.modificationTime(seconds: info.st_mtim.tv_sec, nanoseconds: info.st_mtim.tv_nsec)
            let mode = UInt32(info.st_mode) & ManifestLimits.maxMode
            switch info.st_mode & S_IFMT {
            case S_IFDIR:
                guard include(path, .directory) else { continue }
                items.append(FoundItem(path: path, kind: .directory, mode: mode, modificationTime: mtime, size: 0))
                try walk(relative: path, into: &items)
            case S_IFREG:
                guard include(path, .file) else { continue }
                items.append(
                    FoundItem(path: path, kind: .file, mode: mode, modificationTime: mtime, size: Int(info.st_size)))
            case S_IFLNK:
                guard include(path, .symlink) else { continue }
                items.append(
                    FoundItem(
                        path: path, kind: .symlink, mode: 0o777, modificationTime: mtime, size: 0,
                        symlinkTarget: try Self.readLink(full)))
            default:
                skippedSpecialFiles += 1
            }
        }
    }

    /// Directory entry names, refusing names that are not valid UTF-8 (the manifest format stores UTF-8).
    private static func rawNames(in directory: String) throws(SnapshotError) -> [String] {
        let raw: [[UInt8]]
        do throws(FileError) { raw = try FileSystem.rawContents(of: directory) } catch { throw .file(error) }
        var names: [String] = []
        for bytes in raw {
            guard let name = String(validating: bytes, as: UTF8.self) else { throw .pathNotUTF8(parent: directory) }
            names.append(name)
        }
        return names
    }

    private static func readLink(_ path: String) throws(SnapshotError) -> String {
        let bytes: [UInt8]
        do throws(FileError) { bytes = try FileSystem.linkTarget(path) } catch { throw .file(error) }
        guard let target = String(validating: bytes, as: UTF8.self) else { throw .pathNotUTF8(parent: path) }
        return target
    }
}
