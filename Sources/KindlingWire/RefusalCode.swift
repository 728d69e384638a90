/// The code of an Error frame: why a node refused or closed a connection (Specs/wire.md, "Error codes").
///
/// The wire carries the number (a varint up to 65535); a code this version does not know is kept as `other`, so that
/// decoding and encoding again gives the same bytes.
public enum RefusalCode: Hashable, Sendable, CustomStringConvertible {
    /// Not an Error frame's code: the connection simply closed.
    case closed
    case protocolError
    case versionMismatch
    case wrongMesh
    case authenticationFailed
    case banned
    case tooManyPeers
    case alreadyConnected
    case timeout
    case shuttingDown
    case other(Int)

    public init(code: Int) {
        switch code {
        case 0: self = .closed
        case 1: self = .protocolError
        case 2: self = .versionMismatch
        case 3: self = .wrongMesh
        case 4: self = .authenticationFailed
        case 5: self = .banned
        case 6: self = .tooManyPeers
        case 7: self = .alreadyConnected
        case 8: self = .timeout
        case 9: self = .shuttingDown
        default: self = .other(code)
        }
    }

    /// The number sent on the wire.
    public var code: Int {
        switch self {
        case .closed: return 0
        case .protocolError: return 1
        case .versionMismatch: return 2
        case .wrongMesh: return 3
        case .authenticationFailed: return 4
        case .banned: return 5
        case .tooManyPeers: return 6
        case .alreadyConnected: return 7
        case .timeout: return 8
        case .shuttingDown: return 9
        case .other(let code): return code
        }
    }

    /// The meaning of the code, as Specs/wire.md's table gives it.
    public var reason: String {
        switch self {
        case .closed: return "connection closed"
        case .protocolError: return "protocol error"
        case .versionMismatch: return "no protocol version in common"
        case .wrongMesh: return "another mesh, or a mesh-secret mismatch"
        case .authenticationFailed: return "authentication failed"
        case .banned: return "banned"
        case .tooManyPeers: return "too many peers"
        case .alreadyConnected: return "already connected"
        case .timeout: return "timeout"
        case .shuttingDown: return "shutting down"
        case .other(let code): return "error code \(code)"
        }
    }

    /// What a user can do about a refusal received from a peer.
    public var userText: String {
        switch self {
        case .closed: return "the peer closed the connection"
        case .protocolError: return "the peer found our messages malformed; check that both run the same kindling"
        case .versionMismatch: return "the peer speaks another protocol version; upgrade the older node"
        case .wrongMesh: return "the peer belongs to another mesh; check --mesh-secret on both nodes"
        case .authenticationFailed: return "the peer could not authenticate us; check --mesh-secret on both nodes"
        case .banned: return "the peer banned this node for a while; its message says why"
        case .tooManyPeers: return "the peer has no free slot; this node will try again later"
        case .alreadyConnected: return "already connected to that node (or it is this node itself)"
        case .timeout: return "the peer timed out waiting for us"
        case .shuttingDown: return "the peer is shutting down; this node will try again later"
        case .other(let code): return "the peer refused with code \(code), unknown to this version"
        }
    }

    public var description: String { "\(code) (\(reason))" }
}
