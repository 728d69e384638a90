public import KindlingCrypto

/// What an entry of a captured tree is.
public enum EntryKind: UInt8, Sendable, Codable {
    case file = 0
    case directory = 1
    case symlink = 2
}

/// One chunk of a file: its id (BLAKE2b-256 of the plain bytes) and its length.
public struct ChunkReference: Hashable, Sendable {
    public var id: Digest
    public var length: Int

    public init(id: Digest, length: Int) {
        self.id = id
        self.length = length
    }
}

/// One entry of a captured tree.
public struct ManifestEntry: Hashable, Sendable {
    /// Relative, '/'-separated, validated by `RelativePath`.
    public var path: String
    public var kind: EntryKind
    /// Permission bits (at most 0o777).
    public var mode: UInt32
    /// Modification time in nanoseconds since the Unix epoch. Cargo's freshness checks compare these.
    public var modificationTime: UInt64
    /// Chunks in file order; empty for directories, symlinks and empty files.
    public var chunks: [ChunkReference]
    /// The link's target, for symlinks only.
    public var symlinkTarget: String?

    public var size: Int { chunks.reduce(0) { $0 + $1.length } }

    public static func file(path: String, mode: UInt32, modificationTime: UInt64, chunks: [ChunkReference]) -> Self {
        ManifestEntry(path: path, kind: .file, mode: mode, modificationTime: modificationTime, chunks: chunks)
    }

    public static func directory(path: String, mode: UInt32, modificationTime: UInt64) -> Self {
        ManifestEntry(path: path, kind: .directory, mode: mode, modificationTime: modificationTime, chunks: [])
    }

    public static func symlink(path: String, target: String, modificationTime: UInt64) -> Self {
        ManifestEntry(
            path: path, kind: .symlink, mode: 0o777, modificationTime: modificationTime, chunks: [],
            symlinkTarget: target
        )
    }

    public init(
        path: String, kind: EntryKind, mode: UInt32, modificationTime: UInt64, chunks: [ChunkReference],
        symlinkTarget: String? = nil
    ) {
        self.path = path
        self.kind = kind
        self.mode = mode
        self.modificationTime = modificationTime
        self.chunks = chunks
        self.symlinkTarget = symlinkTarget
    }
}
