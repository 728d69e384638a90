import Foundation
import KindlingCrypto
import KindlingWire
import Testing

@testable import KindlingMesh

/// Checks the LAN announcements of Specs/vectors/wire-v1.json, produced by tools/spec/wire_vectors.py.
@Suite("Spec test vectors: LAN announcements")
struct LANVectorTests {
    static var vectors: [String: Any] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Specs/vectors/wire-v1.json")
        guard let data = try? Data(contentsOf: url), let object = try? JSONSerialization.jsonObject(with: data) else {
            return [:]
        }
        return object as? [String: Any] ?? [:]
    }

    @Test("Open and private datagrams decode to the vector's node and port, and encode to the same bytes")
    func datagrams() throws {
        let vectors = Self.vectors
        let secret = try Hex.decode(try #require(vectors["privateMeshSecret"] as? String))
        let meshes: [String: MeshIdentity] = ["open": .open(name: "kindling"), "private": .private(secret: secret)]
        let datagrams = try #require(vectors["lan"] as? [[String: Any]])
        #expect(datagrams.count == 2)
        for item in datagrams {
            let name = try #require(item["mesh"] as? String)
            let mesh = try #require(meshes[name])
            let bytes = try Hex.decode(try #require(item["datagram"] as? String))
            let nodeID = try PublicKey(text: try #require(item["nodeId"] as? String))
            let port = UInt16(try #require(item["port"] as? Int))
            let announcement = try #require(LANAnnouncement.decode(bytes, mesh: mesh), "\(name) datagram")
            #expect(announcement == LANAnnouncement(meshID: mesh.id, nodeID: nodeID, port: port))
            #expect(announcement.encoded(secret: mesh.secret) == bytes)
            // The other mesh ignores it; in the private mesh, so does this mesh once any byte is changed (the tag).
            let other = try #require(meshes[name == "open" ? "private" : "open"])
            #expect(LANAnnouncement.decode(bytes, mesh: other) == nil)
            if name == "private" {
                for index in [0, 8, 20, 50, 73, bytes.count - 1] {
                    var altered = bytes
                    altered[index] ^= 1
                    #expect(LANAnnouncement.decode(altered, mesh: mesh) == nil, "byte \(index) changed")
                }
            }
        }
    }
}
