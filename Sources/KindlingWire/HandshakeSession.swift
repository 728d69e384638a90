public import KindlingCrypto
import KindlingManifest
import Synchronization

/// Who opened the TCP connection. Both sides run the same handshake; the role only orders the transcript,
/// picks the key-exchange direction, and is bound into each side's signature (so a signature cannot be reflected).
public enum HandshakeRole: UInt8, Sendable {
    case initiator = 1
    case responder = 2

    var peer: HandshakeRole { self == .initiator ? .responder : .initiator }
}

/// Our side's settings for handshakes.
public struct HandshakeConfiguration: Sendable {
    public var nodeKey: SigningKey
    public var mesh: MeshIdentity
    public var listenPort: UInt16
    public var agent: String

    public init(nodeKey: SigningKey, mesh: MeshIdentity, listenPort: UInt16, agent: String = "kindling/0.1.0") {
        self.nodeKey = nodeKey
        self.mesh = mesh
        self.listenPort = listenPort
        self.agent = agent
    }
}

/// The authenticated peer, once a handshake succeeds.
public struct PeerIdentity: Hashable, Sendable {
    public var nodeID: PublicKey
    public var listenPort: UInt16
    public var agent: String
}

/// The cryptographic half of a handshake, without I/O (Specs/wire.md, "Handshake"):
///
/// 1. each side sends Hello (clear): versions, mesh id, private flag, an ephemeral X25519 key, a 32-byte challenge;
/// 2. in a private mesh, each side derives directional keys from the key exchange bound to the mesh secret and the
///    transcript, and sends its secretstream header (clear); every later frame is sealed;
/// 3. each side sends Auth: its node key and an Ed25519 signature over (domain, role, transcript hash).
///
/// The transcript hash covers both Hello frames, so a signature is fresh and bound to this connection.
public struct HandshakeSession {
    public static let authDomain: [UInt8] = Array("kindling-auth-v1".utf8) + [0]
    public static let keyContext: [UInt8] = Array("kindling-wire-v1".utf8) + [0]

    public let role: HandshakeRole
    private let configuration: HandshakeConfiguration
    private let exchange: EphemeralKeyExchange
    private let challenge: [UInt8]
    private var ownHelloFrame: [UInt8] = []
    private var peerHelloFrame: [UInt8]?
    private var peerHello: Hello?
    private var sealer: FrameSealer?
    private var receiveKey: [UInt8]?

    public init(role: HandshakeRole, configuration: HandshakeConfiguration) {
        self.init(
            role: role, configuration: configuration, exchange: EphemeralKeyExchange(),
            challenge: secureRandomBytes(count: 32))
    }

    /// Fixed ephemeral key and challenge: for the test vectors of Specs/vectors/wire-v1.json.
    init(role: HandshakeRole, configuration: HandshakeConfiguration, exchange: EphemeralKeyExchange, challenge: [UInt8])
    {
        self.role = role
        self.configuration = configuration
        self.exchange = exchange
        self.challenge = challenge
    }

    /// Step 1: our Hello frame.
    public mutating func helloFrame() -> [UInt8] {
        let hello = Hello(
            meshID: configuration.mesh.id, isPrivate: configuration.mesh.isPrivate, exchangeKey: exchange.publicKey,
            challenge: challenge)
        ownHelloFrame = WireMessage.hello(hello).encoded()
        return ownHelloFrame
    }

    /// Step 1, receiving: checks the peer's Hello. Returns our stream header frame when the mesh is private.
    public mutating func receiveHello(frame: [UInt8]) throws(WireError) -> [UInt8]? {
        guard case .hello(let hello)? = try WireMessage.decode(frame) else {
            throw .unexpectedMessage("expected hello")
        }
        guard hello.minVersion <= WireLimits.protocolVersion && hello.maxVersion >= WireLimits.protocolVersion else {
            throw .versionMismatch(peerMin: hello.minVersion, peerMax: hello.maxVersion)
        }
        guard hello.meshID == configuration.mesh.id else { throw .wrongMesh }
        guard hello.isPrivate == configuration.mesh.isPrivate else {
            throw .encryptionMismatch(peerPrivate: hello.isPrivate)
        }
        peerHelloFrame = frame
        peerHello = hello
        guard let keys = try sessionKeys() else { return nil }
        do throws(CryptoError) {
            let sealer = FrameSealer(try SecretStreamSender(key: keys.transmit))
            self.sealer = sealer
            receiveKey = keys.receive
            return WireMessage.streamHeader(sealer.header).encoded()
        } catch {
            throw .authenticationFailed("\(error)")
        }
    }

    /// Our sending half once our stream header is made (private meshes): after we sent it, even an Error frame
    /// that ends a failed handshake must be sealed.
    public var streamSealer: FrameSealer? { sealer }

    /// The directional keys of a private mesh, bound to the secret and the transcript (after the peer's Hello).
    func sessionKeys() throws(WireError) -> SessionKeys? {
        guard let secret = configuration.mesh.secret, let hello = peerHello else { return nil }
        let raw: SessionKeys
        do throws(CryptoError) {
            raw =
                role == .initiator
                ? try exchange.clientSessionKeys(serverPublicKey: hello.exchangeKey)
                : try exchange.serverSessionKeys(clientPublicKey: hello.exchangeKey)
        } catch {
            throw .authenticationFailed("invalid key exchange value")
        }
        return raw.bound(toSecret: secret, context: Self.keyContext + transcriptHash().bytes)
    }

    /// Step 2, receiving (private meshes): the peer's stream header. Returns the sealer and opener for all later
    /// frames.
    public mutating func receiveStreamHeader(frame: [UInt8]) throws(WireError) -> SecureFraming {
        guard case .streamHeader(let header)? = try WireMessage.decode(frame), let receiveKey, let sealer else {
            throw .unexpectedMessage("expected stream header")
        }
        do throws(CryptoError) {
            return SecureFraming(
                sealer: sealer, opener: FrameOpener(try SecretStreamReceiver(key: receiveKey, header: header)))
        } catch {
            throw .decryptionFailed
        }
    }

    /// Step 3: our Auth frame (seal it first in a private mesh).
    public func authFrame() -> [UInt8] {
        let signature = configuration.nodeKey.sign(Self.signedMessage(role: role, transcript: transcriptHash()))
        return WireMessage.auth(
            Auth(
                nodeID: configuration.nodeKey.publicKey, signature: signature, listenPort: configuration.listenPort,
                agent: configuration.agent)
        ).encoded()
    }

    /// Step 3, receiving: verifies the peer's identity proof.
    public func receiveAuth(frame: [UInt8]) throws(WireError) -> PeerIdentity {
        guard case .auth(let auth)? = try WireMessage.decode(frame) else { throw .unexpectedMessage("expected auth") }
        let message = Self.signedMessage(role: role.peer, transcript: transcriptHash())
        guard auth.nodeID.isValidSignature(auth.signature, for: message) else {
            throw .authenticationFailed("signature over the handshake does not verify")
        }
        guard auth.nodeID != configuration.nodeKey.publicKey else { throw .selfConnection }
        return PeerIdentity(nodeID: auth.nodeID, listenPort: auth.listenPort, agent: auth.agent)
    }

    /// BLAKE2b-256 of the initiator's Hello frame followed by the responder's.
    func transcriptHash() -> Digest {
        let peer = peerHelloFrame ?? []
        return Blake2b.hash(role == .initiator ? ownHelloFrame + peer : peer + ownHelloFrame)
    }

    static func signedMessage(role: HandshakeRole, transcript: Digest) -> [UInt8] {
        authDomain + [role.rawValue] + transcript.bytes
    }
}

/// Seals outgoing and opens incoming frame bodies of a private-mesh connection.
public struct SecureFraming: Sendable {
    public let sealer: FrameSealer
    public let opener: FrameOpener
}

/// The sending half of a connection's secret stream. Frames must be sealed in the order they are written; the
/// connection's single writer task does both, the lock only makes the hand-over between tasks safe.
public final class FrameSealer: Sendable {
    private let sender: Mutex<SecretStreamSender>
    public let header: [UInt8]

    init(_ sender: sending SecretStreamSender) {
        header = sender.header
        self.sender = Mutex(sender)
    }

    public func seal(_ frame: [UInt8]) -> [UInt8] {
        sender.withLock { $0.seal(frame) }
    }
}

/// The receiving half of a connection's secret stream, used by the connection's reader task.
public final class FrameOpener: Sendable {
    private let receiver: Mutex<SecretStreamReceiver>

    init(_ receiver: sending SecretStreamReceiver) {
        self.receiver = Mutex(receiver)
    }

    public func open(_ frame: [UInt8]) throws(WireError) -> [UInt8] {
        let result = receiver.withLock { receiver in Result { () throws(CryptoError) in try receiver.open(frame) } }
        do throws(CryptoError) { return try result.get() } catch { throw .decryptionFailed }
    }
}
