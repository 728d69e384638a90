import Foundation
import KindlingCrypto
import KindlingManifest
import Testing

@testable import KindlingWire

/// Checks Specs/vectors/wire-v1.json, produced by an independent implementation (tools/spec/wire_vectors.py).
@Suite("Spec test vectors: wire")
struct WireVectorTests {
    static var vectors: [String: Any] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Specs/vectors/wire-v1.json")
        guard let data = try? Data(contentsOf: url), let object = try? JSONSerialization.jsonObject(with: data) else {
            return [:]
        }
        return object as? [String: Any] ?? [:]
    }

    static func hex(_ value: Any?) throws -> [UInt8] {
        try Hex.decode(try #require(value as? String))
    }

    static func frameBody(_ hexFrame: Any?) throws -> [UInt8] {
        Array(try hex(hexFrame).dropFirst(4))
    }

    @Test("Mesh ids")
    func meshIDs() throws {
        #expect(MeshIdentity.open(name: "kindling").id.hex == Self.vectors["openMeshId"] as? String)
        #expect(
            MeshIdentity.private(secret: try Self.hex(Self.vectors["privateMeshSecret"])).id.hex == Self.vectors[
                "privateMeshId"] as? String)
    }

    @Test("Hello and Auth frames, transcript and private-mesh keys", arguments: ["open", "private"])
    func handshake(mode: String) throws {
        let block = try #require(Self.vectors[mode] as? [String: Any])
        let mesh: MeshIdentity =
            mode == "open" ? .open(name: "kindling") : .private(secret: try Self.hex(Self.vectors["privateMeshSecret"]))
        var sessions: [String: HandshakeSession] = [:]
        var hellos: [String: [UInt8]] = [:]
        for (name, role) in [("initiator", HandshakeRole.initiator), ("responder", .responder)] {
            let side = try #require(block[name] as? [String: Any])
            let configuration = HandshakeConfiguration(
                nodeKey: try SigningKey(seed: try Self.hex(side["nodeSeed"])), mesh: mesh,
                listenPort: UInt16(try #require(side["listenPort"] as? Int)), agent: "kindling/test")
            var session = HandshakeSession(
                role: role, configuration: configuration,
                exchange: EphemeralKeyExchange(seed: try Self.hex(side["exchangeSeed"])),
                challenge: try Self.hex(side["challenge"]))
            let hello = session.helloFrame()
            #expect(hello == (try Self.frameBody(side["helloFrame"])), "\(mode) \(name) hello")
            hellos[name] = hello
            sessions[name] = session
        }
        for (name, peer) in [("initiator", "responder"), ("responder", "initiator")] {
            var session = try #require(sessions[name])
            _ = try session.receiveHello(frame: try #require(hellos[peer]))
            let side = try #require(block[name] as? [String: Any])
            #expect(session.transcriptHash().hex == block["transcript"] as? String)
            #expect(session.authFrame() == (try Self.hex(side["authBody"])), "\(mode) \(name) auth")
            if mode == "private" {
                let keys = try #require(try session.sessionKeys())
                #expect(Hex.encode(keys.receive) == side["receiveKey"] as? String)
                #expect(Hex.encode(keys.transmit) == side["transmitKey"] as? String)
            }
            sessions[name] = session
        }
        // And each side accepts the other's Auth from the vectors.
        let initiator = try #require(sessions["initiator"])
        let responderSide = try #require(block["responder"] as? [String: Any])
        let identity = try initiator.receiveAuth(frame: try Self.hex(responderSide["authBody"]))
        #expect(identity.listenPort == 7342)
    }

    @Test("Message frames")
    func frames() throws {
        let chunk = try #require(Digest(hex: String(repeating: "11", count: 32)))
        let expected: [WireMessage] = [
            .ping(300), .getChunk(request: 7, chunk: chunk), .noChunk(request: 7, chunk: chunk, reason: .busy),
            .have(manifest: chunk, availability: .partial(Bitset(bytes: [5]))), .catalogDigest(count: 2, digest: chunk),
            .error(code: .wrongMesh, message: "wrong mesh"), .noChunk(request: 0, chunk: chunk, reason: .notHeld),
            .haveChunks(manifest: chunk, indices: [0, 4_194_303]), .trustVersion(300), .getTrust(version: 0),
            .trustDocument(version: 2, bytes: [1, 2, 3]), .trustDocument(version: 5, bytes: []),
        ]
        let frames = try #require(Self.vectors["frames"] as? [[String: Any]])
        #expect(frames.count == expected.count)
        for (frame, message) in zip(frames, expected) {
            let body = try Self.frameBody(frame["hex"])
            #expect(message.encoded() == body, "\(frame["message"] ?? "")")
            #expect(try WireMessage.decode(body) == message)
        }
    }

    @Test("Malformed frames are refused: index at the limit, bad NoChunk reason, long Error, oversize trust document")
    func malformedFrames() throws {
        let frames = try #require(Self.vectors["malformedFrames"] as? [[String: Any]])
        #expect(frames.count == 6)
        for frame in frames {
            let body = try Self.frameBody(frame["hex"])
            #expect(throws: WireError.self, "\(frame["message"] ?? "")") { _ = try WireMessage.decode(body) }
        }
    }

    @Test("Extension types a node does not know are skipped, not refused (how older nodes see trust messages)")
    func unknownExtensions() throws {
        let frames = try #require(Self.vectors["unknownExtensionFrames"] as? [[String: Any]])
        #expect(frames.count == 2)
        for frame in frames {
            #expect(try WireMessage.decode(try Self.frameBody(frame["hex"])) == nil, "\(frame["message"] ?? "")")
        }
    }

    @Test("An Error message over 512 bytes is cut on a scalar boundary at or below the limit")
    func errorTruncation() throws {
        let cases = try #require(Self.vectors["errorTruncation"] as? [[String: Any]])
        #expect(cases.count == 5)
        for item in cases {
            let message = try #require(item["message"] as? String)
            let code = try #require(item["code"] as? Int)
            let body = try Self.frameBody(item["hex"])
            #expect(
                WireMessage.error(code: RefusalCode(code: code), message: message).encoded() == body,
                "\(message.utf8.count) bytes")
            guard case .error(RefusalCode(code: code), let sent)? = try WireMessage.decode(body) else {
                Issue.record("the vector does not decode as an Error")
                continue
            }
            #expect(message.utf8.starts(with: sent.utf8))
        }
    }

    @Test("Sealed frames: a fixed key and stream header open the given ciphertexts in order, and only in order")
    func sealedFrames() throws {
        let block = try #require(Self.vectors["sealed"] as? [String: Any])
        let key = try Self.hex(block["key"])
        let header = try Self.hex(block["header"])
        let frames = try #require(block["frames"] as? [[String: Any]])
        #expect(frames.count == 5)
        let opener = FrameOpener(try SecretStreamReceiver(key: key, header: header))
        for frame in frames {
            let sealed = try Self.hex(frame["sealed"])
            #expect(Array(try Self.hex(frame["frame"]).dropFirst(4)) == sealed)
            #expect(try opener.open(sealed) == (try Self.hex(frame["plain"])))
        }
        // Out of order (the second frame first), altered, or under another header: nothing opens.
        let second = try Self.hex(frames[1]["sealed"])
        #expect(throws: WireError.decryptionFailed) {
            _ = try FrameOpener(try SecretStreamReceiver(key: key, header: header)).open(second)
        }
        var altered = try Self.hex(frames[0]["sealed"])
        altered[altered.count / 2] ^= 1
        #expect(throws: WireError.decryptionFailed) {
            _ = try FrameOpener(try SecretStreamReceiver(key: key, header: header)).open(altered)
        }
        var otherHeader = header
        otherHeader[0] ^= 1
        #expect(throws: WireError.decryptionFailed) {
            _ = try FrameOpener(try SecretStreamReceiver(key: key, header: otherHeader)).open(
                try Self.hex(frames[0]["sealed"]))
        }
    }
}
