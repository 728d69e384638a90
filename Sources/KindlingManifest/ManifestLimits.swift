/// Hard limits of the manifest format. A decoder rejects anything beyond them before allocating for it.
public enum ManifestLimits {
    public static let maxHeaderBytes = 128 << 10
    public static let maxBodyBytes = 64 << 20
    public static let maxRepositoryBytes = 256
    public static let maxCommitBytes = 128
    public static let maxCacheKeyEntries = 64
    public static let maxCacheKeyNameBytes = 64
    public static let maxCacheKeyValueBytes = 1024
    public static let maxEntries = 1 << 20
    public static let maxPathBytes = 4096
    public static let maxPathComponentBytes = 255
    public static let maxSymlinkTargetBytes = 4096
    /// A chunk of any chunking parameters fits; the standard parameters cut at 256 KiB.
    public static let maxChunkBytes = 1 << 20
    /// 4M chunks (256 GB at 64 KiB): an availability bitfield over them fits in one 512 KiB wire frame.
    public static let maxChunkReferences = 1 << 22
    public static let maxFileBytes = 1 << 44
    public static let maxExtraEntries = 256
    public static let maxExtraNameBytes = 128
    /// Modes carry the permission bits only; set-id and sticky bits are never captured or restored.
    public static let maxMode: UInt32 = 0o777
}
