import KindlingCrypto

/// The unsigned part of a manifest: every entry of the captured tree, plus open extra fields that the cargo
/// integration fills (source hashes and mtimes for freshness repair, the canonical build root...).
///
/// It is bound to the signature through `ManifestHeader.bodyDigest`.
public struct ManifestBody: Hashable, Sendable {
    /// Sorted by the UTF-8 bytes of their paths, unique.
    public var entries: [ManifestEntry]
    public var extra: [String: [UInt8]]

    public init(entries: [ManifestEntry], extra: [String: [UInt8]] = [:]) {
        self.entries = entries.sorted { Array($0.path.utf8).lexicographicallyPrecedes(Array($1.path.utf8)) }
        self.extra = extra
    }

    public var fileByteCount: Int { entries.reduce(0) { $0 + $1.size } }
    public var chunkReferenceCount: Int { entries.reduce(0) { $0 + $1.chunks.count } }

    /// The canonical bytes (Specs/manifest.md, "Body"). Entries must already be valid (see `validate`).
    public func encoded() -> [UInt8] {
        var writer = CanonicalWriter(reservingCapacity: entries.count * 96)
        writer.writeVarint(entries.count)
        for entry in entries {
            writer.writeString(entry.path)
            writer.writeByte(entry.kind.rawValue)
            writer.writeVarint(UInt64(entry.mode))
            writer.writeVarint(entry.modificationTime)
            switch entry.kind {
            case .file:
                writer.writeVarint(entry.chunks.count)
                for chunk in entry.chunks {
                    writer.writeDigest(chunk.id)
                    writer.writeVarint(chunk.length)
                }
            case .symlink:
                writer.writeString(entry.symlinkTarget ?? "")
            case .directory:
                break
            }
        }
        writer.writeVarint(extra.count)
        for (name, value) in ManifestHeader.sortedPairs(extra) {
            writer.writeString(name)
            writer.writeBytes(value)
        }
        return writer.bytes
    }

    public init(decoding bytes: [UInt8]) throws(FormatError) {
        guard bytes.count <= ManifestLimits.maxBodyBytes else {
            throw .invalid(field: "body", reason: "larger than \(ManifestLimits.maxBodyBytes) bytes")
        }
        var reader = CanonicalReader(bytes)
        // Each entry takes at least 4 bytes, so the count can't ask for more than the input could hold.
        let count = try reader.readInt("entry count", in: 0...min(ManifestLimits.maxEntries, bytes.count / 4))
        var entries: [ManifestEntry] = []
        entries.reserveCapacity(count)
        var previous: [UInt8]? = nil
        var chunkTotal = 0
        for _ in 0..<count {
            let path = try reader.readString("entry path", maxCount: ManifestLimits.maxPathBytes)
            try RelativePath.validate(path)
            try requireStrictlyAscending(path, after: &previous, field: "entry paths")
            let kindByte = try reader.readByte("entry kind")
            guard let kind = EntryKind(rawValue: kindByte) else {
                throw .invalid(field: "entry kind", reason: "unknown kind \(kindByte) for '\(path)'")
            }
            let mode = try reader.readInt("entry mode", in: 0...Int(ManifestLimits.maxMode))
            let mtime = try reader.readVarint("entry modification time")
            guard mtime <= ManifestLimits.maxModificationTime else {
                throw .invalid(field: "entry modification time", reason: "'\(path)' is dated after the year 2262")
            }
            var chunks: [ChunkReference] = []
            var target: String? = nil
            switch kind {
            case .file:
                // Each reference takes at least 33 bytes.
                let chunkCount = try reader.readInt("chunk count", in: 0...reader.remaining / 33)
                chunkTotal += chunkCount
                guard chunkTotal <= ManifestLimits.maxChunkReferences else {
                    throw .invalid(field: "body", reason: "more than \(ManifestLimits.maxChunkReferences) chunks")
                }
                chunks.reserveCapacity(chunkCount)
                var size = 0
                for _ in 0..<chunkCount {
                    let id = try reader.readDigest("chunk id")
                    let length = try reader.readInt("chunk length", in: 1...ManifestLimits.maxChunkBytes)
                    size += length
                    chunks.append(ChunkReference(id: id, length: length))
                }
                guard size <= ManifestLimits.maxFileBytes else {
                    throw .invalid(field: "file size", reason: "'\(path)' is larger than the format allows")
                }
            case .symlink:
                let value = try reader.readString("symlink target", maxCount: ManifestLimits.maxSymlinkTargetBytes)
                guard !value.isEmpty, !value.utf8.contains(0) else {
                    throw .invalid(field: "symlink target", reason: "empty or contains NUL for '\(path)'")
                }
                // One encoding per tree: a link's mode means nothing on Linux, so it is always 0o777.
                guard mode == 0o777 else { throw .invalid(field: "mode", reason: "symlink '\(path)' must carry 0o777") }
                target = value
            case .directory:
                break
            }
            entries.append(
                ManifestEntry(
                    path: path, kind: kind, mode: UInt32(mode), modificationTime: mtime, chunks: chunks,
                    symlinkTarget: target))
        }
        let extraCount = try reader.readInt("extra field count", in: 0...ManifestLimits.maxExtraEntries)
        var extra: [String: [UInt8]] = [:]
        previous = nil
        for _ in 0..<extraCount {
            let name = try reader.readString("extra field name", maxCount: ManifestLimits.maxExtraNameBytes)
            guard !name.isEmpty else { throw .invalid(field: "extra field name", reason: "empty") }
            try requireStrictlyAscending(name, after: &previous, field: "extra field names")
            let value = try reader.readBytes("extra field '\(name)'", maxCount: ManifestLimits.maxBodyBytes)
            // As for cache key names: canonically equivalent names would collapse into one.
            guard extra.updateValue(value, forKey: name) == nil else {
                throw .invalid(
                    field: "extra field names", reason: "two names are the same text in different Unicode forms")
            }
        }
        try reader.expectEnd("manifest body")
        self.entries = entries
        self.extra = extra
        try Self.validateTree(entries)
    }

    /// Checks what a single path cannot show: no entry below a file or a symlink of the same tree.
    ///
    /// Keyed by the paths' bytes, as the filesystem compares them: Swift's `String` equality is Unicode-canonical, so
    /// an NFC and an NFD spelling of one name would collapse into one key (and a directory could hide a symlink).
    public static func validateTree(_ entries: [ManifestEntry]) throws(FormatError) {
        var kinds: [[UInt8]: EntryKind] = [:]
        kinds.reserveCapacity(entries.count)
        for entry in entries {
            guard kinds.updateValue(entry.kind, forKey: Array(entry.path.utf8)) == nil else {
                throw .unsafePath(path: entry.path, reason: "listed twice")
            }
        }
        for entry in entries {
            for ancestor in RelativePath.ancestors(of: entry.path) {
                if let kind = kinds[Array(ancestor.utf8)], kind != .directory {
                    throw .unsafePath(
                        path: entry.path,
                        reason:
                            "its parent '\(ancestor)' is a \(kind == .symlink ? "symlink" : "file") "
                            + "in the same manifest"
                    )
                }
            }
        }
    }

    /// Validates entries that were built in memory (the same rules a decoder enforces).
    public func validate() throws(FormatError) {
        guard entries.count <= ManifestLimits.maxEntries else {
            throw .invalid(field: "body", reason: "more than \(ManifestLimits.maxEntries) entries")
        }
        var previous: [UInt8]? = nil
        for entry in entries {
            try RelativePath.validate(entry.path)
            try requireStrictlyAscending(entry.path, after: &previous, field: "entry paths")
            guard entry.mode <= ManifestLimits.maxMode else {
                throw .invalid(field: "entry mode", reason: "'\(entry.path)' has mode above 0o777")
            }
            guard entry.modificationTime <= ManifestLimits.maxModificationTime else {
                throw .invalid(field: "entry modification time", reason: "'\(entry.path)' is dated after the year 2262")
            }
            for chunk in entry.chunks where !(1...ManifestLimits.maxChunkBytes).contains(chunk.length) {
                throw .invalid(field: "chunk length", reason: "\(chunk.length) in '\(entry.path)'")
            }
            if entry.kind == .symlink, (entry.symlinkTarget ?? "").isEmpty {
                throw .invalid(field: "symlink target", reason: "empty for '\(entry.path)'")
            }
        }
        try Self.validateTree(entries)
    }
}
