public import KindlingManifest

/// Why a connection was refused or closed. Sent to the peer as an Error frame where possible.
public enum WireError: Error, Equatable, Sendable, CustomStringConvertible {
    case frameTooLarge(length: Int, limit: Int)
    case malformed(FormatError)
    case unknownMessageType(UInt8)
    case unexpectedMessage(String)
    case versionMismatch(peerMin: UInt64, peerMax: UInt64)
    case wrongMesh
    case encryptionMismatch(peerPrivate: Bool)
    case authenticationFailed(String)
    case decryptionFailed
    case selfConnection
    case timeout(String)
    case closedByPeer(code: RefusalCode, message: String)
    case connectionClosed
    /// The connection ended inside a frame: a protocol error, but also what a crashed or killed peer leaves.
    case endedMidFrame

    /// True for a peer that sent bytes that are not the protocol (garbage, oversize or undecryptable frames, a
    /// lying reply): after the handshake such a peer is banned. A closed or cut connection is not an offence.
    public var isOffence: Bool {
        switch self {
        case .frameTooLarge, .malformed, .unknownMessageType, .unexpectedMessage, .decryptionFailed: return true
        case .versionMismatch, .wrongMesh, .encryptionMismatch, .authenticationFailed, .selfConnection, .timeout,
            .closedByPeer, .connectionClosed, .endedMidFrame:
            return false
        }
    }

    /// The code of an Error frame (Specs/wire.md, "Error codes").
    public var code: RefusalCode {
        switch self {
        case .frameTooLarge, .malformed, .unknownMessageType, .unexpectedMessage, .endedMidFrame: return .protocolError
        case .versionMismatch: return .versionMismatch
        case .wrongMesh, .encryptionMismatch: return .wrongMesh
        case .authenticationFailed, .decryptionFailed: return .authenticationFailed
        case .selfConnection: return .alreadyConnected
        case .timeout: return .timeout
        case .closedByPeer(let code, _): return code
        case .connectionClosed: return .closed
        }
    }

    public var description: String {
        switch self {
        case .frameTooLarge(let length, let limit): return "frame of \(length) bytes exceeds the limit of \(limit)"
        case .malformed(let error): return "malformed message: \(error)"
        case .unknownMessageType(let type): return "unknown message type 0x\(String(type, radix: 16))"
        case .unexpectedMessage(let what): return "unexpected message: \(what)"
        case .versionMismatch(let min, let max):
            return "peer speaks protocol versions \(min)...\(max), we speak \(WireLimits.protocolVersion)"
        case .wrongMesh: return "peer belongs to another mesh"
        case .encryptionMismatch(let peerPrivate):
            return peerPrivate ? "peer requires a mesh secret we do not use" : "peer does not use our mesh secret"
        case .authenticationFailed(let why): return "peer failed authentication: \(why)"
        case .decryptionFailed: return "could not decrypt the peer's messages: wrong mesh secret"
        case .selfConnection: return "connected to ourselves"
        case .timeout(let what): return "timed out waiting for \(what)"
        case .closedByPeer(let code, let message):
            return "peer closed the connection (code \(code.code), \(code.userText)): \(message)"
        case .connectionClosed: return "connection closed"
        case .endedMidFrame: return "the connection ended inside a frame"
        }
    }
}
