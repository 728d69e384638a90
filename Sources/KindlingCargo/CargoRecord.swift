import Foundation
public import KindlingCrypto
import KindlingManifest
import KindlingStore
import KindlingSystem

/// What a cargo snapshot needs beyond its files, stored in the manifest's extra field "kindling.cargo"
/// (Specs/cargo.md): the build root, where the workspace sits in the checkout, the profile folders captured,
/// every tracked source file with its size, hash and CI mtime (for the freshness repair), and the inputs that
/// live outside the checkout (system files named by build scripts or dep-info), with their hashes, and (since
/// version 2) every directory holding tracked files with the names in it and its CI mtime.
public struct CargoRecord: Equatable, Sendable {
    public static let extraKey = "kindling.cargo"
    static let version: UInt64 = 2

    public struct Source: Equatable, Sendable {
        public var path: String
        public var size: Int
        public var digest: Digest
        public var modificationTime: UInt64
    }

    /// A directory of the checkout: cargo takes the newest mtime in a `rerun-if-changed` directory, directories
    /// included, so a file deleted from it shows only in the directory's mtime.
    public struct Directory: Equatable, Sendable {
        public var path: String
        /// BLAKE2b-256 of the sorted names in it at capture, each followed by a NUL byte.
        public var names: Digest
        public var modificationTime: UInt64
    }

    public struct ExternalInput: Equatable, Sendable {
        public var path: String
        /// nil when the file did not exist at capture.
        public var digest: Digest?
    }

    public var root: String
    public var workspaceDirectory: String
    public var profileDirectories: [String]
    public var sources: [Source]
    /// nil in version-1 records: every directory then counts as changed.
    public var directories: [Directory]?
    public var externalInputs: [ExternalInput]

    public func encoded() -> [UInt8] {
        var w = CanonicalWriter()
        w.writeVarint(Self.version)
        w.writeString(root)
        w.writeString(workspaceDirectory)
        w.writeVarint(profileDirectories.count)
        for directory in profileDirectories { w.writeString(directory) }
        w.writeVarint(sources.count)
        for source in sources {
            w.writeString(source.path)
            w.writeVarint(source.size)
            w.writeDigest(source.digest)
            w.writeVarint(source.modificationTime)
        }
        w.writeVarint(externalInputs.count)
        for input in externalInputs {
            w.writeString(input.path)
            if let digest = input.digest {
                w.writeByte(1)
                w.writeDigest(digest)
            } else {
                w.writeByte(0)
            }
        }
        let directories = directories ?? []
        w.writeVarint(directories.count)
        for directory in directories {
            w.writeString(directory.path)
            w.writeDigest(directory.names)
            w.writeVarint(directory.modificationTime)
        }
        return w.bytes
    }

    /// The digest of a directory's names, as `Directory.names` holds it.
    static func namesDigest(_ names: [String]) -> Digest {
        Blake2b.hash(
            Array(
                names.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }.map { $0 + "\0" }.joined()
                    .utf8))
    }

    public init(
        root: String, workspaceDirectory: String, profileDirectories: [String], sources: [Source],
        directories: [Directory]?, externalInputs: [ExternalInput]
    ) {
        self.root = root
        self.workspaceDirectory = workspaceDirectory
        self.profileDirectories = profileDirectories
        self.sources = sources
        self.directories = directories
        self.externalInputs = externalInputs
    }

    public init(decoding bytes: [UInt8]) throws(CargoError) {
        do throws(FormatError) {
            var r = CanonicalReader(bytes)
            let version = try r.readVarint("cargo record version")
            guard version == 1 || version == Self.version else {
                throw FormatError.unsupportedVersion(what: "cargo record", version: version)
            }
            root = try r.readString("build root", maxCount: 4096)
            workspaceDirectory = try r.readString("workspace directory", maxCount: 4096)
            let profileCount = try r.readInt("profile count", in: 0...16)
            profileDirectories = try (0..<profileCount).map { (_) throws(FormatError) in
                try Self.validateProfileDirectory(try r.readString("profile", maxCount: 512))
            }
            let sourceCount = try r.readInt("source count", in: 0...(bytes.count / 35))
            var sources: [Source] = []
            sources.reserveCapacity(sourceCount)
            for _ in 0..<sourceCount {
                let path = try r.readString("source path", maxCount: 4096)
                try RelativePath.validate(path)
                sources.append(
                    Source(
                        path: path, size: try r.readInt("source size", in: 0...Int.max),
                        digest: try r.readDigest("source digest"),
                        modificationTime: try Self.readTime(&r, "source mtime")))
            }
            self.sources = sources
            let inputCount = try r.readInt("external input count", in: 0...(bytes.count / 2))
            var inputs: [ExternalInput] = []
            for _ in 0..<inputCount {
                let path = try r.readString("external input", maxCount: 4096)
                let present = try r.readByte("external input flag")
                inputs.append(
                    ExternalInput(path: path, digest: present == 1 ? try r.readDigest("external digest") : nil))
            }
            externalInputs = inputs
            if version >= 2 {
                let directoryCount = try r.readInt("directory count", in: 0...(bytes.count / 34))
                var directories: [Directory] = []
                directories.reserveCapacity(directoryCount)
                for _ in 0..<directoryCount {
                    let path = try r.readString("directory path", maxCount: 4096)
                    try RelativePath.validate(path)
                    directories.append(
                        Directory(
                            path: path, names: try r.readDigest("directory names"),
                            modificationTime: try Self.readTime(&r, "directory mtime")))
                }
                self.directories = directories
            } else {
                directories = nil
            }
            try r.expectEnd("cargo record")
        } catch {
            throw .malformedRecord("\(error)")
        }
    }
}

extension CargoRecord {
    /// A profile folder below the target directory: `debug`, `release`, a custom profile's name, or
    /// `<triple>/<profile>` with `--target`. Every component is checked as a manifest path's is (bytes: no empty,
    /// "." or ".." component, no NUL, not absolute), and there are at most two: the freshness repair and the build
    /// locks join it to the target directory, so a hostile record must not name anything outside it.
    static func validateProfileDirectory(_ directory: String) throws(FormatError) -> String {
        try RelativePath.validate(directory)
        guard directory.utf8.split(separator: UInt8(ascii: "/")).count <= 2 else {
            throw .unsafePath(path: directory, reason: "a profile folder is a name or <target triple>/<name>")
        }
        return directory
    }

    /// An mtime of the record, refused beyond what a manifest may carry (no overflow in later arithmetic).
    static func readTime(_ reader: inout CanonicalReader, _ field: String) throws(FormatError) -> UInt64 {
        let time = try reader.readVarint(field)
        guard time <= ManifestLimits.maxModificationTime else {
            throw .invalid(field: field, reason: "dated after the year 2262")
        }
        return time
    }
}

/// BLAKE2b-256 of a file, streamed in 1 MiB blocks; nil when it cannot be read.
func hashFile(_ path: String) -> (digest: Digest, size: Int)? {
    guard let file = try? PosixFile(opening: path, flags: O_RDONLY) else { return nil }
    let hasher = Blake2bHasher()
    var buffer = [UInt8](repeating: 0, count: 1 << 20)
    var size = 0
    while true {
        let count = buffer.withUnsafeMutableBytes { (try? file.read(into: $0)) ?? -1 }
        if count < 0 { return nil }
        if count == 0 { break }
        buffer.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
        size += count
    }
    return (hasher.finalize(), size)
}

/// Modification time in nanoseconds (without following symlinks), nil when the path is missing.
func modificationTime(_ path: String) -> UInt64? {
    guard let info = (try? FileSystem.status(path)) ?? nil else { return nil }
    return ManifestLimits.modificationTime(seconds: info.st_mtim.tv_sec, nanoseconds: info.st_mtim.tv_nsec)
}

/// Stamps `path` (a link itself, never its target); a path that is gone needs no stamp.
func setModificationTime(_ path: String, _ nanoseconds: UInt64) throws(CargoError) {
    do throws(FileError) {
        try FileSystem.setTimes(path, nanoseconds: nanoseconds)
    } catch {
        if error.errno != .noSuchFile { throw .repairFailed(path: path, reason: error.description) }
    }
}
