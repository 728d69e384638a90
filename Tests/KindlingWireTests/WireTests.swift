import KindlingCrypto
import KindlingManifest
import KindlingTesting
import NIOCore
import NIOEmbedded
import Testing

@testable import KindlingWire

@Suite("Wire: messages and framing")
struct WireMessageTests {
    static func sampleMessages() throws -> [WireMessage] {
        let key = Fixtures.key(5)
        let manifest = try Manifest.sign(
            repository: "r/x", commit: "c", createdAt: 1, cacheKey: ["k": "v"], body: ManifestBody(entries: []),
            with: key)
        let id = manifest.id
        return [
            .hello(
                Hello(
                    meshID: id, isPrivate: true, exchangeKey: [UInt8](repeating: 1, count: 32),
                    challenge: [UInt8](repeating: 2, count: 32))),
            .streamHeader([UInt8](repeating: 3, count: 24)),
            .auth(
                Auth(
                    nodeID: key.publicKey, signature: key.sign([1]), listenPort: 7341, capabilities: 1,
                    agent: "kindling/test")),
            .announce(manifest.signed),
            .have(manifest: id, availability: .complete),
            .have(manifest: id, availability: .partial(Bitset(bytes: [0b1010_0001, 0xff]))),
            .haveChunks(manifest: id, indices: [0, 5, 70_000]),
            .holder(HolderNotice(manifest: id, nodeID: key.publicKey, host: "127.0.0.1", port: 9)),
            .catalogDigest(count: 3, digest: id),
            .catalogRequest,
            .catalog(ids: [id, id], more: true),
            .announceRequest(ids: [id]),
            .getBody(manifest: id, offset: 10, length: 100),
            .body(manifest: id, offset: 10, bytes: [1, 2, 3]),
            .getChunk(request: 77, chunk: id),
            .chunk(request: 77, chunk: id, plainLength: 5, compressed: [9, 9]),
            .noChunk(request: 77, chunk: id, reason: .busy),
            .cancel(request: 77),
            .getPeers,
            .peers([PeerAddress(nodeID: key.publicKey, host: "::1", port: 65535)]),
            .ping(123), .pong(UInt64.max),
            .error(code: .wrongMesh, message: "wrong mesh"),
            .trustVersion(0), .trustVersion(UInt64.max), .getTrust(version: 0), .getTrust(version: 7),
            .trustDocument(version: 3, bytes: Array(repeating: 9, count: 1000)), .trustDocument(version: 4, bytes: []),
        ]
    }

    @Test("Every message survives encoding and decoding")
    func roundTrip() throws {
        for message in try Self.sampleMessages() {
            #expect(try WireMessage.decode(message.encoded()) == message)
        }
    }

    @Test("Every truncation of every message is an error, never a crash; trailing bytes too")
    func truncations() throws {
        for message in try Self.sampleMessages() {
            let bytes = message.encoded()
            for length in 0..<bytes.count where !(length == 1 && [.catalogRequest, .getPeers].contains(message.type)) {
                #expect(throws: WireError.self, "\(message.type) cut at \(length)") {
                    _ = try WireMessage.decode(Array(bytes[0..<length]))
                }
            }
            #expect(throws: WireError.self) { _ = try WireMessage.decode(bytes + [0]) }
        }
    }

    @Test("An error message cut to the limit ends on a scalar boundary and is still a valid Error message")
    func errorMessageTruncation() throws {
        // Each filler length puts the limit inside, or just after, a 2-, 3- or 4-byte scalar. Cutting the bytes
        // and repairing them made up to 514 bytes, which the decoder (and so the receiving node) refused.
        let limit = WireLimits.maxErrorMessageBytes
        // "e" + U+0301 (a combining accent): the cut may split a character, never a scalar (found by tools/fuzz).
        for scalar in ["é", "€", "😀", "e\u{301}"] {
            for filler in (limit - 4)...limit {
                let message = String(repeating: "a", count: filler) + scalar + "zz"
                let decoded = try WireMessage.decode(WireMessage.error(code: .shuttingDown, message: message).encoded())
                guard case .error(.shuttingDown, let text)? = decoded else {
                    Issue.record("\(filler) + \(scalar): decoded as \(String(describing: decoded))")
                    continue
                }
                #expect(text.utf8.count <= limit)
                #expect(message.utf8.starts(with: text.utf8), "the sent text is a prefix of the message, no U+FFFD")
                #expect(limit - text.utf8.count < scalar.utf8.count, "nothing more is dropped than the cut scalar")
            }
        }
    }

    @Test("A NoChunk reason other than 0 (not held) or 1 (busy) is malformed, not read as 'not held'")
    func noChunkReason() throws {
        let chunk = try #require(Digest(hex: String(repeating: "22", count: 32)))
        let busy = WireMessage.noChunk(request: 3, chunk: chunk, reason: .busy).encoded()
        #expect(try WireMessage.decode(busy) == .noChunk(request: 3, chunk: chunk, reason: .busy))
        for reason: UInt8 in [2, 0x7f, 0xff] {
            #expect(throws: WireError.self, "reason \(reason)") {
                _ = try WireMessage.decode(Array(busy.dropLast()) + [reason])
            }
        }
    }

    @Test("A trust document up to its limit fits one frame; one byte more is refused")
    func trustDocumentLimit() throws {
        let largest = WireMessage.trustDocument(
            version: UInt64.max, bytes: Array(repeating: 1, count: WireLimits.maxTrustDocumentBytes))
        #expect(largest.encoded().count <= WireLimits.maxFrameBytes)
        #expect(try WireMessage.decode(largest.encoded()) == largest)
        let over = WireMessage.trustDocument(
            version: 1, bytes: Array(repeating: 1, count: WireLimits.maxTrustDocumentBytes + 1))
        #expect(throws: WireError.self) { _ = try WireMessage.decode(over.encoded()) }
    }

    @Test("Unknown core message types are errors; extension types are ignored")
    func unknownTypes() throws {
        #expect(throws: WireError.unknownMessageType(0x55)) { _ = try WireMessage.decode([0x55, 1, 2]) }
        #expect(try WireMessage.decode([0x90, 1, 2, 3]) == nil)
    }

    @Test("The decoder splits frames however the bytes arrive")
    func framing() throws {
        let channel = EmbeddedChannel()
        let limit = FrameLimit()
        limit.raiseToMessageLimit(sealed: false)
        try channel.pipeline.syncOperations.addKindlingFraming(limit: limit)
        let frames: [[UInt8]] = [[1], Array(repeating: 7, count: 70_000), [2, 3]]
        var stream = ByteBuffer()
        for frame in frames {
            stream.writeInteger(UInt32(frame.count))
            stream.writeBytes(frame)
        }
        // Deliver in awkward pieces.
        while stream.readableBytes > 0, let piece = stream.readSlice(length: min(1000, stream.readableBytes)) {
            try channel.writeInbound(piece)
        }
        for frame in frames {
            #expect(try channel.readInbound(as: [UInt8].self) == frame)
        }
        try channel.writeOutbound([UInt8]([4, 5]))
        let written = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(Array(written.readableBytesView) == [0, 0, 0, 2, 4, 5])
        _ = try channel.finish()
    }

    @Test("An absurd length is refused before buffering, both before and after the handshake")
    func absurdLength() throws {
        for raised in [false, true] {
            let channel = EmbeddedChannel()
            let limit = FrameLimit()
            if raised { limit.raiseToMessageLimit(sealed: true) }
            try channel.pipeline.syncOperations.addKindlingFraming(limit: limit)
            var buffer = ByteBuffer()
            buffer.writeInteger(UInt32(raised ? 64 << 20 : 2048))
            buffer.writeBytes([1, 2, 3])
            #expect(throws: WireError.self) { try channel.writeInbound(buffer) }
            _ = try? channel.finish()
        }
    }

    @Test("Frames right after the handshake frames wait, undecoded and unread, until the limit is raised")
    func framesAfterAuthWait() throws {
        let channel = EmbeddedChannel()
        let limit = FrameLimit(handshakeFrames: 2)
        try channel.pipeline.syncOperations.addKindlingFraming(limit: limit)
        // Hello and Auth, then at once a frame above the handshake limit, as an honest peer may send them.
        let frames: [[UInt8]] = [[1, 1], [3, 3], Array(repeating: 0x11, count: 5000)]
        var stream = ByteBuffer()
        for frame in frames {
            stream.writeInteger(UInt32(frame.count))
            stream.writeBytes(frame)
        }
        try channel.writeInbound(stream)
        #expect(try channel.readInbound(as: [UInt8].self) == frames[0])
        #expect(try channel.readInbound(as: [UInt8].self) == frames[1])
        #expect(try channel.readInbound(as: [UInt8].self) == nil, "held while the Auth is verified")
        limit.raiseToMessageLimit(sealed: false)
        channel.resumeFrameDecoding()
        channel.embeddedEventLoop.run()
        #expect(try channel.readInbound(as: [UInt8].self) == frames[2])
        _ = try channel.finish()
    }

    @Test("A stream that ends inside a frame is an error")
    func truncatedFrame() throws {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addKindlingFraming(limit: FrameLimit())
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(100))
        buffer.writeBytes([1, 2, 3])
        try channel.writeInbound(buffer)
        #expect(throws: WireError.self) { _ = try channel.finish() }
    }
}

@Suite("Wire: handshake")
struct HandshakeTests {
    /// Runs both sides of a handshake against each other without I/O.
    static func handshake(
        _ a: HandshakeConfiguration, _ b: HandshakeConfiguration
    ) throws -> (PeerIdentity, PeerIdentity, SecureFraming?, SecureFraming?) {
        var initiator = HandshakeSession(role: .initiator, configuration: a)
        var responder = HandshakeSession(role: .responder, configuration: b)
        let helloA = initiator.helloFrame()
        let helloB = responder.helloFrame()
        let headerA = try initiator.receiveHello(frame: helloB)
        let headerB = try responder.receiveHello(frame: helloA)
        var framingA: SecureFraming?
        var framingB: SecureFraming?
        if let headerA, let headerB {
            framingA = try initiator.receiveStreamHeader(frame: headerB)
            framingB = try responder.receiveStreamHeader(frame: headerA)
        }
        // Auth frames go through the sealed channel in a private mesh.
        func carry(_ frame: [UInt8], from: SecureFraming?, to: SecureFraming?) throws -> [UInt8] {
            guard let from, let to else { return frame }
            return try to.opener.open(from.sealer.seal(frame))
        }
        let peerOfA = try initiator.receiveAuth(frame: try carry(responder.authFrame(), from: framingB, to: framingA))
        let peerOfB = try responder.receiveAuth(frame: try carry(initiator.authFrame(), from: framingA, to: framingB))
        return (peerOfA, peerOfB, framingA, framingB)
    }

    @Test("Open mesh: both sides learn each other's verified node id and listening port")
    func openMesh() throws {
        let a = HandshakeConfiguration(nodeKey: Fixtures.key(1), mesh: .open(), listenPort: 1111)
        let b = HandshakeConfiguration(nodeKey: Fixtures.key(2), mesh: .open(), listenPort: 2222)
        let (peerOfA, peerOfB, framing, _) = try Self.handshake(a, b)
        #expect(peerOfA.nodeID == Fixtures.key(2).publicKey && peerOfA.listenPort == 2222)
        #expect(peerOfB.nodeID == Fixtures.key(1).publicKey && peerOfB.listenPort == 1111)
        #expect(framing == nil)
    }

    @Test("Private mesh: same secret connects and encrypts; a different secret cannot read a frame")
    func privateMesh() throws {
        let secret = Array("a shared secret of thirty-two by".utf8)
        let a = HandshakeConfiguration(nodeKey: Fixtures.key(1), mesh: .private(secret: secret), listenPort: 1)
        let b = HandshakeConfiguration(nodeKey: Fixtures.key(2), mesh: .private(secret: secret), listenPort: 2)
        let (_, _, framingA, framingB) = try Self.handshake(a, b)
        let sealed = try #require(framingA).sealer.seal(Array("chunk bytes".utf8))
        #expect(!sealed.contains(Array("chunk".utf8)))
        #expect(try #require(framingB).opener.open(sealed) == Array("chunk bytes".utf8))

        // A node that copies the mesh id but not the secret gets past Hello, then fails on the first sealed frame.
        let wrong = MeshIdentity(
            id: MeshIdentity.private(secret: secret).id, secret: Array("another secret, also 32 bytes ok".utf8))
        let c = HandshakeConfiguration(nodeKey: Fixtures.key(3), mesh: wrong, listenPort: 3)
        #expect(throws: WireError.decryptionFailed) { _ = try Self.handshake(a, c) }
    }

    @Test("Different meshes, a secret on one side only, and self-connections are refused")
    func refusals() throws {
        let open = HandshakeConfiguration(nodeKey: Fixtures.key(1), mesh: .open(name: "one"), listenPort: 1)
        let other = HandshakeConfiguration(nodeKey: Fixtures.key(2), mesh: .open(name: "two"), listenPort: 2)
        #expect(throws: WireError.wrongMesh) { _ = try Self.handshake(open, other) }
        let privateMesh = MeshIdentity.private(secret: [UInt8](repeating: 1, count: 32))
        let privateNode = HandshakeConfiguration(nodeKey: Fixtures.key(2), mesh: privateMesh, listenPort: 2)
        let openSameID = HandshakeConfiguration(
            nodeKey: Fixtures.key(1), mesh: MeshIdentity(id: privateMesh.id, secret: nil), listenPort: 1)
        #expect(throws: WireError.encryptionMismatch(peerPrivate: true)) {
            _ = try Self.handshake(openSameID, privateNode)
        }
        #expect(throws: WireError.selfConnection) { _ = try Self.handshake(open, open) }
    }

    @Test("A wrong protocol version is refused")
    func versions() throws {
        var session = HandshakeSession(
            role: .initiator,
            configuration: HandshakeConfiguration(nodeKey: Fixtures.key(1), mesh: .open(), listenPort: 1))
        _ = session.helloFrame()
        let future = WireMessage.hello(
            Hello(
                minVersion: 7, maxVersion: 9, meshID: MeshIdentity.open().id, isPrivate: false,
                exchangeKey: [UInt8](repeating: 0, count: 32), challenge: [UInt8](repeating: 0, count: 32))
        ).encoded()
        #expect(throws: WireError.versionMismatch(peerMin: 7, peerMax: 9)) {
            _ = try session.receiveHello(frame: future)
        }
    }

    @Test("An Auth signed for another connection (a replay) does not verify")
    func replayedAuth() throws {
        let a = HandshakeConfiguration(nodeKey: Fixtures.key(1), mesh: .open(), listenPort: 1)
        let b = HandshakeConfiguration(nodeKey: Fixtures.key(2), mesh: .open(), listenPort: 2)
        var first = HandshakeSession(role: .responder, configuration: b)
        var victim = HandshakeSession(role: .initiator, configuration: a)
        var attacker = HandshakeSession(role: .initiator, configuration: a)
        _ = try first.receiveHello(frame: attacker.helloFrame())
        _ = first.helloFrame()
        let recorded = first.authFrame()
        var second = HandshakeSession(role: .responder, configuration: b)
        _ = try victim.receiveHello(frame: second.helloFrame())
        _ = try second.receiveHello(frame: victim.helloFrame())
        #expect(throws: WireError.self) { _ = try victim.receiveAuth(frame: recorded) }
    }
}
