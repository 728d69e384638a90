import KindlingCrypto
import KindlingTesting
import KindlingWire
import Testing

@testable import KindlingMesh

/// TrustGossip fed events on a made-up clock; every test checks the actions it returns.
@Suite("Trust gossip state machine")
struct TrustGossipTests {
    typealias Action = TrustGossip.Action
    static let start = ContinuousClock.now
    static let alice = Fixtures.key(2).publicKey
    static let bob = Fixtures.key(3).publicKey
    static let carol = Fixtures.key(4).publicKey

    static func connected(current: UInt64, _ peers: [PublicKey]) -> TrustGossip {
        var gossip = TrustGossip(current: current)
        for peer in peers { _ = gossip.peerConnected(peer, now: start) }
        return gossip
    }

    static func asks(_ actions: [Action]) -> [(UInt64, PublicKey)] {
        actions.compactMap { if case .send(.getTrust(let version), let peer) = $0 { (version, peer) } else { nil } }
    }

    @Test("A new peer hears our version; with none we say nothing")
    func advertiseOnConnect() {
        var holding = TrustGossip(current: 3)
        #expect(holding.peerConnected(Self.alice, now: Self.start) == [.send(.trustVersion(3), to: Self.alice)])
        var empty = TrustGossip(current: 0)
        #expect(empty.peerConnected(Self.alice, now: Self.start).isEmpty)
    }

    @Test("A newer version is asked for from its holder, one request at a time, the newest first")
    func asksNewest() {
        var gossip = Self.connected(current: 1, [Self.alice, Self.bob, Self.carol])
        #expect(
            gossip.messageReceived(.trustVersion(2), from: Self.alice, now: Self.start)
                == [.send(.getTrust(version: 2), to: Self.alice)])
        // Another advertisement while a request is out asks nothing more.
        #expect(gossip.messageReceived(.trustVersion(3), from: Self.bob, now: Self.start).isEmpty)
        // Alice answers: the bytes go to the driver; nothing else is asked until it has judged them.
        #expect(
            gossip.messageReceived(.trustDocument(version: 2, bytes: [7]), from: Self.alice, now: Self.start)
                == [.evaluate([7], version: 2, from: Self.alice)])
        // Accepted: everyone hears 2, then Bob is asked for 3.
        let actions = gossip.documentAccepted(version: 2, now: Self.start)
        let told = actions.compactMap { if case .send(.trustVersion(2), let peer) = $0 { peer } else { nil } }
        #expect(Set(told) == [Self.alice, Self.bob, Self.carol])
        #expect(Self.asks(actions).map(\.0) == [3])
        #expect(Self.asks(actions).map(\.1) == [Self.bob])
    }

    @Test("An older or equal version is no reason to ask, and no offence")
    func olderIgnored() {
        var gossip = Self.connected(current: 5, [Self.alice])
        #expect(gossip.messageReceived(.trustVersion(4), from: Self.alice, now: Self.start).isEmpty)
        #expect(gossip.messageReceived(.trustVersion(5), from: Self.alice, now: Self.start).isEmpty)
        #expect(gossip.pendingRequest == nil)
    }

    @Test("A request that times out goes to another holder; the first is asked again only after it re-advertises")
    func timeout() {
        var gossip = Self.connected(current: 1, [Self.alice, Self.bob])
        _ = gossip.messageReceived(.trustVersion(2), from: Self.alice, now: Self.start)
        _ = gossip.messageReceived(.trustVersion(2), from: Self.bob, now: Self.start)
        let first = gossip.pendingRequest?.peer
        #expect(gossip.timerFired(now: Self.start + .seconds(4)).isEmpty)
        let retry = gossip.timerFired(now: Self.start + .seconds(5))
        #expect(Self.asks(retry).count == 1)
        #expect(Self.asks(retry).first?.1 != first)
        // The second times out too: nobody is left to ask.
        #expect(gossip.timerFired(now: Self.start + .seconds(10)).isEmpty)
        #expect(gossip.pendingRequest == nil)
        // A late answer to a request given up is ignored.
        #expect(
            gossip.messageReceived(.trustDocument(version: 2, bytes: [1]), from: Self.alice, now: Self.start).isEmpty)
        // Alice advertises again: she is worth another try.
        let again = gossip.messageReceived(.trustVersion(2), from: Self.alice, now: Self.start + .seconds(11))
        #expect(Self.asks(again).map(\.1) == [Self.alice])
    }

    @Test("A holder that timed out is asked again 30 s later, even if it does not advertise again")
    func retryAfterTimeout() {
        var gossip = Self.connected(current: 1, [Self.alice])
        _ = gossip.messageReceived(.trustVersion(2), from: Self.alice, now: Self.start)
        #expect(gossip.timerFired(now: Self.start + .seconds(5)).isEmpty)
        #expect(gossip.timerFired(now: Self.start + .seconds(34)).isEmpty)
        #expect(
            gossip.timerFired(now: Self.start + .seconds(35)) == [.send(.getTrust(version: 2), to: Self.alice)])
    }

    @Test("A refused document is not asked for again from that peer, and nothing strikes or bans")
    func refusedNotAskedAgain() {
        var gossip = Self.connected(current: 1, [Self.alice, Self.bob])
        _ = gossip.messageReceived(.trustVersion(2), from: Self.alice, now: Self.start)
        _ = gossip.messageReceived(.trustDocument(version: 2, bytes: [9]), from: Self.alice, now: Self.start)
        // Refused: nobody else holds 2, so nothing is asked.
        #expect(gossip.documentRefused(version: 2, from: Self.alice, now: Self.start).isEmpty)
        // Alice advertising 2 again does not make us ask her again.
        #expect(gossip.messageReceived(.trustVersion(2), from: Self.alice, now: Self.start).isEmpty)
        // Bob holds 2 as well: he is asked.
        #expect(
            gossip.messageReceived(.trustVersion(2), from: Self.bob, now: Self.start)
                == [.send(.getTrust(version: 2), to: Self.bob)])
        // A newer version from Alice is a new question.
        _ = gossip.messageReceived(.trustDocument(version: 2, bytes: [9]), from: Self.bob, now: Self.start)
        _ = gossip.documentRefused(version: 2, from: Self.bob, now: Self.start)
        #expect(
            gossip.messageReceived(.trustVersion(3), from: Self.alice, now: Self.start)
                == [.send(.getTrust(version: 3), to: Self.alice)])
    }

    @Test("A peer that answers it does not hold the version is not asked for it again")
    func notHeld() {
        var gossip = Self.connected(current: 1, [Self.alice, Self.bob])
        _ = gossip.messageReceived(.trustVersion(4), from: Self.alice, now: Self.start)
        _ = gossip.messageReceived(.trustVersion(4), from: Self.bob, now: Self.start)
        let asked = gossip.pendingRequest?.peer ?? Self.alice
        let other = asked == Self.alice ? Self.bob : Self.alice
        let next = gossip.messageReceived(.trustDocument(version: 4, bytes: []), from: asked, now: Self.start)
        #expect(next == [.send(.getTrust(version: 4), to: other)])
    }

    @Test("A document nobody asked for, or for another version than asked, is never evaluated")
    func unsolicited() {
        var gossip = Self.connected(current: 1, [Self.alice, Self.bob])
        #expect(
            gossip.messageReceived(.trustDocument(version: 9, bytes: [1]), from: Self.alice, now: Self.start).isEmpty)
        _ = gossip.messageReceived(.trustVersion(2), from: Self.alice, now: Self.start)
        #expect(
            gossip.messageReceived(.trustDocument(version: 3, bytes: [1]), from: Self.alice, now: Self.start).isEmpty)
        #expect(
            gossip.messageReceived(.trustDocument(version: 2, bytes: [1]), from: Self.bob, now: Self.start).isEmpty)
        #expect(gossip.pendingRequest?.version == 2)
    }

    @Test("Roots changed in between: the intermediate version is asked for first, then the newer one again")
    func intermediate() {
        var gossip = Self.connected(current: 2, [Self.alice, Self.bob])
        _ = gossip.messageReceived(.trustVersion(5), from: Self.alice, now: Self.start)
        _ = gossip.messageReceived(.trustDocument(version: 5, bytes: [5]), from: Self.alice, now: Self.start)
        #expect(
            gossip.intermediateNeeded(3, for: 5, from: Self.alice, now: Self.start)
                == [.send(.getTrust(version: 3), to: Self.alice)])
        _ = gossip.messageReceived(.trustDocument(version: 3, bytes: [3]), from: Self.alice, now: Self.start)
        let accepted = gossip.documentAccepted(version: 3, now: Self.start)
        #expect(Self.asks(accepted).map(\.0) == [5])
    }

    @Test("When nobody holds the intermediate version, the document that needed it is not asked for again")
    func intermediateUnavailable() {
        var gossip = Self.connected(current: 2, [Self.alice])
        _ = gossip.messageReceived(.trustVersion(5), from: Self.alice, now: Self.start)
        _ = gossip.messageReceived(.trustDocument(version: 5, bytes: [5]), from: Self.alice, now: Self.start)
        _ = gossip.intermediateNeeded(3, for: 5, from: Self.alice, now: Self.start)
        // Alice does not hold 3 either: we stop, instead of asking for 5 and 3 in a loop...
        #expect(
            gossip.messageReceived(.trustDocument(version: 3, bytes: []), from: Self.alice, now: Self.start).isEmpty)
        #expect(gossip.pendingRequest == nil)
        #expect(gossip.timerFired(now: Self.start + .seconds(29)).isEmpty)
        // ...and try 5 again 30 s later (someone may hold 3 by then).
        #expect(Self.asks(gossip.timerFired(now: Self.start + .seconds(30))).map(\.0) == [5])
    }

    @Test("A disconnected peer's request goes to another holder")
    func disconnect() {
        var gossip = Self.connected(current: 1, [Self.alice, Self.bob])
        _ = gossip.messageReceived(.trustVersion(2), from: Self.alice, now: Self.start)
        _ = gossip.messageReceived(.trustVersion(2), from: Self.bob, now: Self.start)
        let asked = gossip.pendingRequest?.peer ?? Self.alice
        let other = asked == Self.alice ? Self.bob : Self.alice
        #expect(gossip.peerDisconnected(asked, now: Self.start) == [.send(.getTrust(version: 2), to: other)])
    }

    @Test("GetTrust is served up to the burst, then once per second")
    func serveBudget() {
        var gossip = Self.connected(current: 1, [Self.alice])
        for _ in 0..<16 {
            #expect(
                gossip.messageReceived(.getTrust(version: 0), from: Self.alice, now: Self.start)
                    == [.serve(version: 0, to: Self.alice)])
        }
        #expect(
            gossip.messageReceived(.getTrust(version: 1), from: Self.alice, now: Self.start) == [.throttled(Self.alice)]
        )
        #expect(
            gossip.messageReceived(.getTrust(version: 1), from: Self.alice, now: Self.start + .seconds(1))
                == [.serve(version: 1, to: Self.alice)])
    }

    @Test("Messages from a peer that is not connected are ignored")
    func unknownPeer() {
        var gossip = TrustGossip(current: 1)
        #expect(gossip.messageReceived(.trustVersion(9), from: Self.alice, now: Self.start).isEmpty)
        #expect(gossip.messageReceived(.getTrust(version: 0), from: Self.alice, now: Self.start).isEmpty)
    }

    @Test("A local publish is told to every peer; the same version again is not")
    func localPublish() {
        var gossip = Self.connected(current: 1, [Self.alice])
        #expect(gossip.documentAccepted(version: 2, now: Self.start) == [.send(.trustVersion(2), to: Self.alice)])
        #expect(gossip.documentAccepted(version: 2, now: Self.start).isEmpty)
        #expect(gossip.current == 2)
    }
}
