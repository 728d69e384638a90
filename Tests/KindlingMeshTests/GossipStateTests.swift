import KindlingCrypto
import KindlingManifest
import KindlingTesting
import KindlingWire
import Testing

@testable import KindlingMesh

/// GossipState fed events on a made-up clock; every test checks the actions it returns.
@Suite("Gossip state machine")
struct GossipStateTests {
    typealias Action = GossipState.Action
    static let start = ContinuousClock.now
    static let me = Fixtures.key(1).publicKey
    static let alice = Fixtures.key(2).publicKey
    static let bob = Fixtures.key(3).publicKey
    static let carol = Fixtures.key(4).publicKey

    static func machine(_ adjust: (inout MeshConfiguration) -> Void = { _ in }) -> GossipState {
        var mesh = MeshConfiguration(nodeKey: Fixtures.key(1), trust: TestTrust.policy)
        adjust(&mesh)
        return GossipState(configuration: GossipState.Configuration(mesh))
    }

    static func header(_ commit: String, repository: String = "demo/ws", chunks: Int = 20) throws -> SignedHeader {
        let header = ManifestHeader(
            repository: try RepositoryName(repository), commit: commit, createdAt: 1,
            publisher: TestTrust.bors.publicKey, cacheKey: [:],
            bodyDigest: Blake2b.hash(Array(commit.utf8)), bodyByteCount: 1, entryCount: 1, fileByteCount: 1,
            chunkReferenceCount: chunks)
        return SignedHeader(signing: header, with: TestTrust.bors)
    }

    static func address(_ id: PublicKey, port: UInt16 = 7000) -> PeerAddress {
        PeerAddress(nodeID: id, host: "10.0.0.\(port % 200)", port: port)
    }

    /// A machine that knows `signed` and is connected to `peers`.
    static func connected(_ peers: [PublicKey], knowing signed: [SignedHeader] = []) -> GossipState {
        var gossip = machine()
        gossip.catalogLoaded(signed.map { (signed: $0, holding: nil, chunks: nil) })
        for (n, peer) in peers.enumerated() {
            _ = gossip.peerConnected(peer, listenAddress: address(peer, port: UInt16(7000 + n)), now: start)
        }
        return gossip
    }

    static func sends(_ actions: [Action], to peer: PublicKey) -> [WireMessage] {
        actions.compactMap { if case .send(let message, peer) = $0 { message } else { nil } }
    }

    @Test("A new peer is told our catalog digest and what we hold; availability changes")
    func peerConnected() throws {
        let signed = try Self.header("a")
        var gossip = Self.machine()
        gossip.catalogLoaded([(signed: signed, holding: .complete, chunks: 4)])
        let actions = gossip.peerConnected(Self.alice, listenAddress: nil, now: Self.start)
        let sent = Self.sends(actions, to: Self.alice)
        #expect(sent.count == 2)
        guard case .catalogDigest(1, _)? = sent.first else {
            Issue.record("first message: \(sent)")
            return
        }
        #expect(sent.last == .have(manifest: signed.id, availability: .complete))
        #expect(actions.last == .availabilityChanged)
    }

    @Test("A new announcement is verified first; once verified it is relayed once to every other peer")
    func announcementFanOut() throws {
        let signed = try Self.header("a")
        var gossip = Self.connected([Self.alice, Self.bob, Self.carol])
        #expect(
            gossip.messageReceived(.announce(signed), from: Self.alice, now: Self.start)
                == [.verifyAnnouncement(signed, from: Self.alice)])
        let actions = gossip.announcementVerified(signed, from: Self.alice, now: Self.start)
        #expect(actions == [.accepted(signed), .broadcast(.announce(signed), except: [Self.alice])])
        #expect(gossip.counters.accepted == 1 && gossip.counters.relayed == 2)
        // The same announcement again is a duplicate: no verification, no relay.
        #expect(gossip.messageReceived(.announce(signed), from: Self.bob, now: Self.start).isEmpty)
        #expect(gossip.announcementVerified(signed, from: Self.bob, now: Self.start).isEmpty)
        #expect(gossip.counters.duplicates == 1)
    }

    @Test("A followed repository's snapshot is fetched as soon as it is accepted; others are not")
    func followStartsDownload() throws {
        var mesh = MeshConfiguration(nodeKey: Fixtures.key(1), trust: TestTrust.policy)
        mesh.follow = [RepositoryGlob("demo/*")]
        var gossip = GossipState(configuration: GossipState.Configuration(mesh))
        let followed = try Self.header("a")
        let other = try Self.header("b", repository: "else/where")
        #expect(gossip.announcementVerified(followed, from: nil, now: Self.start).contains(.startDownload(followed.id)))
        #expect(!gossip.announcementVerified(other, from: nil, now: Self.start).contains(.startDownload(other.id)))
        #expect(gossip.isDownloading(followed.id))
    }

    @Test("A forged announcement bans its sender; one by a key we do not trust is dropped quietly, not asked again")
    func rejectedAnnouncements() throws {
        var gossip = Self.connected([Self.alice])
        let signed = try Self.header("a")
        #expect(
            gossip.announcementRejected(signed, from: Self.alice, forged: true)
                == [.ban(Self.alice, reason: "forged announcement")])
        #expect(gossip.announcementRejected(signed, from: Self.alice, forged: false).isEmpty)
        #expect(gossip.announcementRejected(signed, from: nil, forged: true).isEmpty)
        #expect(gossip.counters.rejected == 3)
        // Refused: neither verified again when re-announced nor asked for when a peer's catalog lists it.
        #expect(gossip.messageReceived(.announce(signed), from: Self.alice, now: Self.start).isEmpty)
        #expect(
            gossip.messageReceived(.catalog(ids: [signed.id], more: false), from: Self.alice, now: Self.start)
                .isEmpty)
        // One refused for a reason time cures (created in the future) is verified again when it comes again.
        let later = try Self.header("b")
        #expect(gossip.announcementRejected(later, from: Self.alice, forged: false, transient: true).isEmpty)
        #expect(
            gossip.messageReceived(.announce(later), from: Self.alice, now: Self.start)
                == [.verifyAnnouncement(later, from: Self.alice)])
    }

    @Test("Availability beyond a manifest's chunks is a strike; of unknown manifests it is ignored")
    func availabilityBounds() throws {
        let signed = try Self.header("a", chunks: 10)
        var gossip = Self.connected([Self.alice], knowing: [signed])
        let beyond = Bitset(bytes: [0, 0b0000_0100])  // position 10
        #expect(
            gossip.messageReceived(
                .have(manifest: signed.id, availability: .partial(beyond)), from: Self.alice,
                now: Self.start) == [
                    .strike(Self.alice, reason: "availability bitfield beyond the manifest's 10 chunks")
                ])
        #expect(
            gossip.messageReceived(
                .haveChunks(manifest: signed.id, indices: [3, 10]), from: Self.alice,
                now: Self.start) == [.strike(Self.alice, reason: "HaveChunks index 10 beyond the manifest's 10 chunks")]
        )
        let unknown = try Self.header("unknown")
        #expect(
            gossip.messageReceived(
                .haveChunks(manifest: unknown.id, indices: [1]), from: Self.alice,
                now: Self.start
            ).isEmpty)
        // Within the bounds: recorded, and the scheduler is told.
        #expect(
            gossip.messageReceived(
                .haveChunks(manifest: signed.id, indices: [3, 9]), from: Self.alice,
                now: Self.start) == [.availabilityChanged])
        guard case .partial(let bits)? = gossip.holders(of: signed.id)[Self.alice] else {
            Issue.record("no partial holding recorded")
            return
        }
        #expect(bits.contains(3) && bits.contains(9) && bits.count == 2)
        #expect(gossip.holdsAnything(Self.alice))
        // A disconnect forgets what the peer held.
        #expect(gossip.peerDisconnected(Self.alice) == [.availabilityChanged])
        #expect(gossip.holders(of: signed.id).isEmpty)
    }

    @Test("A Have that came before its announcement is asked for again once the announcement arrives from another peer")
    func haveBeforeAnnouncement() throws {
        // Two seeds connect to a node with an empty catalog. Each sends its Have right after the handshake (ignored:
        // unknown manifest); Alice's announcement is verified before Bob's Catalog arrives, so Bob is never asked
        // for the announcement, the AnnounceRequest whose answer would repeat his Have. Bob's holding must not be
        // lost for the life of the connection (TransferTests.seedKilledMidTransfer then waited in vain for a seed
        // the download never knew of).
        let signed = try Self.header("a")
        let have = WireMessage.have(manifest: signed.id, availability: .complete)
        var gossip = Self.connected([Self.alice, Self.bob, Self.carol])
        #expect(gossip.messageReceived(have, from: Self.alice, now: Self.start).isEmpty)
        #expect(gossip.messageReceived(have, from: Self.bob, now: Self.start).isEmpty)
        // Alice's catalog first: asked for the announcement, so not asked again once it is verified.
        let catalog = WireMessage.catalog(ids: [signed.id], more: false)
        #expect(
            gossip.messageReceived(catalog, from: Self.alice, now: Self.start)
                == [.send(.announceRequest(ids: [signed.id]), to: Self.alice)])
        _ = gossip.messageReceived(.announce(signed), from: Self.alice, now: Self.start)
        let verified = gossip.announcementVerified(signed, from: Self.alice, now: Self.start)
        #expect(Self.sends(verified, to: Self.alice).isEmpty)
        #expect(Self.sends(verified, to: Self.bob) == [.announceRequest(ids: [signed.id])])
        _ = gossip.messageReceived(have, from: Self.alice, now: Self.start)
        // Bob's catalog now lists nothing unknown; his answer to the AnnounceRequest repeats his Have.
        #expect(gossip.messageReceived(catalog, from: Self.bob, now: Self.start).isEmpty)
        #expect(gossip.messageReceived(.announce(signed), from: Self.bob, now: Self.start).isEmpty)
        _ = gossip.messageReceived(have, from: Self.bob, now: Self.start)
        #expect(gossip.holders(of: signed.id) == [Self.alice: .complete, Self.bob: .complete])
        // Asked once: a second verification of the same announcement asks no one.
        #expect(gossip.announcementVerified(signed, from: Self.bob, now: Self.start).isEmpty)
        // What a peer may make us remember is bounded.
        for n in 0..<(GossipState.maxUnknownHavesPerPeer + 10) {
            let id = Blake2b.hash([UInt8(truncatingIfNeeded: n), UInt8(truncatingIfNeeded: n >> 8), 7])
            _ = gossip.messageReceived(.have(manifest: id, availability: .complete), from: Self.carol, now: Self.start)
        }
        #expect(gossip.peers[Self.carol]?.unknownHaves.count == GossipState.maxUnknownHavesPerPeer)
    }

    @Test("Partial availability beyond the per-peer budget is ignored")
    func partialBudget() throws {
        var gossip = Self.machine { $0.maxPartialHoldingsPerPeer = 2 }
        let signed = try (0..<3).map { try Self.header("m\($0)") }
        gossip.catalogLoaded(signed.map { (signed: $0, holding: nil, chunks: nil) })
        _ = gossip.peerConnected(Self.alice, listenAddress: nil, now: Self.start)
        for header in signed {
            let have = WireMessage.haveChunks(manifest: header.id, indices: [1])
            _ = gossip.messageReceived(have, from: Self.alice, now: Self.start)
        }
        #expect(signed.map { gossip.holders(of: $0.id).count } == [1, 1, 0])
    }

    @Test("A Have complete is a first-hand holder notice, relayed once to the others; a failed fetch dials it")
    func holderNotices() throws {
        let signed = try Self.header("a")
        var gossip = Self.connected([Self.alice, Self.bob], knowing: [signed])
        let have = WireMessage.have(manifest: signed.id, availability: .complete)
        let notice = HolderNotice(
            manifest: signed.id, nodeID: Self.alice, host: Self.address(Self.alice).host, port: 7000)
        let actions = gossip.messageReceived(have, from: Self.alice, now: Self.start)
        #expect(actions == [.availabilityChanged, .broadcast(.holder(notice), except: [Self.alice])])
        // Relayed once: the same notice from Bob is not relayed again.
        #expect(gossip.messageReceived(.holder(notice), from: Self.bob, now: Self.start).isEmpty)
        // A holder we are not connected to, of a manifest we are downloading: worth a dial.
        let carolNotice = HolderNotice(manifest: signed.id, nodeID: Self.carol, host: "10.0.0.9", port: 9)
        _ = gossip.downloadRequested(signed.id, now: Self.start)
        let dial = gossip.messageReceived(.holder(carolNotice), from: Self.bob, now: Self.start)
        #expect(dial.contains(.dialHolder(PeerAddress(nodeID: Self.carol, host: "10.0.0.9", port: 9))))
        #expect(gossip.liveHolders(signed.id, now: Self.start).count == 2)
        // Notices expire after their lifetime and are purged.
        let later = Self.start + .seconds(1801)
        #expect(gossip.liveHolders(signed.id, now: later).isEmpty)
        _ = gossip.timerFired(now: Self.start)
        _ = gossip.timerFired(now: later)
        #expect(gossip.holderNotices.isEmpty)
    }

    @Test("Requesting a download dials known holders we are not connected to, then starts it once")
    func downloadRequested() throws {
        let signed = try Self.header("a")
        var gossip = Self.connected([Self.alice], knowing: [signed])
        let carol = HolderNotice(manifest: signed.id, nodeID: Self.carol, host: "10.0.0.9", port: 9)
        _ = gossip.messageReceived(.holder(carol), from: Self.alice, now: Self.start)
        #expect(
            gossip.downloadRequested(signed.id, now: Self.start)
                == [.dialHolder(PeerAddress(nodeID: Self.carol, host: "10.0.0.9", port: 9)), .startDownload(signed.id)])
        #expect(gossip.downloadRequested(signed.id, now: Self.start).isEmpty, "one download per manifest")
        var empty = Self.machine()
        #expect(empty.downloadRequested(signed.id, now: Self.start).isEmpty, "not in the catalog")
    }

    @Test("Failed fetches are retried with a backoff that doubles up to its cap; a new holder brings it forward")
    func retryBackoff() throws {
        let signed = try Self.header("a")
        var gossip = Self.connected([Self.alice], knowing: [signed])
        var now = Self.start
        var delays: [Duration] = []
        for _ in 0..<8 {
            _ = gossip.downloadRequested(signed.id, now: now)
            let actions = gossip.downloadFinished(signed.id, outcome: .failed, now: now)
            guard case .retryScheduled(signed.id, _, let delay)? = actions.first else {
                Issue.record("no retry: \(actions)")
                return
            }
            #expect(actions.last == .scheduleTimer(at: now + delay))
            delays.append(delay)
            now = now + delay
            // Due: the timer restarts it.
            #expect(gossip.timerFired(now: now).contains(.startDownload(signed.id)))
        }
        #expect(delays.map(\.seconds) == [5, 10, 20, 40, 80, 160, 300, 300])
        // A cancelled download is not retried; a successful one clears the backoff.
        #expect(gossip.downloadFinished(signed.id, outcome: .cancelled, now: now).isEmpty)
        _ = gossip.downloadRequested(signed.id, now: now)
        _ = gossip.downloadFinished(signed.id, outcome: .failed, now: now)
        #expect(gossip.retries[signed.id]?.notBefore == now + .seconds(300))
        _ = gossip.messageReceived(.haveChunks(manifest: signed.id, indices: [1]), from: Self.alice, now: now)
        #expect(gossip.retries[signed.id]?.notBefore == now + .seconds(1))
        _ = gossip.downloadRequested(signed.id, now: now)
        #expect(gossip.downloadFinished(signed.id, outcome: .succeeded, now: now).isEmpty)
        #expect(gossip.retries.isEmpty)
    }

    @Test("Anti-entropy: a differing digest asks for the catalog, which comes in pages; unknown ids are asked for")
    func antiEntropyPages() throws {
        let count = WireLimits.maxCatalogIDsPerFrame + 10
        let ids = (0..<count).map { Blake2b.hash([UInt8(truncatingIfNeeded: $0), UInt8(truncatingIfNeeded: $0 >> 8)]) }
        var gossip = Self.connected([Self.alice], knowing: [try Self.header("a")])
        let digest = WireMessage.catalogDigest(count: 0, digest: ids[0])
        #expect(
            gossip.messageReceived(digest, from: Self.alice, now: Self.start)
                == [.send(.catalogRequest, to: Self.alice)])
        // Asking for more ids than a frame holds: AnnounceRequests of at most `maxAnnounceRequestIDs` each.
        let catalog = WireMessage.catalog(ids: ids, more: false)
        let asked = Self.sends(gossip.messageReceived(catalog, from: Self.alice, now: Self.start), to: Self.alice)
        let sizes = asked.map { if case .announceRequest(let ids) = $0 { ids.count } else { -1 } }
        #expect(sizes.reduce(0, +) == count && sizes.allSatisfy { $0 <= WireLimits.maxAnnounceRequestIDs })
        // Answering a CatalogRequest: pages of `maxCatalogIDsPerFrame`, `more` on all but the last.
        var big = Self.machine()
        big.catalogLoaded(try (0..<count).map { (signed: try Self.header("c\($0)"), holding: nil, chunks: nil) })
        _ = big.peerConnected(Self.alice, listenAddress: nil, now: Self.start)
        let pages = Self.sends(big.messageReceived(.catalogRequest, from: Self.alice, now: Self.start), to: Self.alice)
        let shape = pages.map { if case .catalog(let ids, let more) = $0 { "\(ids.count) \(more)" } else { "?" } }
        #expect(shape == ["\(WireLimits.maxCatalogIDsPerFrame) true", "10 false"])
        // The same digest as ours: nothing to do.
        let same = WireMessage.catalogDigest(count: big.catalogCount, digest: big.catalogDigest())
        #expect(big.messageReceived(same, from: Self.alice, now: Self.start).isEmpty)
    }

    @Test("Catalog exchanges over a peer's budget are throttled until the budget refills")
    func catalogBudget() throws {
        var gossip = Self.connected([Self.alice])
        let burst = gossip.configuration.catalogRequestBurst
        for _ in 0..<burst {
            let answer = gossip.messageReceived(.catalogRequest, from: Self.alice, now: Self.start)
            #expect(Self.sends(answer, to: Self.alice).count == 1)
        }
        #expect(
            gossip.messageReceived(.catalogRequest, from: Self.alice, now: Self.start)
                == [.throttled(Self.alice, request: "CatalogRequest")])
        #expect(gossip.counters.throttled == 1)
        // One more per 5 s (0.2 a second).
        let later = Self.start + .seconds(5)
        let refilled = gossip.messageReceived(.catalogRequest, from: Self.alice, now: later)
        #expect(Self.sends(refilled, to: Self.alice).count == 1)
    }

    @Test("An AnnounceRequest gets the announcement, our availability and the holders we know")
    func announceRequest() throws {
        let signed = try Self.header("a")
        var gossip = Self.machine()
        gossip.catalogLoaded([(signed: signed, holding: .complete, chunks: 4)])
        _ = gossip.peerConnected(Self.alice, listenAddress: Self.address(Self.alice), now: Self.start)
        _ = gossip.peerConnected(Self.bob, listenAddress: Self.address(Self.bob, port: 7001), now: Self.start)
        _ = gossip.messageReceived(.have(manifest: signed.id, availability: .complete), from: Self.bob, now: Self.start)
        let sent = Self.sends(
            gossip.messageReceived(.announceRequest(ids: [signed.id, signed.id]), from: Self.alice, now: Self.start),
            to: Self.alice)
        let bobNotice = HolderNotice(manifest: signed.id, nodeID: Self.bob, host: "10.0.0.1", port: 7001)
        #expect(sent == [.announce(signed), .have(manifest: signed.id, availability: .complete), .holder(bobNotice)])
    }

    @Test("Stored chunks are announced in batched HaveChunks at the next flush, not to complete holders")
    func flushHaves() throws {
        let signed = try Self.header("a", chunks: 40_000)
        var gossip = Self.connected([Self.alice, Self.bob], knowing: [signed])
        _ = gossip.messageReceived(.have(manifest: signed.id, availability: .complete), from: Self.bob, now: Self.start)
        let positions = Array(0..<(WireLimits.maxHaveIndicesPerFrame + 5))
        #expect(
            gossip.chunksStored(signed.id, positions: positions, total: 40_000, now: Self.start)
                == [.scheduleTimer(at: Self.start + .milliseconds(100))])
        let actions = gossip.timerFired(now: Self.start + .milliseconds(100))
        let toAlice = Self.sends(actions, to: Self.alice).map {
            if case .haveChunks(_, let indices) = $0 { indices.count } else { -1 }
        }
        #expect(toAlice == [WireLimits.maxHaveIndicesPerFrame, 5])
        #expect(Self.sends(actions, to: Self.bob).isEmpty)
        // A completed snapshot is told to everyone.
        #expect(
            gossip.snapshotComplete(signed.id)
                == [.broadcast(.have(manifest: signed.id, availability: .complete), except: [])])
    }

    @Test("A download that holds nothing yet says so with an empty HaveChunks")
    func chunksPresent() throws {
        let signed = try Self.header("a")
        var gossip = Self.connected([Self.alice], knowing: [signed])
        #expect(
            gossip.chunksPresent(signed.id, positions: [], total: 20)
                == [.broadcast(.haveChunks(manifest: signed.id, indices: []), except: [])])
        var bits = Bitset(capacity: 20)
        bits.insert(2)
        #expect(
            gossip.chunksPresent(signed.id, positions: [2], total: 20)
                == [.broadcast(.have(manifest: signed.id, availability: .partial(bits)), except: [])])
    }

    @Test("Holder notices reach a late peer in batches; the timer asks to be called again while work is left")
    func holderReplay() throws {
        let signed = try (0..<300).map { try Self.header("m\($0)") }
        var gossip = Self.connected([Self.alice], knowing: signed)
        for (n, header) in signed.enumerated() {
            let notice = HolderNotice(manifest: header.id, nodeID: Self.carol, host: "10.0.1.1", port: UInt16(n + 1))
            _ = gossip.messageReceived(.holder(notice), from: Self.alice, now: Self.start)
        }
        let joined = gossip.peerConnected(Self.bob, listenAddress: nil, now: Self.start)
        #expect(joined.contains(.scheduleTimer(at: Self.start + .milliseconds(100))))
        let first = gossip.timerFired(now: Self.start + .milliseconds(100))
        #expect(Self.sends(first, to: Self.bob).count == GossipState.holderReplayBatch)
        #expect(first.last == .scheduleTimer(at: Self.start + .milliseconds(200)))
        let second = gossip.timerFired(now: Self.start + .milliseconds(200))
        #expect(Self.sends(second, to: Self.bob).count == 300 - GossipState.holderReplayBatch)
    }

    @Test("A local snapshot is announced once and its completeness told; a gc that shrinks it is re-advertised")
    func localSnapshots() throws {
        let signed = try Self.header("a")
        var gossip = Self.connected([Self.alice])
        #expect(
            gossip.localSnapshotAdded(signed, chunks: 8, complete: true) == [
                .broadcast(.announce(signed), except: []),
                .broadcast(.have(manifest: signed.id, availability: .complete), except: []),
            ])
        var bits = Bitset(capacity: 8)
        bits.insert(1)
        #expect(gossip.localHoldingsRefreshed([(id: signed.id, holding: .complete)]).isEmpty)
        #expect(
            gossip.localHoldingsRefreshed([(id: signed.id, holding: .partial(bits))])
                == [.broadcast(.have(manifest: signed.id, availability: .partial(bits)), except: [])])
        #expect(
            gossip.localHoldingsRefreshed([(id: signed.id, holding: nil)])
                == [.broadcast(.have(manifest: signed.id, availability: .partial(Bitset())), except: [])])
        #expect(gossip.localHolding(signed.id) == nil)
    }
}
