import KindlingManifest

/// Hard limits of the wire protocol (Specs/wire.md, "Limits"). Anything beyond them closes the connection.
public enum WireLimits {
    public static let protocolVersion: UInt64 = 1
    /// Frames before the handshake completes (unauthenticated peers) may not exceed this.
    public static let maxHandshakeFrameBytes = 1024
    /// The largest frame after the handshake: a maximum-size chunk, compressed at its worst, plus its fields.
    public static let maxFrameBytes = (1 << 20) + (64 << 10)
    /// Secretstream adds this much to every sealed frame.
    public static let sealOverhead = 17
    public static let maxCatalogIDsPerFrame = 4096
    public static let maxAnnounceRequestIDs = 1024
    public static let maxPeersPerFrame = 64
    public static let maxHaveIndicesPerFrame = 16384
    public static let maxBodyPieceBytes = 512 << 10
    public static let maxHostBytes = 255
    public static let maxAgentBytes = 64
    public static let maxErrorMessageBytes = 512
    /// The largest trust document a TrustDocument frame carries (`SignedTrustDocument.maximumEncodedSize`).
    public static let maxTrustDocumentBytes = SignedTrustDocument.maximumEncodedSize
    /// The largest head record a HeadRecord frame carries (`SignedHeadRecord.maximumEncodedSize`).
    public static let maxHeadRecordBytes = SignedHeadRecord.maximumEncodedSize
}
