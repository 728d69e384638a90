import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingTesting
import KindlingWire
import NIOCore
import Testing

@testable import KindlingMesh

/// Head records between real nodes on loopback (Specs/freshness.md): they spread, are kept on disk, and an older or
/// forged one is refused.
@Suite("Mesh: head records", .serialized)
struct HeadRecordMeshTests {
    static func record(
        _ sequence: UInt64, commit: String, key: SigningKey = TestTrust.bors, lifetime: TimeInterval = 3600
    ) throws -> SignedHeadRecord {
        let entry = HeadEntry(
            branch: "main", profile: "dev", commit: commit, manifest: Blake2b.hash(Array(commit.utf8)))
        let now = Date()
        return SignedHeadRecord.sign(
            HeadRecord(
                repository: try RepositoryName("demo/ws"), publisher: key.publicKey, sequence: sequence, issued: now,
                expires: now.addingTimeInterval(lifetime), entries: [entry]),
            with: key)
    }

    /// Sends `messages` as a peer of the node at `port`, then waits a moment so the node has handled them.
    static func sendAsPeer(_ port: Int, _ messages: [WireMessage]) async throws {
        let rogue = try await RogueClient.connect(to: port)
        try await rogue.run { frames, outbound in
            for message in messages { try await outbound.write(message.encoded()) }
            _ = await rogue.drain(&frames, timeout: .seconds(1))
        }
    }

    @Test("A head record published on the first of three nodes in a line reaches the third; older ones are refused")
    func spreadsAndNeverGoesBack() async throws {
        let keeperFolders = (1...3).map { TemporaryDirectory("heads-\($0)") }
        let keepers = try keeperFolders.map { try HeadRecordKeeper(directory: $0.file("head-state")) }
        let first = try await TestNode(name: "first") { $0.headRecords = keepers[0] }
        let second = try await TestNode(name: "second", peers: [first.address]) { $0.headRecords = keepers[1] }
        let third = try await TestNode(name: "third", peers: [second.address]) { $0.headRecords = keepers[2] }
        let older = try Self.record(10, commit: "c1")
        let newer = try Self.record(11, commit: "c2")
        try await withRunningNodes([first, second, third]) {
            try await eventually("the line is connected") {
                let (middle, end) = (await second.node.status(), await third.node.status())
                return middle.peers.count == 2 && end.peers.count == 1
            }
            #expect(await first.node.offerHeadRecord(older.encoded()) == .accepted(sequence: 10))
            try await eventually("the third node learns record 10") {
                await third.node.headRecords().first?.record.sequence == 10
            }
            let published = ContinuousClock.now
            #expect(await first.node.offerHeadRecord(newer.encoded()) == .accepted(sequence: 11))
            try await eventually("the third node learns record 11", timeout: .seconds(5)) {
                await third.node.headRecords().first?.record.sequence == 11
            }
            let elapsed = ContinuousClock.now - published
            #expect(elapsed < .seconds(3), "took \(elapsed)")
            print("head record 11 reached the third node (two hops) in \(elapsed)")
            // Durable: on disk before use.
            let kept = keepers[2].record(repository: newer.record.repository, publisher: TestTrust.bors.publicKey)
            #expect(kept == newer)

            // A peer replays the older record: refused, nobody struck.
            try await Self.sendAsPeer(third.port, [.headRecord(older.encoded())])
            #expect(await third.node.headRecords().first == newer)
            #expect(
                await third.node.offerHeadRecord(older.encoded())
                    == .refused(
                        HeadRecordError.rollback(candidate: 10, held: 11).description))
            // An untrusted key's record: dropped quietly, not kept.
            let stranger = try Self.record(99, commit: "c3", key: Fixtures.key(7))
            try await Self.sendAsPeer(third.port, [.headRecord(stranger.encoded())])
            #expect(await third.node.headRecords().count == 1)
            #expect(await third.node.status().gossip.strikes == 0)
            // A forged record under bors's key is proof of lying: a strike against the sender.
            var forged = try Self.record(12, commit: "c4").encoded()
            forged[forged.count - 1] ^= 1
            try await Self.sendAsPeer(third.port, [.headRecord(forged)])
            #expect(await third.node.headRecords().first == newer)
            #expect(await third.node.status().gossip.strikes == 1)
            // A record that names a build the node has not heard of: it asks the sender for the announcement.
            let ahead = try Self.record(20, commit: "c9")
            let rogue = try await RogueClient.connect(to: third.port)
            let answers = try await rogue.run { frames, outbound in
                try await outbound.write(WireMessage.headRecord(ahead.encoded()).encoded())
                return await rogue.drain(&frames, timeout: .seconds(2)).messages
            }
            #expect(answers.contains(.announceRequest(ids: [Blake2b.hash(Array("c9".utf8))])))
            #expect(await third.node.headRecords().first == ahead)
            for node in [first, second] {
                let status = await node.node.status()
                #expect(status.gossip.strikes == 0 && status.bannedPeers == 0)
            }
        }
        // A node started again on the same folder holds the highest record and still refuses the older one.
        let restarted = try await TestNode(name: "restarted") { $0.headRecords = keepers[2] }
        #expect(await restarted.node.headRecords().first?.record.sequence == 20)
        #expect(await restarted.node.offerHeadRecord(older.encoded()) != .accepted(sequence: 10))
    }

    @Test("Status warns when the newest head record of a repository expired")
    func staleWarning() async throws {
        let folder = TemporaryDirectory("heads-stale")
        let keeper = try HeadRecordKeeper(directory: folder.file("head-state"))
        // Accepted while in force, then kept on disk past its expiry (a node cut off for a while).
        let shortLived = try Self.record(3, commit: "c1", lifetime: 1)
        try keeper.persist(shortLived)
        let node = try await TestNode(name: "stale") { $0.headRecords = keeper }
        let status = await node.node.status()
        let head = try #require(status.heads?.first)
        try await Task.sleep(for: .seconds(1.1))
        let later = await node.node.status()
        #expect(head.sequence == 3)
        #expect(later.heads?.first?.expired == true)
        let warning = try #require(later.heads?.first?.warning)
        #expect(warning.contains("no head record for demo/ws newer than"))
        #expect(warning.contains("cut off from bors, or a peer is hiding newer builds"))
        // Revoking the key hides its records at once.
        await node.node.applyTrust(TrustChangeTests.revoked)
        #expect(await node.node.headRecords().isEmpty)
        #expect(await node.node.status().heads?.isEmpty == true)
    }
}
