import Foundation
import KindlingCrypto
import KindlingTesting
import KindlingWire
import Testing

@testable import KindlingMesh

@Suite("Mesh: LAN discovery", .serialized)
struct LANDiscoveryTests {
    @Test("Announcements decode only for their own mesh, and private-mesh tags are checked")
    func datagrams() throws {
        let open = MeshIdentity.open(name: "office")
        let announcement = LANAnnouncement(meshID: open.id, nodeID: Fixtures.key(1).publicKey, port: 7341)
        #expect(LANAnnouncement.decode(announcement.encoded(secret: nil), mesh: open) == announcement)
        #expect(LANAnnouncement.decode(announcement.encoded(secret: nil), mesh: .open(name: "elsewhere")) == nil)
        let secret = [UInt8](repeating: 3, count: 32)
        let closed = MeshIdentity.private(secret: secret)
        let tagged = LANAnnouncement(meshID: closed.id, nodeID: Fixtures.key(1).publicKey, port: 7341)
        #expect(LANAnnouncement.decode(tagged.encoded(secret: secret), mesh: closed) == tagged)
        #expect(LANAnnouncement.decode(tagged.encoded(secret: [UInt8](repeating: 4, count: 32)), mesh: closed) == nil)
        var forged = tagged.encoded(secret: secret)
        forged[forged.count - 40] ^= 1  // the port, under the tag
        #expect(LANAnnouncement.decode(forged, mesh: closed) == nil)
        #expect(LANAnnouncement.decode(Fixtures.bytes(count: 107, seed: 1), mesh: open) == nil)
    }

    @Test("Nodes of one mesh find each other by multicast on loopback; a node of another mesh is ignored")
    func discovery() async throws {
        let port = Int.random(in: 20_000...60_000)
        let lan = LANConfiguration(
            group: "239.193.75.73", port: port, interface: "127.0.0.1", interval: .milliseconds(300))
        let first = try await TestNode(name: "lan-a", mesh: .open(name: "office"), lan: lan)
        let second = try await TestNode(name: "lan-b", mesh: .open(name: "office"), lan: lan)
        let stranger = try await TestNode(name: "lan-other", mesh: .open(name: "elsewhere"), lan: lan)
        try await withRunningNodes([first, second, stranger]) {
            try await eventually("the two office nodes connect without any configured peer") {
                await first.node.connectedPeers.map(\.nodeID) == [second.node.nodeID]
            }
            try await Task.sleep(for: .seconds(1))
            #expect(await stranger.node.connectedPeers.isEmpty)
            // Whichever heard the other first dialled it (the other may never count a discovery of its own).
            let discovered = await first.node.status().gossip.lanDiscovered + second.node.status().gossip.lanDiscovered
            #expect(discovered >= 1)
        }
    }
}
