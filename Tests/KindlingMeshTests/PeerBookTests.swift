import KindlingCrypto
import KindlingTesting
import KindlingWire
import Testing

@testable import KindlingMesh

/// PeerBook fed events on a made-up clock; every test checks the actions it returns.
@Suite("Peer book state machine")
struct PeerBookTests {
    typealias Action = PeerBook.Action
    static let start = ContinuousClock.now
    static let me = Fixtures.key(1).publicKey
    static let seedAddress = HostPort(host: "10.9.9.9", port: 7000)

    static func book(seed: UInt64 = 1, _ adjust: (inout MeshConfiguration) -> Void = { _ in }) -> PeerBook {
        var mesh = MeshConfiguration(nodeKey: Fixtures.key(1), trust: TestTrust.policy)
        adjust(&mesh)
        return PeerBook(configuration: PeerBook.Configuration(mesh), seed: seed)
    }

    static func id(_ n: Int) -> PublicKey { Fixtures.key(UInt8(10 + n)).publicKey }

    static func peer(
        _ n: Int, outbound: Bool = false, host: String? = nil, listenPort: UInt16? = nil, at offset: Int = 0
    ) -> PeerBook.Peer {
        let host = host ?? "10.0.0.\(n)"
        return PeerBook.Peer(
            nodeID: id(n), outbound: outbound,
            listenAddress: listenPort.map { PeerAddress(nodeID: id(n), host: host, port: $0) }, remoteHost: host,
            connectedAt: start + .seconds(offset))
    }

    static func admit(_ book: inout PeerBook, _ peer: PeerBook.Peer, idle: Bool = true) -> PeerBook.Admission {
        book.peerAuthenticated(peer, now: start + .seconds(100), idle: { _ in idle })
    }

    @Test("An admitted peer is asked for peers (peer exchange); only its answer is taken, once")
    func peerExchange() {
        var book = Self.book()
        #expect(Self.admit(&book, Self.peer(1, listenPort: 7001)) == .admitted([.send(.getPeers, to: Self.id(1))]))
        let learned = PeerAddress(nodeID: Self.id(5), host: "10.0.0.5", port: 7005)
        let unsolicited = PeerAddress(nodeID: Self.id(6), host: "10.0.0.6", port: 7006)
        book.peersReceived([learned], from: Self.id(1), now: Self.start)
        book.peersReceived([unsolicited], from: Self.id(1), now: Self.start)
        #expect(book.knownAddresses.contains(HostPort(host: "10.0.0.5", port: 7005)))
        #expect(!book.knownAddresses.contains(HostPort(host: "10.0.0.6", port: 7006)), "unsolicited Peers are ignored")
        // Asked by a peer: the others' listen addresses.
        _ = Self.admit(&book, Self.peer(2, listenPort: 7002))
        #expect(
            book.peersRequested(by: Self.id(2))
                == [.send(.peers([PeerAddress(nodeID: Self.id(1), host: "10.0.0.1", port: 7001)]), to: Self.id(2))])
    }

    @Test("Refusals: shutting down, banned, already connected, no free slot; each with its typed code")
    func refusals() {
        var book = Self.book { $0.maxPeers = 1 }
        _ = Self.admit(&book, Self.peer(1))
        #expect(Self.admit(&book, Self.peer(1)) == .refused(.alreadyConnected, message: "already connected"))
        #expect(Self.admit(&book, Self.peer(2), idle: false) == .refused(.tooManyPeers, message: "too many peers"))
        _ = book.ban(Self.id(3), reason: "lied", now: Self.start + .seconds(100))
        #expect(Self.admit(&book, Self.peer(3)) == .refused(.banned, message: "banned"))
        book.shutdown()
        #expect(Self.admit(&book, Self.peer(4)) == .refused(.shuttingDown, message: "node is shutting down"))
    }

    @Test("Inbound peers get maxPeers less the reserved outbound slots; outbound and bootstrap peers get them all")
    func slotLimits() {
        var book = Self.book {
            $0.maxPeers = 8
            $0.reservedOutboundSlots = 2
            $0.bootstrapPeers = [HostPort(host: "10.0.0.50", port: 7050)]
        }
        #expect(book.configuration.maxInboundPeers == 6)
        let full = PeerBook.Admission.refused(.tooManyPeers, message: "too many peers")
        for n in 0..<6 { #expect(Self.admit(&book, Self.peer(n), idle: false) != full) }
        #expect(Self.admit(&book, Self.peer(6), idle: false) == full)
        // Our own connections and a bootstrap peer dialling in use the reserved slots.
        let outbound = Self.admit(&book, Self.peer(7, outbound: true), idle: false)
        #expect(outbound == .admitted([.send(.getPeers, to: Self.id(7))]))
        let bootstrap = Self.peer(50, host: "10.0.0.50", listenPort: 7050)
        #expect(Self.admit(&book, bootstrap, idle: false) == .admitted([.send(.getPeers, to: Self.id(50))]))
        #expect(book.connectedCount == 8 && book.inboundCount == 7)
        #expect(Self.admit(&book, Self.peer(8, outbound: true), idle: false) == full)
    }

    @Test("When full, the youngest idle inbound peer of the busiest source is evicted; busy ones never")
    func eviction() {
        var book = Self.book {
            $0.maxPeers = 4
            $0.reservedOutboundSlots = 0
        }
        _ = Self.admit(&book, Self.peer(1, host: "10.1.1.1", at: 1))
        _ = Self.admit(&book, Self.peer(2, host: "10.2.2.2", at: 2))
        _ = Self.admit(&book, Self.peer(3, host: "10.2.2.2", at: 3))
        _ = Self.admit(&book, Self.peer(4, host: "10.1.1.1", at: 4))
        // Peer 1 is busy: 10.2.2.2 has the most idle peers (two), and of those the youngest (3) goes, although
        // peer 4 of the other source is younger still.
        let admission = book.peerAuthenticated(Self.peer(5, at: 5), now: Self.start + .seconds(100)) {
            $0 != Self.id(1)
        }
        let eviction = Action.disconnect(
            Self.id(3), code: .tooManyPeers, message: "too many peers: making room for another")
        #expect(admission == .admitted([eviction, .send(.getPeers, to: Self.id(5))]))
        #expect(!book.isConnected(Self.id(3)) && book.isConnected(Self.id(5)))
        #expect(book.counters.evictions == 1)
        // With only busy peers, a newcomer is refused instead.
        let refused = book.peerAuthenticated(Self.peer(6), now: Self.start + .seconds(100)) { _ in false }
        #expect(refused == .refused(.tooManyPeers, message: "too many peers"))
    }

    @Test("Strikes accumulate per node id; the third bans it; strikes and bans expire after banDuration")
    func strikesAndBans() {
        var book = Self.book()
        let now = Self.start
        let offender = Self.id(1)
        #expect(book.offence(offender, reason: "bad", now: now) == [.strike(offender, reason: "bad", count: 1)])
        #expect(book.offence(offender, reason: "bad", now: now) == [.strike(offender, reason: "bad", count: 2)])
        #expect(
            book.offence(offender, reason: "bad", now: now) == [
                .strike(offender, reason: "bad", count: 3),
                .ban(
                    offender, code: .banned, reason: "bad (3 offences)", message: "banned for 600 s: bad (3 offences)"),
            ])
        #expect(book.isBanned(offender, now: now + .seconds(599)))
        #expect(!book.isBanned(offender, now: now + .seconds(600)))
        #expect(book.counters.bans == 1 && book.counters.strikes == 3)
        // A strike long ago has expired: counting starts again.
        let other = Self.id(2)
        _ = book.offence(other, reason: "bad", now: now)
        #expect(
            book.offence(other, reason: "bad", now: now + .seconds(601))
                == [.strike(other, reason: "bad", count: 1)])
        // Expired records are purged by the timer.
        _ = book.timerFired(now: now + .seconds(600))
        _ = book.timerFired(now: now + .seconds(1300))
        #expect(book.bans.isEmpty && book.strikes.isEmpty)
        // A protocol error bans with its own code.
        #expect(
            book.ban(other, reason: "garbage", code: .protocolError, now: now)
                == [.ban(other, code: .protocolError, reason: "garbage", message: "banned for 600 s: garbage")])
    }

    @Test("Ban records are bounded: a flood of offenders cannot grow the map")
    func boundedBans() {
        var book = Self.book { $0.maxBanRecords = 3 }
        for n in 0..<10 { _ = book.ban(Self.id(n), reason: "x", now: Self.start) }
        #expect(book.bans.count == 3)
        #expect(book.isBanned(Self.id(9), now: Self.start))
    }

    @Test("The timer dials bootstrap peers, then waits a backoff that doubles up to the cap with ±20 % jitter")
    func redialBackoff() {
        var book = Self.book {
            $0.bootstrapPeers = [Self.seedAddress]
            $0.redialBaseDelay = .seconds(1)
            $0.redialMaxDelay = .seconds(60)
        }
        var now = Self.start
        let first = book.timerFired(now: now)
        #expect(first == [.dial(Self.seedAddress), .scheduleTimer(at: now + .seconds(1))])
        // Dialling: not dialled twice.
        #expect(book.requestDial(Self.seedAddress, now: now).isEmpty)
        var delays: [Double] = []
        for _ in 0..<8 {
            book.dialFinished(Self.seedAddress, admitted: false, now: now)
            let notBefore = book.redial[Self.seedAddress]?.notBefore ?? now
            delays.append((notBefore - now).seconds)
            #expect(book.requestDial(Self.seedAddress, now: notBefore - .milliseconds(1)).isEmpty)
            #expect(book.requestDial(Self.seedAddress, now: notBefore) == [.dial(Self.seedAddress)])
            now = notBefore
        }
        for (delay, expected) in zip(delays, [1.0, 2, 4, 8, 16, 32, 60, 60]) {
            #expect(delay >= expected * 0.8 - 0.001 && delay <= expected * 1.2 + 0.001, "\(delays)")
        }
        // A learned address that fails is forgotten; a good connection that ends is redialled after the base delay.
        book.dialFinished(Self.seedAddress, admitted: true, now: now)
        #expect(book.redial[Self.seedAddress]?.notBefore == now + .seconds(1))
        let learned = HostPort(host: "10.0.0.5", port: 7005)
        let learnt = book.learn(learned)
        #expect(learnt)
        #expect(book.requestDial(learned, now: now) == [.dial(learned)])
        book.dialFinished(learned, admitted: false, now: now)
        #expect(!book.knownAddresses.contains(learned))
    }

    @Test("Dial candidates: not connected, not ourselves, at most what the dial target lacks")
    func dialCandidates() {
        var book = Self.book {
            $0.maxPeers = 8
            $0.reservedOutboundSlots = 2
        }
        #expect(book.configuration.dialTarget == 2)
        book.listening(port: 7000)
        for n in 1...5 { book.learn(HostPort(host: "10.0.0.\(n)", port: 7000)) }
        book.learn(HostPort(host: "127.0.0.1", port: 7000))
        _ = Self.admit(&book, Self.peer(1, host: "10.0.0.1", listenPort: 7000))
        let dials = book.timerFired(now: Self.start).compactMap {
            if case .dial(let address) = $0 { address } else { nil }
        }
        #expect(dials.count == 2)
        #expect(!dials.contains(HostPort(host: "10.0.0.1", port: 7000)) && !dials.contains { $0.host == "127.0.0.1" })
    }

    @Test("The same seed gives the same choices")
    func deterministic() {
        func run() -> [Action] {
            var book = Self.book(seed: 7) { $0.maxPeers = 4 }
            for n in 1...20 { book.learn(HostPort(host: "10.0.0.\(n)", port: 7000)) }
            return book.timerFired(now: Self.start)
        }
        #expect(run() == run())
    }

    @Test("The peer-exchange timer asks every peer for more peers while short of the dial target")
    func exchangeTimer() {
        var book = Self.book { $0.peerExchangeInterval = .seconds(60) }
        _ = Self.admit(&book, Self.peer(1))
        _ = book.timerFired(now: Self.start)
        let early = book.timerFired(now: Self.start + .seconds(30))
        #expect(!early.contains(.send(.getPeers, to: Self.id(1))))
        let due = book.timerFired(now: Self.start + .seconds(60))
        #expect(due.contains(.send(.getPeers, to: Self.id(1))))
    }

    @Test("The sweep dials up to the dial target, then stops and needs no timer; a dial that ends resumes it")
    func dialTarget() {
        var book = Self.book()
        #expect(book.configuration.dialTarget == 8)
        for n in 1...20 { book.learn(HostPort(host: "10.0.0.\(n)", port: 7000)) }
        let first = book.timerFired(now: Self.start)
        let dialled = first.compactMap { if case .dial(let address) = $0 { address } else { nil } }
        #expect(dialled.count == 8)
        #expect(!first.contains { if case .scheduleTimer = $0 { true } else { false } }, "nothing to do later")
        #expect(!book.wantsPeers)
        // Dials in flight count: a second later nothing more is dialled, although 24 usual slots are free.
        #expect(book.timerFired(now: Self.start + .seconds(1)).isEmpty)
        // The connections come up; one closes later: the next sweep (a second after the last one) replaces it.
        for address in dialled {
            let n = Int(address.host.split(separator: ".").last ?? "") ?? 0
            let peer = Self.peer(n, outbound: true, host: address.host, listenPort: 7000)
            _ = book.peerAuthenticated(peer, now: Self.start, idle: { _ in true })
        }
        #expect(book.timerFired(now: Self.start + .seconds(5)).isEmpty)
        // As a driver reports it: the peer leaves, then its dial ends; only the latter leaves the node short.
        let closed = dialled[0]
        let n = Int(closed.host.split(separator: ".").last ?? "") ?? 0
        #expect(book.peerDisconnected(Self.id(n), now: Self.start + .seconds(10)).isEmpty)
        #expect(
            book.dialFinished(closed, admitted: true, now: Self.start + .seconds(10))
                == [.scheduleTimer(at: Self.start + .seconds(10))])
        let again = book.timerFired(now: Self.start + .seconds(10))
        let redialled = again.compactMap { if case .dial(let address) = $0 { address } else { nil } }
        #expect(redialled.count == 1 && !redialled.contains(closed), "\(again)")
    }

    @Test("A dial that fails while short of peers asks for the next sweep, at most one a second")
    func failedDialWakesTheSweep() {
        var book = Self.book()
        let learned = HostPort(host: "10.0.0.5", port: 7005)
        book.learn(learned)
        #expect(book.timerFired(now: Self.start) == [.dial(learned), .scheduleTimer(at: Self.start + .seconds(1))])
        #expect(
            book.dialFinished(learned, admitted: false, now: Self.start + .milliseconds(300))
                == [.scheduleTimer(at: Self.start + .seconds(1))])
        // Far from the last sweep: now.
        #expect(
            book.dialFinished(learned, admitted: false, now: Self.start + .seconds(5))
                == [.scheduleTimer(at: Self.start + .seconds(5))])
    }

    @Test("At its dial target a node neither dials nor asks for peers, whatever slots are free or inbound peers leave")
    func noChurnAtTarget() {
        var book = Self.book {
            $0.maxPeers = 8
            $0.reservedOutboundSlots = 2
            $0.peerExchangeInterval = .seconds(60)
        }
        for n in 1...10 { book.learn(HostPort(host: "10.0.1.\(n)", port: 7000)) }
        let dials = book.timerFired(now: Self.start).compactMap { if case .dial(let a) = $0 { a } else { nil } }
        #expect(dials.count == 2)
        for (n, address) in dials.enumerated() {
            _ = book.peerAuthenticated(
                Self.peer(n + 1, outbound: true, host: address.host), now: Self.start, idle: { _ in true })
        }
        _ = Self.admit(&book, Self.peer(20))
        #expect(book.timerFired(now: Self.start + .seconds(60)).isEmpty, "no dial, no GetPeers, no timer")
        #expect(book.peerDisconnected(Self.id(20), now: Self.start + .seconds(61)).isEmpty)
        #expect(book.timerFired(now: Self.start + .seconds(120)).isEmpty)
    }

    @Test("Peers heard on the LAN take slots of their own, up to maxLANPeers; then the usual ones")
    func lanSlots() {
        var book = Self.book {
            $0.maxPeers = 2
            $0.maxLANPeers = 2
        }
        let full = PeerBook.Admission.refused(.tooManyPeers, message: "too many peers")
        for n in 0..<2 { #expect(Self.admit(&book, Self.peer(n), idle: false) != full) }
        #expect(Self.admit(&book, Self.peer(2), idle: false) == full)
        for n in 3..<6 {
            _ = book.lanPeerSeen(Self.id(n), at: HostPort(host: "192.168.1.\(n)", port: 7000), now: Self.start)
        }
        #expect(Self.admit(&book, Self.peer(3), idle: false) == .admitted([.send(.getPeers, to: Self.id(3))]))
        #expect(Self.admit(&book, Self.peer(4), idle: false) == .admitted([.send(.getPeers, to: Self.id(4))]))
        // The LAN's slots are taken: a third colleague needs a usual one, and they are full too.
        #expect(Self.admit(&book, Self.peer(5), idle: false) == full)
        #expect(book.connectedCount == 4)
        // One leaves: its LAN slot is free again, and the usual slots stayed as they were.
        book.peerDisconnected(Self.id(3), now: Self.start)
        #expect(Self.admit(&book, Self.peer(5), idle: false) == .admitted([.send(.getPeers, to: Self.id(5))]))
        #expect(Self.admit(&book, Self.peer(2), idle: false) == full)
        #expect(book.dialCandidates(now: Self.start + .seconds(100)).isEmpty)
    }

    @Test("A LAN peer is learned once and dialled; a holder worth a connection is dialled unless banned")
    func lanAndHolders() {
        var book = Self.book()
        let address = HostPort(host: "192.168.1.5", port: 7000)
        #expect(
            book.lanPeerSeen(Self.id(1), at: address, now: Self.start)
                == [.discoveredOnLAN(address), .dial(address)])
        #expect(book.lanPeerSeen(Self.id(1), at: address, now: Self.start).isEmpty, "already dialling")
        #expect(book.lanPeerSeen(Self.me, at: address, now: Self.start).isEmpty, "ourselves")
        #expect(book.counters.lanDiscovered == 1)
        let holder = PeerAddress(nodeID: Self.id(2), host: "10.0.0.2", port: 7002)
        #expect(book.holderWanted(holder, now: Self.start) == [.dial(HostPort(host: "10.0.0.2", port: 7002))])
        let banned = PeerAddress(nodeID: Self.id(3), host: "10.0.0.3", port: 7003)
        _ = book.ban(Self.id(3), reason: "x", now: Self.start)
        #expect(book.holderWanted(banned, now: Self.start).isEmpty)
    }
}
