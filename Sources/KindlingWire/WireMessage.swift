public import KindlingCrypto
public import KindlingManifest

/// The message types of protocol version 1 (Specs/wire.md, "Messages").
/// Types 0x80 and above are extensions a node may ignore; an unknown type below 0x80 is a protocol error. The trust
/// document messages are extensions, so that a node that predates them skips them (Specs/wire.md, "Trust documents").
public enum MessageType: UInt8, Sendable {
    case hello = 0x01
    case streamHeader = 0x02
    case auth = 0x03
    case announce = 0x10
    case have = 0x11
    case haveChunks = 0x12
    case holder = 0x13
    case catalogDigest = 0x14
    case catalogRequest = 0x15
    case catalog = 0x16
    case announceRequest = 0x17
    case getBody = 0x20
    case body = 0x21
    case getChunk = 0x22
    case chunk = 0x23
    case noChunk = 0x24
    case cancel = 0x25
    case getPeers = 0x30
    case peers = 0x31
    case ping = 0x40
    case pong = 0x41
    case error = 0x7f
    case trustVersion = 0x80
    case getTrust = 0x81
    case trustDocument = 0x82
    case headRecord = 0x83

    public static let firstExtensionType: UInt8 = 0x80
}

/// The first message of each side, in the clear.
public struct Hello: Hashable, Sendable {
    public static let magic: [UInt8] = Array("KNDL".utf8)
    public var minVersion: UInt64
    public var maxVersion: UInt64
    public var meshID: Digest
    public var isPrivate: Bool
    public var exchangeKey: [UInt8]
    public var challenge: [UInt8]

    public init(
        minVersion: UInt64 = WireLimits.protocolVersion, maxVersion: UInt64 = WireLimits.protocolVersion,
        meshID: Digest, isPrivate: Bool, exchangeKey: [UInt8], challenge: [UInt8]
    ) {
        self.minVersion = minVersion
        self.maxVersion = maxVersion
        self.meshID = meshID
        self.isPrivate = isPrivate
        self.exchangeKey = exchangeKey
        self.challenge = challenge
    }
}

/// Proof of node identity: the node's Ed25519 key and its signature over the handshake transcript.
public struct Auth: Hashable, Sendable {
    public var nodeID: PublicKey
    public var signature: Signature
    /// The TCP port the node accepts connections on, 0 if it does not listen.
    public var listenPort: UInt16
    public var capabilities: UInt64
    public var agent: String

    public init(nodeID: PublicKey, signature: Signature, listenPort: UInt16, capabilities: UInt64 = 0, agent: String) {
        self.nodeID = nodeID
        self.signature = signature
        self.listenPort = listenPort
        self.capabilities = capabilities
        self.agent = agent
    }
}

/// What a node holds of one manifest: on the wire (Have), what a peer holds as far as we know, and what we hold
/// ourselves. One type for all three, so that no conversion sits between them.
public enum Availability: Hashable, Sendable {
    case complete
    /// Bit i (least significant bit first within each byte) is set when the node holds unique chunk i of the
    /// manifest (unique chunks in order of first appearance in the body). Its bytes are sent as they are.
    case partial(Bitset)

    public func has(_ index: Int) -> Bool {
        switch self {
        case .complete: return true
        case .partial(let bits): return bits.contains(index)
        }
    }

    public var isComplete: Bool {
        if case .complete = self { return true }
        return false
    }
}

/// "Node X, reachable at host:port, holds manifest M": how availability spreads beyond direct neighbours.
public struct HolderNotice: Hashable, Sendable {
    public var manifest: Digest
    public var nodeID: PublicKey
    public var host: String
    public var port: UInt16

    public init(manifest: Digest, nodeID: PublicKey, host: String, port: UInt16) {
        self.manifest = manifest
        self.nodeID = nodeID
        self.host = host
        self.port = port
    }
}

/// A peer address for peer exchange.
public struct PeerAddress: Hashable, Sendable {
    public var nodeID: PublicKey
    public var host: String
    public var port: UInt16

    public init(nodeID: PublicKey, host: String, port: UInt16) {
        self.nodeID = nodeID
        self.host = host
        self.port = port
    }
}

public enum NoChunkReason: UInt8, Sendable {
    /// The node does not hold the chunk (or it failed verification there).
    case notHeld = 0
    /// The node is serving its limit; ask again later or ask someone else.
    case busy = 1
}

/// One message of the protocol, decoded.
public enum WireMessage: Hashable, Sendable {
    case hello(Hello)
    case streamHeader([UInt8])
    case auth(Auth)
    case announce(SignedHeader)
    case have(manifest: Digest, availability: Availability)
    case haveChunks(manifest: Digest, indices: [UInt32])
    case holder(HolderNotice)
    case catalogDigest(count: Int, digest: Digest)
    case catalogRequest
    case catalog(ids: [Digest], more: Bool)
    case announceRequest(ids: [Digest])
    case getBody(manifest: Digest, offset: Int, length: Int)
    case body(manifest: Digest, offset: Int, bytes: [UInt8])
    case getChunk(request: UInt32, chunk: Digest)
    case chunk(request: UInt32, chunk: Digest, plainLength: Int, compressed: [UInt8])
    case noChunk(request: UInt32, chunk: Digest, reason: NoChunkReason)
    case cancel(request: UInt32)
    case getPeers
    case peers([PeerAddress])
    case ping(UInt64)
    case pong(UInt64)
    case error(code: RefusalCode, message: String)
    /// The version of the root-signed trust document the sender holds (0: none).
    case trustVersion(UInt64)
    /// Asks for the trust document of this version (0: the newest the receiver holds).
    case getTrust(version: UInt64)
    /// One trust document's bytes (`SignedTrustDocument.encoded()`), or none (empty) when the sender does not hold
    /// the version asked for. `version` echoes the request; the bytes are checked by the receiver's trust update.
    case trustDocument(version: UInt64, bytes: [UInt8])
    /// One signed head record's bytes (`SignedHeadRecord.encoded()`), checked by the receiver (Specs/freshness.md).
    case headRecord([UInt8])

    public var type: MessageType {
        switch self {
        case .hello: return .hello
        case .streamHeader: return .streamHeader
        case .auth: return .auth
        case .announce: return .announce
        case .have: return .have
        case .haveChunks: return .haveChunks
        case .holder: return .holder
        case .catalogDigest: return .catalogDigest
        case .catalogRequest: return .catalogRequest
        case .catalog: return .catalog
        case .announceRequest: return .announceRequest
        case .getBody: return .getBody
        case .body: return .body
        case .getChunk: return .getChunk
        case .chunk: return .chunk
        case .noChunk: return .noChunk
        case .cancel: return .cancel
        case .getPeers: return .getPeers
        case .peers: return .peers
        case .ping: return .ping
        case .pong: return .pong
        case .error: return .error
        case .trustVersion: return .trustVersion
        case .getTrust: return .getTrust
        case .trustDocument: return .trustDocument
        case .headRecord: return .headRecord
        }
    }
}
