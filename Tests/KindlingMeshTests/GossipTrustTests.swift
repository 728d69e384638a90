import KindlingCrypto
import KindlingManifest
import KindlingTesting
import KindlingWire
import Testing

@testable import KindlingMesh

/// GossipState when the trust policy changes, and when a key equivocates: events in, actions out.
@Suite("Gossip state machine: trust changes and equivocation")
struct GossipTrustTests {
    typealias Action = GossipState.Action
    static let start = ContinuousClock.now
    static let alice = Fixtures.key(2).publicKey
    static let bob = Fixtures.key(3).publicKey

    static func machine(follow: [String] = []) -> GossipState {
        var mesh = MeshConfiguration(nodeKey: Fixtures.key(1), trust: TestTrust.policy)
        mesh.follow = follow.map(RepositoryGlob.init)
        return GossipState(configuration: GossipState.Configuration(mesh))
    }

    /// A header of `commit`; `build` varies the body (so the manifest) without changing the build's identity.
    static func header(
        _ commit: String, build: String = "", key: SigningKey = TestTrust.bors, cacheKey: [String: String] = [:],
        createdAt: UInt64 = 1
    ) throws -> SignedHeader {
        let header = ManifestHeader(
            repository: try RepositoryName("demo/ws"), commit: commit, createdAt: createdAt, publisher: key.publicKey,
            cacheKey: cacheKey, bodyDigest: Blake2b.hash(Array((commit + build).utf8)), bodyByteCount: 1,
            entryCount: 1, fileByteCount: 1, chunkReferenceCount: 8)
        return SignedHeader(signing: header, with: key)
    }

    static func connected(_ gossip: inout GossipState, _ peers: [PublicKey]) {
        for (n, peer) in peers.enumerated() {
            let address = PeerAddress(nodeID: peer, host: "10.0.0.\(n + 1)", port: 7000)
            _ = gossip.peerConnected(peer, listenAddress: address, now: start)
        }
    }

    @Test("A manifest the new policy refuses leaves the catalog: dropped, download cancelled, holding withdrawn")
    func refusedManifestDropped() throws {
        let revoked = try Self.header("a")
        let kept = try Self.header("b", key: Fixtures.key(7))
        var gossip = Self.machine()
        gossip.catalogLoaded([
            (signed: revoked, holding: .partial(Bitset(bytes: [0b11])), chunks: 8),
            (signed: kept, holding: .complete, chunks: 8),
        ])
        Self.connected(&gossip, [Self.alice, Self.bob])
        _ = gossip.messageReceived(
            .have(manifest: revoked.id, availability: .complete), from: Self.alice, now: Self.start)
        #expect(gossip.downloadRequested(revoked.id, now: Self.start).contains(.startDownload(revoked.id)))
        let digestBefore = gossip.catalogDigest()

        let actions = gossip.trustChanged(refused: [revoked.id: "revoked"], admitted: [], now: Self.start)
        #expect(
            actions == [
                .dropped(revoked.id, reason: "revoked"), .cancelDownload(revoked.id),
                .broadcast(.have(manifest: revoked.id, availability: .partial(Bitset())), except: []),
                .broadcast(.catalogRequest, except: []), .availabilityChanged,
            ])
        #expect(gossip.signedHeader(revoked.id) == nil && gossip.localHolding(revoked.id) == nil)
        #expect(!gossip.isDownloading(revoked.id) && gossip.holders(of: revoked.id).isEmpty)
        #expect(!gossip.holdsAnything(Self.alice))
        #expect(gossip.knownSnapshots(repository: nil).map(\.signed.id) == [kept.id])
        #expect(gossip.catalogDigest() != digestBefore)
        // Not announced to a new peer, nor listed in our catalog, nor fetched again.
        let sent = gossip.peerConnected(Fixtures.key(9).publicKey, listenAddress: nil, now: Self.start)
        #expect(
            !sent.contains(.send(.have(manifest: revoked.id, availability: .complete), to: Fixtures.key(9).publicKey)))
        let pages = gossip.messageReceived(.catalogRequest, from: Self.bob, now: Self.start)
        #expect(pages == [.send(.catalog(ids: [kept.id], more: false), to: Self.bob)])
        #expect(gossip.downloadRequested(revoked.id, now: Self.start).isEmpty)
        // A peer that still trusts the key announces it again: not verified again, nobody struck.
        #expect(gossip.messageReceived(.announce(revoked), from: Self.alice, now: Self.start).isEmpty)
        #expect(
            gossip.messageReceived(
                .catalog(ids: [revoked.id, kept.id], more: false), from: Self.alice, now: Self.start
            )
            .isEmpty)
    }

    @Test("Stored manifests a wider policy accepts join the catalog and are announced; refusals are forgotten")
    func admittedManifestsJoin() throws {
        let signed = try Self.header("a")
        let refusedEarlier = try Self.header("c")
        var gossip = Self.machine()
        Self.connected(&gossip, [Self.alice])
        _ = gossip.announcementRejected(refusedEarlier, from: Self.alice, forged: false)
        #expect(gossip.messageReceived(.announce(refusedEarlier), from: Self.alice, now: Self.start).isEmpty)
        let actions = gossip.trustChanged(
            refused: [:], admitted: [(signed: signed, holding: .complete, chunks: 8)], now: Self.start)
        #expect(
            actions == [
                .accepted(signed), .broadcast(.announce(signed), except: []),
                .broadcast(.have(manifest: signed.id, availability: .complete), except: []),
                .broadcast(.catalogRequest, except: []), .availabilityChanged,
            ])
        #expect(gossip.knownSnapshots(repository: "demo/ws").map(\.signed.id) == [signed.id])
        // What the old policy refused is judged again when it comes back.
        #expect(
            gossip.messageReceived(.announce(refusedEarlier), from: Self.alice, now: Self.start)
                == [.verifyAnnouncement(refusedEarlier, from: Self.alice)])
    }

    @Test("Two manifests of one build by one key: an equivocation, both kept as evidence, neither listed or fetched")
    func equivocationDetected() throws {
        let first = try Self.header("c1")
        let second = try Self.header("c1", build: "again")
        var gossip = Self.machine(follow: ["demo/*"])
        Self.connected(&gossip, [Self.alice, Self.bob])
        #expect(
            gossip.announcementVerified(first, from: Self.alice, now: Self.start).contains(.startDownload(first.id)))
        let actions = gossip.announcementVerified(second, from: Self.bob, now: Self.start)
        let equivocation = Equivocation(
            build: BuildIdentity(first.header), manifests: [first.id, second.id].sorted())
        // Relayed (it is the evidence others need), reported, and the running download of the first stops.
        #expect(
            actions == [
                .accepted(second), .broadcast(.announce(second), except: [Self.bob]), .equivocation(equivocation),
                .cancelDownload(first.id),
            ])
        #expect(gossip.equivocations == [equivocation])
        #expect(gossip.isEquivocal(first.id) && gossip.isEquivocal(second.id))
        #expect(gossip.signedHeader(first.id) != nil && gossip.signedHeader(second.id) != nil)
        #expect(gossip.knownSnapshots(repository: nil).isEmpty)
        #expect(gossip.downloadRequested(first.id, now: Self.start).isEmpty)
        #expect(gossip.downloadRequested(second.id, now: Self.start).isEmpty)
        #expect("\(equivocation)".contains(first.id.hex) && "\(equivocation)".contains(second.id.hex))
        #expect("\(equivocation)".contains("demo/ws@c1") && "\(equivocation)".contains(TestTrust.bors.publicKey.text))
    }

    @Test("Other cache keys, commits or keys are other builds, not an equivocation; a store's is found at load")
    func equivocationNeedsOneBuild() throws {
        var gossip = Self.machine()
        let base = try Self.header("c1")
        let others = [
            try Self.header("c1", build: "x", cacheKey: ["profile": "release"]),
            try Self.header("c2", build: "x"),
            try Self.header("c1", build: "x", key: Fixtures.key(7)),
        ]
        for signed in [base] + others {
            #expect(
                !gossip.announcementVerified(signed, from: nil, now: Self.start).contains { action in
                    if case .equivocation = action { true } else { false }
                })
        }
        #expect(gossip.equivocations.isEmpty && gossip.knownSnapshots(repository: nil).count == 4)
        var loaded = Self.machine()
        let twin = try Self.header("c1", build: "y")
        loaded.catalogLoaded([(signed: base, holding: .complete, chunks: 8), (signed: twin, holding: nil, chunks: nil)])
        #expect(loaded.equivocations.map(\.manifests) == [[base.id, twin.id].sorted()])
        #expect(loaded.resumeDownloads([twin.id], now: Self.start).isEmpty)
        #expect(Equivocation.find(in: [base, twin] + others) == loaded.equivocations)
    }

    @Test("One build signed twice (a publish run again: same body, other creation time) is not an equivocation")
    func republishIsNoEquivocation() throws {
        var gossip = Self.machine()
        let first = try Self.header("c1")
        let again = try Self.header("c1", createdAt: 2)
        #expect(first.id != again.id)
        for signed in [first, again] {
            #expect(
                !gossip.announcementVerified(signed, from: nil, now: Self.start).contains { action in
                    if case .equivocation = action { true } else { false }
                })
        }
        #expect(gossip.equivocations.isEmpty && !gossip.isEquivocal(first.id) && !gossip.isEquivocal(again.id))
        #expect(Equivocation.find(in: [first, again]).isEmpty)
        // A different body beside the two is one: all three manifests are named.
        let other = try Self.header("c1", build: "x")
        let actions = gossip.announcementVerified(other, from: nil, now: Self.start)
        #expect(actions.contains { if case .equivocation = $0 { true } else { false } })
        #expect(gossip.equivocations.map(\.manifests) == [[first.id, again.id, other.id].sorted()])
    }

    @Test("A trust change that withdraws one of the two settles the equivocation; the other is fetched if followed")
    func equivocationSettled() throws {
        let first = try Self.header("c1")
        let second = try Self.header("c1", build: "again")
        var gossip = Self.machine(follow: ["demo/*"])
        gossip.catalogLoaded([(signed: first, holding: nil, chunks: nil), (signed: second, holding: nil, chunks: nil)])
        #expect(gossip.knownSnapshots(repository: nil).isEmpty)
        let actions = gossip.trustChanged(refused: [second.id: "withdrawn"], admitted: [], now: Self.start)
        #expect(
            actions == [
                .dropped(second.id, reason: "withdrawn"),
                .equivocationSettled(BuildIdentity(first.header), kept: first.id), .startDownload(first.id),
                .availabilityChanged,
            ])
        #expect(gossip.equivocations.isEmpty)
        #expect(gossip.knownSnapshots(repository: nil).map(\.signed.id) == [first.id])
    }
}
