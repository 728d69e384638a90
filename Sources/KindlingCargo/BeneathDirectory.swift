import Foundation
import KindlingStore

/// A directory held open by descriptor, in which every operation names a relative path and opens it one component
/// at a time with `openat(O_NOFOLLOW)`, acting on the last one with `AT_SYMLINK_NOFOLLOW` (or `unlinkat`/`renameat`,
/// which never follow a final link). So no symlink, wherever a snapshot put it, takes an operation outside the
/// directory: the effect of `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, without needing a kernel that has it
/// (paths with `.`, `..` or empty components are refused outright, so nothing climbs out either).
/// A symlink met on the way is an error (`ELOOP`), never followed.
final class BeneathDirectory {
    let descriptor: Int32
    /// For messages only.
    let path: String

    /// Opens `path` itself as the user named it (a target folder may be the user's own link to another disk);
    /// only what lies below it is the snapshot's, and never followed.
    init(_ path: String) throws(CargoError) {
        let descriptor = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw .repairFailed(path: path, reason: String(cString: strerror(errno))) }
        self.descriptor = descriptor
        self.path = path
    }

    private init(descriptor: Int32, path: String) {
        self.descriptor = descriptor
        self.path = path
    }

    deinit { close(descriptor) }

    /// The components of a relative path, or nil when one of them is empty, `.` or `..`.
    static func components(_ relative: String) -> [String]? {
        let parts = relative.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard !parts.isEmpty, parts.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." }) else { return nil }
        return parts
    }

    /// Opens the directory at `relative` (no symlink on the way). Sets errno and returns nil on failure.
    func directory(_ relative: String) -> BeneathDirectory? {
        guard let parts = Self.components(relative) else {
            errno = EINVAL
            return nil
        }
        var current = dup(descriptor)
        guard current >= 0 else { return nil }
        for part in parts {
            let next = openat(current, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            let saved = errno
            close(current)
            guard next >= 0 else {
                errno = saved
                return nil
            }
            current = next
        }
        return BeneathDirectory(descriptor: current, path: path + "/" + relative)
    }

    /// The directory holding `relative` and the last component's name.
    private func parent(of relative: String) -> (BeneathDirectory, String)? {
        guard let parts = Self.components(relative), let name = parts.last else {
            errno = EINVAL
            return nil
        }
        if parts.count == 1 { return (self, name) }
        guard let folder = directory(parts.dropLast().joined(separator: "/")) else { return nil }
        return (folder, name)
    }

    /// What `fstatat(AT_SYMLINK_NOFOLLOW)` says of `relative`, nil when it is missing (or a parent is a symlink).
    func status(_ relative: String) -> stat? {
        guard let (folder, name) = parent(of: relative) else { return nil }
        var info = stat()
        guard fstatat(folder.descriptor, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else { return nil }
        return info
    }

    func kind(_ relative: String) -> mode_t? { status(relative).map { $0.st_mode & S_IFMT } }

    /// Names in the directory at `relative` ("" for this one); empty when it is missing or not a directory.
    func names(_ relative: String = "") -> [String] {
        let descriptor: Int32
        if relative.isEmpty {
            descriptor = dup(self.descriptor)
        } else {
            guard let folder = directory(relative) else { return [] }
            descriptor = dup(folder.descriptor)
        }
        guard descriptor >= 0 else { return [] }
        guard let stream = fdopendir(descriptor) else {
            close(descriptor)
            return []
        }
        defer { closedir(stream) }
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// The content of the regular file at `relative`; nil when it is missing, a symlink, not a regular file,
    /// unreadable or larger than `limit`.
    func read(_ relative: String, limit: Int = 64 << 20) -> [UInt8]? {
        guard let (folder, name) = parent(of: relative) else { return nil }
        let descriptor = openat(folder.descriptor, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        var info = stat()
        guard fstat(descriptor, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            close(descriptor)
            return nil
        }
        // PosixFile closes the descriptor.
        let file = PosixFileHandle(descriptor: descriptor)
        return file.readAll(limit: limit)
    }

    /// Removes the file, symlink or whole tree at `relative` without following any symlink. Missing is fine.
    func remove(_ relative: String) throws(CargoError) {
        guard let (folder, name) = parent(of: relative) else {
            if errno == ENOENT { return }
            throw .repairFailed(path: path + "/" + relative, reason: String(cString: strerror(errno)))
        }
        try folder.removeEntry(name)
    }

    private func removeEntry(_ name: String) throws(CargoError) {
        var info = stat()
        guard fstatat(descriptor, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else {
            if errno == ENOENT { return }
            throw .repairFailed(path: path + "/" + name, reason: String(cString: strerror(errno)))
        }
        if info.st_mode & S_IFMT == S_IFDIR {
            guard let child = directory(name) else {
                throw .repairFailed(path: path + "/" + name, reason: String(cString: strerror(errno)))
            }
            // A directory the snapshot made read-only must still be emptied.
            if info.st_mode & 0o700 != 0o700 { fchmod(child.descriptor, 0o700) }
            for entry in child.names() { try child.removeEntry(entry) }
            guard unlinkat(descriptor, name, AT_REMOVEDIR) == 0 || errno == ENOENT else {
                throw .repairFailed(path: path + "/" + name, reason: String(cString: strerror(errno)))
            }
        } else {
            guard unlinkat(descriptor, name, 0) == 0 || errno == ENOENT else {
                throw .repairFailed(path: path + "/" + name, reason: String(cString: strerror(errno)))
            }
        }
    }

    /// Renames `from` to `to`, both names directly in the directory at `folder` (a link is moved, not followed).
    func rename(in folder: String, from: String, to: String) throws(CargoError) {
        guard let directory = folder.isEmpty ? self : directory(folder) else {
            throw .repairFailed(path: path + "/" + folder, reason: String(cString: strerror(errno)))
        }
        guard renameat(directory.descriptor, from, directory.descriptor, to) == 0 else {
            throw .repairFailed(path: directory.path + "/" + from, reason: String(cString: strerror(errno)))
        }
    }
}

/// Reads a whole descriptor, closing it afterwards.
private struct PosixFileHandle {
    let descriptor: Int32

    func readAll(limit: Int) -> [UInt8]? {
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if count == 0 { return bytes }
            bytes.append(contentsOf: buffer[0..<count])
            if bytes.count > limit { return nil }
        }
    }
}

/// Where cargo keeps its own bookkeeping in a captured target: a symlink there would make the freshness repair
/// or cargo itself read, write or delete outside the target, so a snapshot holding one is refused at publish and
/// at restore (Specs/cargo.md, "Symlinks in a snapshot").
public enum CargoBookkeeping {
    static let folders: Set<String> = [".fingerprint", "deps", "build", "incremental", "examples"]
    /// Names cargo or the repair write directly in a profile folder.
    static let profileFiles: Set<String> = [".cargo-lock", FreshnessRepair.hiddenFingerprints]

    /// Why a symlink at `path` (relative to the target) is refused, or nil when it may stay: everywhere but
    /// inside a build script's own `<profile>/build/<unit>/out/` (what a build script puts there is its own
    /// business). Cargo itself makes no symlinks in a target directory, and it writes through any it finds:
    /// fingerprints, locks, `deps`, `build`, `incremental`, the uplifted binaries and `.rustc_info.json`.
    public static func symlinkRefusal(_ path: String, profiles: [String]) -> String? {
        for profile in profiles {
            if path == profile || profile.hasPrefix(path + "/") {
                return "'\(path)' is a symlink on the way to the profile folder '\(profile)'"
            }
            guard path.hasPrefix(profile + "/") else { continue }
            let rest = path.dropFirst(profile.count + 1).split(separator: "/", omittingEmptySubsequences: false)
            guard let first = rest.first.map(String.init) else { continue }
            if profileFiles.contains(first) || first.hasPrefix(".fingerprint") {
                return "'\(path)' is a symlink where cargo keeps its fingerprints or lock"
            }
            if first == "build", rest.count > 3, rest[2] == "out" { return nil }
            if folders.contains(first) { return "'\(path)' is a symlink inside cargo's own '\(first)' folder" }
            return "'\(path)' is a symlink in a profile folder, where cargo writes its own files"
        }
        return "'\(path)' is a symlink outside the profile folders, where cargo writes its own files"
    }

    /// Throws on the first entry of a snapshot that is a symlink where cargo keeps its bookkeeping.
    public static func check(entries: [(path: String, isSymlink: Bool)], profiles: [String]) throws(CargoError) {
        for entry in entries where entry.isSymlink {
            if let reason = symlinkRefusal(entry.path, profiles: profiles) { throw .bookkeepingSymlink(reason) }
        }
    }

    /// The same check on a target directory on disk (at publish), walking it without following links.
    public static func check(targetDirectory: String, profiles: [String]) throws(CargoError) {
        guard FileSystem.exists(targetDirectory) else { return }
        let target = try BeneathDirectory(targetDirectory)
        for profile in profiles {
            guard let parts = BeneathDirectory.components(profile) else {
                throw .malformedRecord("the profile folder '\(profile)' is not a relative path")
            }
            var prefix = ""
            for part in parts {
                prefix = prefix.isEmpty ? part : prefix + "/" + part
                if target.kind(prefix) == S_IFLNK {
                    throw .bookkeepingSymlink(symlinkRefusal(prefix, profiles: [profile]) ?? prefix)
                }
            }
            var stack = [profile]
            while let folder = stack.popLast() {
                for name in target.names(folder) {
                    let path = folder + "/" + name
                    // Below the bookkeeping folders only: the rest of a profile folder is not captured.
                    let kind = target.kind(path)
                    if kind == S_IFLNK, let reason = symlinkRefusal(path, profiles: [profile]) {
                        throw .bookkeepingSymlink(reason)
                    }
                    if kind == S_IFDIR, folder != profile || folders.contains(name) { stack.append(path) }
                }
            }
        }
    }
}
