import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingSnapshot
import KindlingStore
import KindlingTesting
import KindlingWire
import NIOCore
import Testing

@testable import KindlingMesh

/// Real nodes on loopback whose trust policy changes while they run (`MeshNode.applyTrust`).
@Suite("Mesh: trust changes at run time", .serialized)
struct TrustChangeTests {
    /// The test policy with the bors key revoked.
    static let revoked: TrustPolicy = {
        var file = Fixtures.trust([("bors", TestTrust.bors)])
        file.keys[0].revoked = true
        return TrustPolicy(trust: file)
    }()

    /// Asks `port` for a piece of the body and for one chunk of `manifest`; returns the body bytes (empty: not
    /// held) and whether the chunk came (false: NoChunk not held).
    static func ask(_ port: Int, for manifest: Manifest) async throws -> (body: [UInt8], chunk: Bool) {
        let rogue = try await RogueClient.connect(to: port)
        let chunk = ChunkIndex(manifest: manifest).chunks[0].id
        return try await rogue.run { frames, outbound in
            try await outbound.write(WireMessage.getBody(manifest: manifest.id, offset: 0, length: 1000).encoded())
            try await outbound.write(WireMessage.getChunk(request: 1, chunk: chunk).encoded())
            var body: [UInt8]?
            var gotChunk: Bool?
            while body == nil || gotChunk == nil, let frame = try await frames.next(isolation: #isolation) {
                switch try WireMessage.decode(frame) {
                case .body(manifest.id, 0, let bytes)?: body = bytes
                case .chunk(1, chunk, _, _)?: gotChunk = true
                case .noChunk(1, chunk, .notHeld)?: gotChunk = false
                default: continue
                }
            }
            return (body ?? [], gotChunk ?? false)
        }
    }

    @Test("A revocation applied to a running node drops the snapshot at once: not listed, served or fetched; no bans")
    func revocationAppliedAtOnce() async throws {
        let seed = try await TestNode(name: "seed")
        let node = try await TestNode(name: "node", peers: [seed.address])
        let tree = try makeTree(seed.directory, files: 2, bytesPerFile: 300_000)
        let manifest = try await seed.publish(tree, commit: "c1")
        try await withRunningNodes([seed, node]) {
            try await eventually("the node learns the snapshot") { await node.catalogContains(manifest.id) }
            _ = try await node.node.fetch(manifest.id)
            let before = try await Self.ask(node.port, for: manifest)
            #expect(before.body == Array(manifest.bodyBytes.prefix(1000)) && before.chunk)
            try await eventually("the seed sees the node hold it") {
                await seed.node.gossip.holders(of: manifest.id)[node.node.nodeID] == .complete
            }

            await node.node.applyTrust(Self.revoked)
            #expect(await node.node.signedHeader(manifest.id) == nil)
            #expect(await node.node.knownSnapshots().isEmpty)
            let after = try await Self.ask(node.port, for: manifest)
            #expect(after.body.isEmpty && !after.chunk, "a dropped snapshot is still served")
            await #expect(throws: MeshError.self) { _ = try await node.node.fetch(manifest.id) }
            // The node says it holds nothing of it any more; the seed, which still trusts the key, keeps it.
            try await eventually("the seed hears the node holds nothing") {
                await seed.node.gossip.holders(of: manifest.id)[node.node.nodeID] == nil
            }
            #expect(await seed.node.signedHeader(manifest.id) != nil)
            // The seed re-offers it (anti-entropy after the change, a new announcement): refused quietly.
            let second = try await seed.publish(try makeTree(seed.directory, files: 1, seed: 2), commit: "c2")
            try await Task.sleep(for: .milliseconds(500))
            #expect(await node.node.signedHeader(second.id) == nil)
            for each in [seed, node] {
                let status = await each.node.status()
                #expect(status.bannedPeers == 0 && status.gossip.strikes == 0)
                #expect(status.peers.count == 1)
            }
            // The store still has it (chunks stay until gc); trusting the key again brings it back, held.
            #expect(try node.store.manifest(manifest.id) != nil)
            await node.node.applyTrust(TestTrust.policy)
            #expect(await node.node.knownSnapshots().first { $0.signed.id == manifest.id }?.local == true)
            let again = try await Self.ask(node.port, for: manifest)
            #expect(!again.body.isEmpty && again.chunk)
            try await eventually("and the second snapshot arrives by anti-entropy") {
                await node.catalogContains(second.id)
            }
        }
    }

    @Test("A download running when the policy drops its snapshot stops; its caller is told why")
    func downloadCancelled() async throws {
        // A slow seed: 4 MB at 400 kB/s, so the download is still running when the policy changes.
        let seed = try await TestNode(name: "seed", uploadLimit: 400_000)
        let node = try await TestNode(name: "node", peers: [seed.address])
        let manifest = try await seed.publish(try makeTree(seed.directory, files: 4), commit: "c1")
        try await withRunningNodes([seed, node]) {
            try await eventually("the node learns the snapshot") { await node.catalogContains(manifest.id) }
            let started = Flag()
            let fetch = Task { try await node.node.fetch(manifest.id) { _ in started.set() } }
            try await eventually("the download makes progress") { started.isSet }
            await node.node.applyTrust(Self.revoked)
            let result = await fetch.result
            guard case .failure(let error) = result, let meshError = error as? MeshError else {
                Issue.record("the fetch ended with \(result)")
                return
            }
            #expect("\(meshError)".contains("no longer"))
            try await eventually("the download is gone") {
                let cancels = await node.node.downloadCancels
                return await node.node.status().downloads.isEmpty && cancels.isEmpty
            }
            #expect(await seed.node.status().bannedPeers == 0)
        }
    }

    @Test(
        "Half the mesh trusts a key, half no longer does: announcements flow, nobody bans anybody, refusers list none")
    func halfTrustNoBans() async throws {
        let seed = try await TestNode(name: "seed")
        let hub = try await TestNode(name: "refuser-hub", peers: [seed.address], policy: Self.revoked)
        var trustingNodes = [seed]
        var refusingNodes = [hub]
        for n in 0..<2 {
            trustingNodes.append(
                try await TestNode(name: "trusting-\(n)", peers: [seed.address, hub.address], follow: ["demo/*"]))
            refusingNodes.append(
                try await TestNode(name: "refuser-\(n)", peers: [seed.address, hub.address], policy: Self.revoked))
        }
        let (trusting, refusing) = (trustingNodes, refusingNodes)
        // One more that trusts at first and has the revocation applied halfway: a revocation rolling through.
        let late = try await TestNode(name: "late", peers: [seed.address, hub.address])
        let all = trusting + refusing + [late]
        try await withRunningNodes(all) {
            try await eventually("everyone connects") {
                for node in all where await node.node.connectedPeers.count < 2 { return false }
                return true
            }
            var published: [Digest] = []
            for n in 0..<6 {
                if n == 3 { await late.node.applyTrust(Self.revoked) }
                let tree = try makeTree(seed.directory, files: 1, bytesPerFile: 100_000, seed: UInt64(10 + n))
                published.append(try await seed.publish(tree, commit: "c\(n)").id)
                try await Task.sleep(for: .milliseconds(300))
            }
            let all6 = published
            try await eventually("every trusting node lists every snapshot") {
                for node in trusting {
                    let listed = Set(await node.node.knownSnapshots().map(\.signed.id))
                    if !listed.isSuperset(of: all6) { return false }
                }
                return true
            }
            // A few rounds of anti-entropy between nodes that disagree.
            try await Task.sleep(for: .seconds(2))
            for node in refusing + [late] {
                #expect(await node.node.knownSnapshots().isEmpty, "a node that refuses the key lists its snapshots")
            }
            for node in all {
                let status = await node.node.status()
                #expect(status.bannedPeers == 0 && status.gossip.bans == 0, "\(node.directory.path) banned a peer")
                #expect(status.gossip.strikes == 0, "\(node.directory.path) struck a peer")
            }
            #expect(await seed.node.connectedPeers.count == all.count - 1)
        }
    }

    @Test("A key that signs two builds of one commit: both kept as evidence, neither listed or fetched, until one goes")
    func equivocation() async throws {
        let seed = try await TestNode(name: "seed")
        let first = try await seed.publish(try makeTree(seed.directory, files: 1, seed: 1), commit: "c1")
        let second = try await seed.publish(try makeTree(seed.directory, files: 1, seed: 2), commit: "c1")
        let node = try await TestNode(name: "node", peers: [seed.address], follow: ["demo/*"])
        let ids = [first.id, second.id].sorted()
        try await withRunningNodes([seed, node]) {
            try await eventually("the node sees the equivocation") {
                await node.node.status().equivocations.first?.manifests == ids.map(\.hex)
            }
            let report = try #require(await node.node.status().equivocations.first)
            #expect(report.key == TestTrust.bors.publicKey.text && report.commit == "c1")
            #expect(report.repository == "demo/ws" && report.message.contains("broken or stolen"))
            #expect(await seed.node.status().equivocations.count == 1, "the publisher's own node sees it too")
            // Kept as evidence, never offered or fetched.
            #expect(await node.catalogContains(first.id))
            #expect(await node.catalogContains(second.id))
            #expect(await node.node.knownSnapshots().isEmpty)
            await #expect(throws: MeshError.self) { _ = try await node.node.fetch(first.id) }
            try await eventually("no download runs") { await node.node.status().downloads.isEmpty }
            #expect(await node.node.gossip.localHolding(first.id)?.isComplete != true)
            #expect(await node.node.gossip.localHolding(second.id)?.isComplete != true)
            let bans = await node.node.status().bannedPeers + seed.node.status().bannedPeers
            #expect(bans == 0)

            // The policy withdraws the second: the first is usable again, and fetched since the node follows it.
            await node.node.applyTrust(TrustPolicy(trust: TestTrust.policy.trust, withdrawn: [second.id]))
            #expect(await node.node.status().equivocations.isEmpty)
            #expect(await node.node.knownSnapshots().map(\.signed.id) == [first.id])
            try await eventually("the one left is fetched") {
                await node.node.gossip.localHolding(first.id)?.isComplete == true
            }
        }
    }
}
