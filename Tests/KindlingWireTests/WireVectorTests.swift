import Foundation
import KindlingCrypto
import KindlingManifest
@testable import KindlingWire
import Testing

/// Checks Specs/vectors/wire-v1.json, produced by an independent implementation (tools/spec/wire_vectors.py).
@Suite("Spec test vectors: wire")
struct WireVectorTests {
    static var vectors: [String: Any] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Specs/vectors/wire-v1.json")
        guard let data = try? Data(contentsOf: url), let object = try? JSONSerialization.jsonObject(with: data) else { return [:] }
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
        #expect(MeshIdentity.private(secret: try Self.hex(Self.vectors["privateMeshSecret"])).id.hex == Self.vectors["privateMeshId"] as? String)
    }

    @Test("Hello and Auth frames, transcript and private-mesh keys", arguments: ["open", "private"])
    func handshake(mode: String) throws {
        let block = try #require(Self.vectors[mode] as? [String: Any])
        let mesh: MeshIdentity = mode == "open" ? .open(name: "kindling") : .private(secret: try Self.hex(Self.vectors["privateMeshSecret"]))
        var sessions: [String: HandshakeSession] = [:]
        var hellos: [String: [UInt8]] = [:]
        for (name, role) in [("initiator", HandshakeRole.initiator), ("responder", .responder)] {
            let side = try #require(block[name] as? [String: Any])
            let configuration = HandshakeConfiguration(
                nodeKey: try SigningKey(seed: try Self.hex(side["nodeSeed"])), mesh: mesh,
                listenPort: UInt16(try #require(side["listenPort"] as? Int)), agent: "kindling/test")
            var session = HandshakeSession(
                role: role, configuration: configuration, exchange: EphemeralKeyExchange(seed: try Self.hex(side["exchangeSeed"])),
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
            .have(manifest: chunk, availability: .partial(bitfield: [5])), .catalogDigest(count: 2, digest: chunk),
            .error(code: 3, message: "wrong mesh"),
        ]
        let frames = try #require(Self.vectors["frames"] as? [[String: Any]])
        #expect(frames.count == expected.count)
        for (frame, message) in zip(frames, expected) {
            let body = try Self.frameBody(frame["hex"])
            #expect(message.encoded() == body, "\(frame["message"] ?? "")")
            #expect(try WireMessage.decode(body) == message)
        }
    }
}
