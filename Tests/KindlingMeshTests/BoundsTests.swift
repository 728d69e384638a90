import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingStore
import KindlingTesting
import KindlingWire
import NIOCore
import Testing

@testable import KindlingMesh

/// What a hostile peer can make a node remember: availability, holder notices, addresses, strikes.
@Suite("Mesh: bounded state under hostile peers", .serialized)
struct BoundsTests {
    static func randomDigest() -> Digest {
        Blake2b.hash(Fixtures.bytes(count: 32, seed: UInt64.random(in: 0...UInt64.max)))
    }

    static func isError(_ code: Int) -> (WireMessage) -> Bool {
        { if case .error(let sent, _) = $0 { sent.code == code } else { false } }
    }

    @Test(
        "HaveChunks with huge indices and Haves of unknown manifests do not grow state; indices past a manifest strike"
    )
    func hostileAvailability() async throws {
        let target = try await TestNode(name: "target")
        let data = TemporaryDirectory("data")
        let manifest = try await target.publish(try makeTree(data, files: 2, bytesPerFile: 200_000), commit: "c1")
        let positions = ChunkIndex(manifest: manifest).count
        try await withRunningNodes([target]) {
            let rogue = try await RogueClient.connect(to: target.port)
            let outcome = try await rogue.run { frames, outbound in
                // Manifests nobody announced: a 512 KiB allocation each if they were tracked.
                let full = [UInt8](repeating: 0xff, count: ManifestLimits.maxChunkReferences / 8)
                for _ in 0..<20 {
                    try await outbound.write(
                        WireMessage.haveChunks(manifest: Self.randomDigest(), indices: [4_194_303]).encoded())
                    try await outbound.write(
                        WireMessage.have(manifest: Self.randomDigest(), availability: .partial(Bitset(bytes: full)))
                            .encoded())
                }
                // Honest partial availability of the known manifest is tracked, sized by its real chunk count.
                try await outbound.write(
                    WireMessage.haveChunks(manifest: manifest.id, indices: [UInt32(positions - 1)]).encoded())
                let synced = try await rogue.roundTrip(&frames, outbound)
                let tracked = await target.node.stateSizes()
                let strikesBefore = await target.node.status().gossip.strikes
                // Beyond the manifest: three offences, three strikes, a ban.
                try await outbound.write(WireMessage.haveChunks(manifest: manifest.id, indices: [4_194_303]).encoded())
                try await outbound.write(
                    WireMessage.have(manifest: manifest.id, availability: .partial(Bitset(bytes: full))).encoded())
                try await outbound.write(
                    WireMessage.haveChunks(manifest: manifest.id, indices: [UInt32(positions)]).encoded())
                let after = await rogue.drain(&frames, timeout: .seconds(5))
                return (synced != nil, tracked, strikesBefore, after)
            }
            let (synced, tracked, strikesBefore, after) = outcome
            #expect(synced, "the node answered the ping after the flood")
            #expect(tracked.holdingEntries == 1, "\(tracked)")
            #expect(tracked.partialBitfieldBytes <= (positions + 7) / 8, "\(tracked)")
            #expect(strikesBefore == 0)
            #expect(after.closedByNode)
            #expect(after.messages.contains(where: Self.isError(5)))
            let status = await target.node.status()
            #expect(status.gossip.strikes == 3)
            #expect(status.bannedPeers == 1)
            #expect(await target.node.stateSizes().holdingEntries == 0, "a banned peer's availability is forgotten")
        }
    }

    @Test("Holder notices are kept only for known manifests, at most 16 each, and expire")
    func holderNoticesBounded() async throws {
        let target = try await TestNode(name: "target") { $0.holderNoticeLifetime = .seconds(2) }
        let data = TemporaryDirectory("data")
        let manifest = try await target.publish(try makeTree(data, files: 1, bytesPerFile: 50_000), commit: "c1")
        try await withRunningNodes([target]) {
            let rogue = try await RogueClient.connect(to: target.port)
            let (first, afterExpiry) = try await rogue.run { frames, outbound in
                for index in 0..<100 {
                    let holder = SigningKey.generate().publicKey
                    try await outbound.write(
                        WireMessage.holder(
                            HolderNotice(manifest: manifest.id, nodeID: holder, host: "10.0.0.\(index)", port: 7341)
                        ).encoded())
                    try await outbound.write(
                        WireMessage.holder(
                            HolderNotice(
                                manifest: Self.randomDigest(), nodeID: holder, host: "10.0.1.\(index)", port: 7341)
                        ).encoded())
                }
                _ = try await rogue.roundTrip(&frames, outbound)
                let first = await target.node.stateSizes().holderNotices
                try await Task.sleep(for: .milliseconds(2500))
                try await outbound.write(
                    WireMessage.holder(
                        HolderNotice(
                            manifest: manifest.id, nodeID: SigningKey.generate().publicKey, host: "10.0.2.1", port: 7341
                        )
                    ).encoded())
                _ = try await rogue.roundTrip(&frames, outbound)
                return (first, await target.node.stateSizes().holderNotices)
            }
            #expect(first == 16)
            #expect(afterExpiry == 1, "expired notices make room for new ones")
        }
    }

    @Test("Unsolicited Peers frames are ignored and learned addresses are capped")
    func addressBookBounded() async throws {
        // A peer limit of one: with the rogue connected, the node dials nobody, so the address book only grows.
        let target = try await TestNode(name: "target") {
            $0.maxPeers = 1
            $0.maxKnownAddresses = 40
        }
        @Sendable func addresses(_ block: Int) -> [PeerAddress] {
            (0..<64).map {
                PeerAddress(nodeID: SigningKey.generate().publicKey, host: "10.\(block).0.\($0)", port: 7341)
            }
        }
        try await withRunningNodes([target]) {
            let rogue = try await RogueClient.connect(to: target.port)
            let (answered, unsolicited) = try await rogue.run { frames, outbound in
                // The node asked us (GetPeers right after the handshake): one answer is taken, up to the cap.
                try await outbound.write(WireMessage.peers(addresses(1)).encoded())
                _ = try await rogue.roundTrip(&frames, outbound)
                let answered = await target.node.stateSizes().knownAddresses
                try await outbound.write(WireMessage.peers(addresses(2)).encoded())
                try await outbound.write(WireMessage.peers(addresses(3)).encoded())
                _ = try await rogue.roundTrip(&frames, outbound)
                return (answered, await target.node.stateSizes().knownAddresses)
            }
            #expect(answered == 40)
            #expect(unsolicited == 40)
        }
    }

    @Test("Three strikes ban a node id, and reconnecting does not reset the count")
    func threeStrikesAcrossReconnects() async throws {
        let target = try await TestNode(name: "target")
        let manifest = try await target.publish(
            try makeTree(target.directory, files: 1, bytesPerFile: 1000), commit: "c")
        // A protocol offence: availability beyond the manifest's chunks. (An untrusted announcement is not one: that
        // is disagreement about trust, `TrustChangeTests.halfTrustNoBans`.)
        let offence = WireMessage.haveChunks(manifest: manifest.id, indices: [1_000_000]).encoded()
        let key = SigningKey.generate()
        try await withRunningNodes([target]) {
            // Two strikes, then the peer leaves.
            let first = try await RogueClient.connect(to: target.port, key: key)
            let stillConnected = try await first.run { frames, outbound in
                try await outbound.write(offence)
                try await outbound.write(offence)
                return try await first.roundTrip(&frames, outbound) != nil
            }
            #expect(stillConnected, "two strikes are not a ban")
            #expect(await target.node.status().bannedPeers == 0)
            try await eventually("the first connection is gone") { await target.node.connectedPeers.isEmpty }
            // Back with the same node id: the third strike bans.
            let second = try await RogueClient.connect(to: target.port, key: key)
            let (messages, closed) = try await second.run { frames, outbound in
                try await outbound.write(offence)
                return await second.drain(&frames, timeout: .seconds(5))
            }
            #expect(closed)
            #expect(messages.contains(where: Self.isError(5)), "\(messages)")
            #expect(await target.node.status().bannedPeers == 1)
            // And it stays out.
            let third = try await RogueClient.connect(to: target.port, key: key)
            let (refusal, refusedAndClosed) = try await third.run { frames, _ in
                await third.drain(&frames, timeout: .seconds(5))
            }
            #expect(refusedAndClosed)
            #expect(refusal.contains(where: Self.isError(5)))
        }
    }

    @Test("A garbage frame after the handshake bans the sender")
    func garbageBans() async throws {
        let target = try await TestNode(name: "target")
        let key = SigningKey.generate()
        try await withRunningNodes([target]) {
            let rogue = try await RogueClient.connect(to: target.port, key: key)
            let (messages, closed) = try await rogue.run { frames, outbound in
                try await outbound.write([0x55, 1, 2, 3])
                return await rogue.drain(&frames, timeout: .seconds(5))
            }
            #expect(closed)
            #expect(messages.contains(where: Self.isError(1)), "the Error frame names the protocol error")
            #expect(await target.node.status().bannedPeers == 1)
            let again = try await RogueClient.connect(to: target.port, key: key)
            let (refusal, refused) = try await again.run { frames, _ in await again.drain(&frames, timeout: .seconds(5))
            }
            #expect(refused)
            #expect(refusal.contains(where: Self.isError(5)))
        }
    }

    @Test("A Chunk reply naming another chunk than requested bans the peer; the fetch completes from an honest one")
    func wrongChunkBans() async throws {
        let seed = try await TestNode(name: "seed", uploadLimit: 2 << 20)
        let downloader = try await TestNode(name: "dev", peers: [seed.address], peerExchange: false)
        let data = TemporaryDirectory("data")
        let manifest = try await seed.publish(try makeTree(data, files: 3, bytesPerFile: 600_000), commit: "c1")
        let chunks = ChunkIndex(manifest: manifest).chunks
        let key = SigningKey.generate()
        let served = Counter()
        try await withRunningNodes([seed, downloader]) {
            try await eventually("the downloader knows the snapshot") { await downloader.catalogContains(manifest.id) }
            let liar = try await RogueClient.connect(to: downloader.port, key: key)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    await liar.actAsSeed(of: manifest) { request, chunk in
                        // A genuine chunk of the snapshot, but not the one asked for.
                        guard let other = chunks.first(where: { $0.id != chunk }) else { return nil }
                        let plain = try seed.store.readChunk(other.id, decompressor: ZstdDecompressor())
                        served.increment()
                        let compressed = plain.withUnsafeBytes { ZstdCompressor().compress($0) }
                        return .chunk(
                            request: request, chunk: other.id, plainLength: plain.count, compressed: compressed)
                    }
                }
                group.addTask {
                    try await eventually("the liar is connected") { await downloader.node.connectedPeers.count == 2 }
                    let result = try await downloader.node.fetch(manifest.id)
                    #expect(result.fetchedBytes == manifest.header.fileByteCount)
                }
                try await group.next()
                try await group.next()
            }
            #expect(served.value > 0, "the liar was never asked for a chunk, so the test proved nothing")
            #expect(await downloader.node.status().bannedPeers == 1)
            #expect(await downloader.node.isBanned(key.publicKey))
        }
    }

}

@Suite("Mesh: discovery and timeouts", .serialized)
struct DiscoveryTests {
    @Test("Peer exchange: a node learns a third node's address from a common peer and connects to it")
    func peerExchange() async throws {
        // A learned address that fails once is forgotten: a generous handshake timeout keeps a loaded test machine
        // from turning this into a test of timeouts.
        let hub = try await TestNode(name: "hub", handshakeTimeout: .seconds(10))
        let first = try await TestNode(name: "first", peers: [hub.address], handshakeTimeout: .seconds(10))
        try await withRunningNodes([hub, first]) {
            try await eventually("first connects to the hub") { await hub.node.connectedPeers.count == 1 }
            let second = try await TestNode(name: "second", peers: [hub.address], handshakeTimeout: .seconds(10))
            try await withRunningNodes([second]) {
                try await eventually("first and second find each other through the hub") {
                    let seenByFirst = await first.node.connectedPeers.contains { $0.nodeID == second.node.nodeID }
                    let seenBySecond = await second.node.connectedPeers.contains { $0.nodeID == first.node.nodeID }
                    return seenByFirst && seenBySecond
                }
            }
        }
    }

    @Test("With peer exchange off, the same topology stays as configured (control for the test above)")
    func noPeerExchange() async throws {
        let hub = try await TestNode(name: "hub", peerExchange: false)
        let first = try await TestNode(name: "first", peers: [hub.address], peerExchange: false)
        try await withRunningNodes([hub, first]) {
            try await eventually("first connects to the hub") { await hub.node.connectedPeers.count == 1 }
            let second = try await TestNode(name: "second", peers: [hub.address], peerExchange: false)
            try await withRunningNodes([second]) {
                try await eventually("second connects to the hub") { await hub.node.connectedPeers.count == 2 }
                try await Task.sleep(for: .seconds(2))
                #expect(!(await first.node.connectedPeers.contains { $0.nodeID == second.node.nodeID }))
            }
        }
    }

    @Test("A peer that completes the handshake and then says nothing is disconnected after the idle timeout")
    func idleTimeout() async throws {
        let target = try await TestNode(name: "target") {
            $0.idleTimeout = .seconds(2)
            $0.keepaliveInterval = .milliseconds(500)
        }
        try await withRunningNodes([target]) {
            let rogue = try await RogueClient.connect(to: target.port)
            let started = ContinuousClock.now
            let (messages, closed) = try await rogue.run { frames, _ in
                await rogue.drain(&frames, timeout: .seconds(10))
            }
            let elapsed = ContinuousClock.now - started
            #expect(closed)
            #expect(elapsed >= .milliseconds(1500) && elapsed < .seconds(6), "closed after \(elapsed)")
            #expect(
                messages.contains { if case .ping = $0 { true } else { false } }, "the node pinged before giving up")
        }
    }

    @Test("A fetch asked of a node that is shutting down fails at once instead of hanging")
    func fetchDuringShutdown() async throws {
        let seed = try await TestNode(name: "seed")
        let data = TemporaryDirectory("data")
        let manifest = try await seed.publish(try makeTree(data, files: 1, bytesPerFile: 10_000), commit: "c1")
        let node = try await TestNode(name: "dev")
        // The node knows the snapshot (its header) but holds none of it.
        try node.store.saveHeader(try TestTrust.policy.verify(manifest.signed))
        try await node.node.loadFromStore()
        await node.node.beginShutdown()
        let outcome = try await withThrowingTaskGroup(of: String.self) { group in
            group.addTask {
                do {
                    _ = try await node.node.fetch(manifest.id)
                    return "fetched"
                } catch MeshError.shuttingDown {
                    return "shutting down"
                }
            }
            group.addTask {
                try await Task.sleep(for: .seconds(10))
                Issue.record("fetch during shutdown hangs (this test then hangs too)")
                return "hung"
            }
            defer { group.cancelAll() }
            return try await group.next() ?? "nothing"
        }
        #expect(outcome == "shutting down")
        await node.listener.close()
        await seed.listener.close()
    }
}
