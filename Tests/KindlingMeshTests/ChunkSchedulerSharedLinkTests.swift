import KindlingWire
import Testing

@testable import KindlingMesh

/// What the scheduler does about the links its sources share: our downlink and the site's uplink (near and far
/// class windows), and colleagues on the LAN downloading the same snapshot (the office split).
@Suite("Mesh: chunk scheduler on shared links")
struct ChunkSchedulerSharedLinkTests {
    typealias Scheduler = ChunkScheduler
    typealias Source = ChunkScheduler.SourceID
    typealias Action = ChunkScheduler.Action
    static func make(_ chunks: Int) -> Scheduler { ChunkSchedulerTests.make(chunks: chunks) }
    static func partial(_ positions: some Sequence<Int>) -> PeerHoldings { ChunkSchedulerTests.partial(positions) }
    static func ms(_ value: Int) -> Duration { .milliseconds(value) }

    static func requests(_ actions: [Action], from source: Source? = nil) -> [Int] {
        ChunkSchedulerTests.requests(actions, from: source)
    }

    static func requested(_ actions: [Action]) -> [(Int, Source)] {
        actions.compactMap { action in
            guard case .request(let position, let source, _) = action else { return nil }
            return (position, source)
        }
    }

    @Test("With a colleague on the LAN, ten far sources share one window: 4 at first and one per other source; ≤ 128")
    func farWindowIsShared() {
        // Enough chunks that the endgame (second copies) never starts.
        var scheduler = Self.make(2000)
        var now = Duration.zero
        let sources = (0..<10).map { Source($0) }
        // The colleague holds nothing yet: it only makes the uplink shared (and takes half the positions).
        let colleague: [Scheduler.AvailabilityChange] = [
            .added(Source(99), ownershipKey: 99, Self.partial([]), near: true)
        ]
        var outstanding = Self.requested(
            scheduler.availabilityChanged(
                colleague
                    + sources.map { .added($0, ownershipKey: UInt64(10 + $0.rawValue), Self.partial(0..<2000)) },
                now: now))
        // The first fills the window; each of the nine others still gets one request (it must be measured).
        #expect(outstanding.count == Scheduler.initialWindow + 9)
        var most = outstanding.count
        for _ in 0..<300 {
            guard !outstanding.isEmpty else { break }
            now += Self.ms(1)
            let (position, source) = outstanding.removeFirst()
            outstanding += Self.requested(
                scheduler.chunkArrived(position, from: source, .stored(new: true), latency: Self.ms(10), now: now))
            most = max(most, outstanding.count)
        }
        #expect(most >= Scheduler.maxClassWindow && most <= Scheduler.maxClassWindow + 10)
        // Replies that queue behind the link they share shrink it, whichever source they come from.
        for _ in 0..<20 {
            now += Self.ms(1)
            let (position, source) = outstanding.removeFirst()
            outstanding += Self.requested(
                scheduler.chunkArrived(position, from: source, .stored(new: true), latency: .seconds(2), now: now))
        }
        #expect(outstanding.count <= Scheduler.maxClassWindow - 20)
        // A timeout halves it.
        let (position, source) = outstanding.removeFirst()
        let after = scheduler.requestFailed(position, from: source, .timeout, elapsed: .seconds(6), now: now)
        #expect(Self.requests(after).isEmpty)
        #expect(scheduler.classes[0].window <= (Scheduler.maxClassWindow - 20) / 2)
    }

    @Test("Alone behind its own link (no colleague), far sources keep only their own windows: 4 each at first")
    func farUnboundedAlone() {
        var scheduler = Self.make(2000)
        let sources = (0..<10).map { Source($0) }
        let first = scheduler.availabilityChanged(
            sources.map { .added($0, ownershipKey: UInt64(10 + $0.rawValue), Self.partial(0..<2000)) }, now: .zero)
        #expect(Self.requests(first).count == 10 * Scheduler.initialWindow)
    }

    @Test("Near and far sources have windows of their own: a queue behind the uplink does not slow the LAN")
    func nearAndFarWindowsApart() {
        var scheduler = Self.make(400)
        let far = Source(0)
        let near = Source(1)
        // The far source is asked only for what the near one lacks (and this node owns in the office split).
        let first = scheduler.availabilityChanged(
            [
                .added(far, ownershipKey: 10, Self.partial(200..<400)),
                .added(near, ownershipKey: 11, Self.partial(0..<200), near: true),
            ],
            now: .zero)
        #expect(Self.requests(first, from: far).count == Scheduler.initialWindow)
        #expect(Self.requests(first, from: near).count == Scheduler.initialWindow)
        // The far replies queue: the far window shrinks to one, and the near one keeps growing.
        var now = Duration.zero
        var farOutstanding = Self.requests(first, from: far)
        var nearOutstanding = Self.requests(first, from: near)
        for _ in 0..<40 {
            now += Self.ms(1)
            if let position = farOutstanding.first {
                farOutstanding.removeFirst()
                let latency = now < Self.ms(3) ? Self.ms(20) : .seconds(3)
                let actions = scheduler.chunkArrived(
                    position, from: far, .stored(new: true), latency: latency, now: now)
                farOutstanding += Self.requests(actions, from: far)
                nearOutstanding += Self.requests(actions, from: near)
            }
            let position = nearOutstanding.removeFirst()
            let actions = scheduler.chunkArrived(
                position, from: near, .stored(new: true), latency: Self.ms(2), now: now)
            farOutstanding += Self.requests(actions, from: far)
            nearOutstanding += Self.requests(actions, from: near)
        }
        #expect(farOutstanding.count == 1)
        #expect(nearOutstanding.count > 20)
    }

    @Test("A source banned or lost mid-download gives its requests' room in the shared window back")
    func goneSourceFreesTheWindow() {
        for lost in [true, false] {
            var scheduler = Self.make(40)
            let a = Source(0)
            let b = Source(1)
            let first = scheduler.availabilityChanged(
                [
                    .added(Source(99), ownershipKey: 99, Self.partial([]), near: true),
                    .added(a, ownershipKey: 10, Self.partial(0..<40)),
                ], now: .zero)
            let fromA = Self.requests(first, from: a)
            #expect(fromA.count == Scheduler.initialWindow)
            // The window is full, but a new source still gets one request (it must be measured).
            var actions = scheduler.availabilityChanged(
                [.added(b, ownershipKey: 11, Self.partial(0..<40))], now: Self.ms(20))
            #expect(Self.requests(actions, from: b).count == 1)
            var now = Self.ms(30)
            if lost {
                // The connection closes: every request fails as closed, the first of them after the source is gone.
                for position in fromA {
                    now += Self.ms(1)
                    actions += scheduler.requestFailed(position, from: a, .closed, elapsed: Self.ms(30), now: now)
                }
            } else {
                actions += scheduler.chunkArrived(
                    fromA[0], from: a, .bad(reason: "wrong hash"), latency: Self.ms(5), now: now)
                for position in fromA.dropFirst() {
                    now += Self.ms(1)
                    actions += scheduler.requestFailed(position, from: a, .closed, elapsed: Self.ms(30), now: now)
                }
            }
            #expect(Self.requests(actions, from: b).count == Scheduler.initialWindow, "lost: \(lost)")
            #expect(scheduler.classes[0].inFlight == Scheduler.initialWindow)
        }
    }

    @Test("With a colleague downloading, far sources are asked only for our share, never for what it holds")
    func officeSplit() {
        let total = 64
        let mine = Scheduler.ownership(total: total, me: 1, others: [2])
        var scheduler = Self.make(total)
        let far = Source(0)
        let colleague = Source(1)
        var actions = scheduler.availabilityChanged(
            [
                .added(far, ownershipKey: 10, Self.partial(0..<total)),
                .added(colleague, ownershipKey: 2, Self.partial([]), near: true),
            ],
            now: .zero)
        var fromFar = Self.requests(actions, from: far)
        #expect(!fromFar.isEmpty)
        #expect(fromFar.allSatisfy { mine[$0] }, "\(fromFar)")
        // The colleague fetched one of our positions meanwhile: it comes over the LAN, not the uplink.
        let gift = (0..<total).first { mine[$0] && !fromFar.contains($0) }
        #expect(gift != nil)
        if let gift {
            actions = scheduler.availabilityChanged([.gained(colleague, positions: [gift])], now: Self.ms(200))
            #expect(Self.requests(actions, from: colleague).contains(gift))
        }
        var now = Self.ms(200)
        while !fromFar.isEmpty {
            now += Self.ms(1)
            let position = fromFar.removeFirst()
            actions = scheduler.chunkArrived(position, from: far, .stored(new: true), latency: Self.ms(20), now: now)
            fromFar += Self.requests(actions, from: far)
            #expect(fromFar.allSatisfy { mine[$0] && $0 != gift })
        }
        #expect(scheduler.statistics.farIdle == 0)
        #expect(scheduler.statistics.farOwned > 0)
        // Nothing in flight for half a second (the colleague's share is late): any position may come from far.
        if let gift {
            _ = scheduler.chunkArrived(gift, from: colleague, .stored(new: true), latency: Self.ms(1), now: now)
        }
        let idle = scheduler.timerFired(now: now + Self.ms(600))
        #expect(Self.requests(idle, from: far).contains { !mine[$0] })
        #expect(scheduler.statistics.farIdle > 0)
    }

    @Test("No endgame copy over the shared uplink; near sources still get one")
    func endgameStaysNear() {
        var scheduler = Self.make(1)
        let far = Source(0)
        let colleague = Source(1)
        let near = Source(2)
        // 1 owns position 0 against 2 (checked below), so it asks the far source for it.
        #expect(Scheduler.ownership(total: 1, me: 1, others: [2]) == [true])
        let first = scheduler.availabilityChanged(
            [
                .added(far, ownershipKey: 10, Self.partial([0])),
                .added(colleague, ownershipKey: 2, Self.partial([]), near: true),
            ],
            now: .zero)
        #expect(Self.requests(first, from: far) == [0])
        // A second far holder: no copy over the uplink.
        let second = scheduler.availabilityChanged(
            [.added(Source(3), ownershipKey: 13, Self.partial([0]))], now: Self.ms(50))
        #expect(Self.requests(second).isEmpty)
        // A near holder appears: the endgame copy goes to it.
        let nearCopy = scheduler.availabilityChanged(
            [.added(near, ownershipKey: 12, Self.partial([0]), near: true)], now: Self.ms(200))
        #expect(Self.requests(nearCopy, from: near) == [0])
    }
}
