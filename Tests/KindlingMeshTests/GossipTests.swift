import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingStore
import KindlingTesting
import KindlingWire
import NIOCore
import Testing

@testable import KindlingMesh

@Suite("Mesh: gossip", .serialized)
struct GossipTests {
    @Test("An announcement travels a chain of nodes, is stored once by each, and is relayed once per link")
    func relayAlongAChain() async throws {
        let a = try await TestNode(name: "a")
        let b = try await TestNode(name: "b", peers: [a.address], peerExchange: false)
        let c = try await TestNode(name: "c", peers: [b.address], peerExchange: false)
        let data = TemporaryDirectory("data")
        let tree = try makeTree(data, files: 2, bytesPerFile: 100_000)
        try await withRunningNodes([a, b, c]) {
            try await eventually("b and c connected") { await b.node.connectedPeers.count == 2 }
            let manifest = try await a.publish(tree, commit: "c1")
            try await eventually("c learns the snapshot through b") { await c.catalogContains(manifest.id) }
            // Stored by c's store too (header only: c did not ask for the data).
            #expect(try c.store.signedHeader(manifest.id) == manifest.signed)
            #expect(try c.store.manifest(manifest.id) == nil)
            let bStatus = await b.node.status()
            #expect(bStatus.gossip.accepted == 1)
            #expect(bStatus.gossip.relayed == 1)  // to c only, not back to a
            // Re-announcing is a duplicate everywhere, relayed by no one.
            try await a.node.announceLocal(manifest.id)
            try await Task.sleep(for: .milliseconds(300))
            #expect(await b.node.status().gossip.relayed == 1)
            #expect(await c.node.status().gossip.accepted == 1)
        }
    }

    @Test("A node that joins late catches up by anti-entropy")
    func antiEntropy() async throws {
        let a = try await TestNode(name: "a")
        let data = TemporaryDirectory("data")
        var ids: [Digest] = []
        for commit in 0..<3 {
            ids.append(
                try await a.publish(
                    try makeTree(data, files: 1, bytesPerFile: 50_000, seed: UInt64(commit)), commit: "c\(commit)"
                ).id)
        }
        let late = try await TestNode(name: "late", peers: [a.address])
        let wanted = ids
        try await withRunningNodes([a, late]) {
            try await eventually("late node learns all three") {
                for id in wanted where !(await late.catalogContains(id)) { return false }
                return true
            }
        }
    }

    @Test("Forged, untrusted and tampered announcements are dropped, not relayed, and the sender is punished")
    func forgedAnnouncements() async throws {
        let target = try await TestNode(name: "target")
        let bystander = try await TestNode(name: "bystander", peers: [target.address], peerExchange: false)
        let stranger = Fixtures.key(99)
        try await withRunningNodes([target, bystander]) {
            try await eventually("bystander connected") { await target.node.connectedPeers.count == 1 }
            // 1: a valid signature by a key nobody trusts: dropped, a strike, not a ban.
            let untrusted = try Manifest.sign(
                repository: "demo/ws", commit: "evil", createdAt: Date().nanosecondsSinceEpoch, cacheKey: [:],
                body: ManifestBody(entries: []), with: stranger)
            let rogue = try await RogueClient.connect(to: target.port)
            let outcome = try await rogue.run { frames, outbound in
                try await outbound.write(WireMessage.announce(untrusted.signed).encoded())
                // 2: bors's real signature over a header whose commit was changed afterwards.
                let genuine = try Manifest.sign(
                    repository: "demo/ws", commit: "good", createdAt: Date().nanosecondsSinceEpoch, cacheKey: [:],
                    body: ManifestBody(entries: []), with: TestTrust.bors)
                var header = genuine.header
                header.commit = "evil"
                let tampered = try SignedHeader(headerBytes: header.encoded(), signature: genuine.signed.signature)
                try await outbound.write(WireMessage.announce(tampered).encoded())
                return (await rogue.drain(&frames, timeout: .seconds(5)), tampered.id)
            }
            let ((messages, closedByNode), tamperedID) = outcome
            #expect(closedByNode, "the node must disconnect a peer that forges signatures")
            #expect(messages.contains { if case .error(.banned, _) = $0 { true } else { false } })
            #expect(!(await target.catalogContains(untrusted.id)))
            #expect(!(await target.catalogContains(tamperedID)))
            #expect(try target.store.signedHeader(untrusted.id) == nil)
            try await Task.sleep(for: .milliseconds(300))
            #expect(!(await bystander.catalogContains(untrusted.id)))
            #expect(!(await bystander.catalogContains(tamperedID)))
            let status = await target.node.status()
            #expect(status.gossip.rejected == 2)
            #expect(status.gossip.relayed == 0)
            #expect(status.bannedPeers == 1)
            // The banned node cannot come back: it is told so and disconnected right after the handshake.
            let again = try await RogueClient.connect(to: target.port, key: rogue.key)
            let (refusal, refusedAndClosed) = try await again.run { frames, _ in
                await again.drain(&frames, timeout: .seconds(5))
            }
            #expect(refusedAndClosed)
            #expect(refusal.contains { if case .error(.banned, _) = $0 { true } else { false } })
        }
    }

    @Test("A node following a repository prefetches each new snapshot as soon as it hears of it")
    func follow() async throws {
        let seed = try await TestNode(name: "seed")
        let cache = try await TestNode(name: "cache", peers: [seed.address], follow: ["demo/*"])
        let data = TemporaryDirectory("data")
        let tree = try makeTree(data, files: 3, bytesPerFile: 300_000)
        try await withRunningNodes([seed, cache]) {
            try await eventually("connected") { await cache.node.connectedPeers.count == 1 }
            let manifest = try await seed.publish(tree, commit: "c1")
            try await eventually("the cache holds every chunk") {
                guard let stored = try cache.store.manifest(manifest.id) else { return false }
                return try cache.store.missingChunks(of: stored).isEmpty
            }
            let other = try await seed.publish(
                try makeTree(data, files: 1, bytesPerFile: 1000, seed: 9), repository: "other/repo", commit: "x")
            try await eventually("the cache hears of the other repository") { await cache.catalogContains(other.id) }
            try await Task.sleep(for: .milliseconds(300))
            #expect(try cache.store.manifest(other.id) == nil, "not followed, so not fetched")
        }
    }
}

@Suite("Mesh: availability beyond neighbours", .serialized)
struct HolderNoticeTests {
    @Test("A node fetches from a holder it heard of only through a neighbour's holder notice")
    func holderNotices() async throws {
        // seed — relay — downloader, peer exchange off: the downloader is not configured to reach the seed.
        let seed = try await TestNode(name: "seed", peerExchange: false)
        let relay = try await TestNode(name: "relay", peers: [seed.address], peerExchange: false)
        let downloader = try await TestNode(name: "dev", peers: [relay.address], peerExchange: false)
        let data = TemporaryDirectory("data")
        let manifest = try await seed.publish(try makeTree(data, files: 2, bytesPerFile: 500_000), commit: "c1")
        try await withRunningNodes([seed, relay, downloader]) {
            try await eventually("the downloader knows the snapshot") { await downloader.catalogContains(manifest.id) }
            #expect(await downloader.node.connectedPeers.map(\.nodeID) == [relay.node.nodeID])
            let result = try await downloader.node.fetch(manifest.id)
            #expect(result.fetchedBytes == manifest.header.fileByteCount)
            // The relay holds nothing: every byte came from the seed, reached through the notice.
            #expect(result.wireBytesByPeer[seed.node.nodeID.text] ?? 0 > 0, "\(result.wireBytesByPeer)")
            #expect(await downloader.node.connectedPeers.contains { $0.nodeID == seed.node.nodeID })
        }
    }
}
