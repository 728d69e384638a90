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
    /// The latest modification time an entry carries, in nanoseconds since the epoch: Int64.max (2262-04-11), the
    /// range of a signed 64-bit nanosecond clock, so that no timespec conversion or "+ 1 s" can overflow. A decoder
    /// refuses later times; a capture clamps to 0...this (a file dated before 1970 is captured at 0).
    public static let maxModificationTime = UInt64(Int64.max)

    /// A stat time (seconds, nanoseconds) as an entry's modification time, clamped to 0...maxModificationTime.
    public static func modificationTime(seconds: Int, nanoseconds: Int) -> UInt64 {
        guard seconds >= 0 else { return 0 }
        let (whole, overflow) = UInt64(seconds).multipliedReportingOverflow(by: 1_000_000_000)
        guard !overflow else { return maxModificationTime }
        let (total, carry) = whole.addingReportingOverflow(UInt64(max(0, min(nanoseconds, 999_999_999))))
        return carry ? maxModificationTime : min(total, maxModificationTime)
    }
}
