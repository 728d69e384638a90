import KindlingWire
import Testing

@testable import KindlingMesh

/// The download policy without sockets or clocks: events in, actions out.
@Suite("Mesh: chunk scheduler")
struct ChunkSchedulerTests {
    typealias Scheduler = ChunkScheduler
    typealias Source = ChunkScheduler.SourceID
    typealias Action = ChunkScheduler.Action

    static let a = Source(0)
    static let b = Source(1)
    static let c = Source(2)
    static let configuration = Scheduler.Configuration(requestTimeout: .seconds(10), stallTimeout: .seconds(60))

    static func make(chunks: Int, me: UInt64 = 1, seed: UInt64 = 7) -> Scheduler {
        Scheduler(chunkCount: chunks, missing: 0..<chunks, me: me, seed: seed, configuration: configuration, now: .zero)
    }

    static func partial(_ positions: some Sequence<Int>) -> PeerHoldings {
        var bits = Bitset()
        for position in positions { bits.insert(position) }
        return .partial(bits)
    }

    static func requests(_ actions: [Action], from source: Source? = nil) -> [Int] {
        actions.compactMap { action in
            guard case .request(let position, let from, _) = action, source == nil || from == source else { return nil }
            return position
        }
    }

    static func ms(_ value: Int) -> Duration { .milliseconds(value) }

    @Test("Rarest first: a source is asked for the positions fewest sources hold")
    func rarestFirst() {
        var scheduler = Self.make(chunks: 10)
        // a holds everything, b the first half: 5..<10 are the rare ones.
        let actions = scheduler.availabilityChanged(
            [
                .added(Self.a, ownershipKey: 10, Self.partial(0..<10)),
                .added(Self.b, ownershipKey: 11, Self.partial(0..<5)),
            ],
            now: .zero)
        let fromA = Self.requests(actions, from: Self.a)
        #expect(fromA.count == Scheduler.initialWindow)
        #expect(fromA.allSatisfy { $0 >= 5 }, "\(fromA)")
        #expect(Set(Self.requests(actions, from: Self.b)).isSubset(of: Set(0..<5)))
        // A source gaining positions (HaveChunks) counts too: now 9 is held by both, 5..<9 by a alone.
        var later = Self.make(chunks: 10)
        _ = later.availabilityChanged([.added(Self.b, ownershipKey: 11, Self.partial([]))], now: .zero)
        _ = later.availabilityChanged([.gained(Self.b, positions: [9])], now: Self.ms(20))
        _ = later.availabilityChanged([.added(Self.a, ownershipKey: 10, Self.partial(0..<10))], now: Self.ms(40))
        #expect(later.order.last.map(Int.init) == 9)
        #expect(later.order.count == 10)
    }

    @Test("Endgame: the last chunks are asked of a second source, and the duplicate is withdrawn on arrival")
    func endgame() {
        // Two chunks, so that both copies of each fit in the shared window of the far sources (4).
        var scheduler = Self.make(chunks: 2)
        let first = scheduler.availabilityChanged(
            [
                .added(Self.a, ownershipKey: 10, Self.partial(0..<2)),
                .added(Self.b, ownershipKey: 11, Self.partial(0..<2)),
            ],
            now: .zero)
        // a (first by number among equals) takes both; b has nothing left that no one was asked for.
        #expect(Self.requests(first, from: Self.a).sorted() == [0, 1])
        #expect(Self.requests(first, from: Self.b).isEmpty)
        // Every missing chunk is asked for: the next decision asks b for each of them too, once.
        let second = scheduler.timerFired(now: Self.ms(5))
        #expect(Self.requests(second, from: Self.b).sorted() == [0, 1])
        #expect(Self.requests(scheduler.timerFired(now: Self.ms(6))).isEmpty)
        // a's copy of 0 arrives first: b's request for it is withdrawn.
        let arrived = scheduler.chunkArrived(
            0, from: Self.a, .stored(new: true), latency: Self.ms(30), now: Self.ms(30))
        #expect(arrived.contains(.cancel(position: 0, from: Self.b)))
        #expect(arrived.contains(.held(position: 0)))
        #expect(arrived.contains(.fetched(position: 0)))
        // The withdrawn request ends as cancelled: no failure, no retry.
        _ = scheduler.requestFailed(0, from: Self.b, .cancelled, elapsed: Self.ms(31), now: Self.ms(31))
        #expect(scheduler.statistics.retries == 0)
        // b's copy of 1 comes first but finds it written (a concurrent download of another snapshot): held, not
        // fetched; a's copy, which wrote it, counts as fetched though it came second, and finishes the download.
        let found = scheduler.chunkArrived(1, from: Self.b, .stored(new: false), latency: Self.ms(32), now: Self.ms(32))
        #expect(found.contains(.held(position: 1)))
        #expect(found.contains(.cancel(position: 1, from: Self.a)))
        #expect(!found.contains(.fetched(position: 1)))
        #expect(!found.contains(.finished))
        let wrote = scheduler.chunkArrived(1, from: Self.a, .stored(new: true), latency: Self.ms(33), now: Self.ms(33))
        #expect(wrote.contains(.fetched(position: 1)))
        #expect(!wrote.contains(.held(position: 1)))
        #expect(wrote.last == .finished)
        #expect(scheduler.statistics.chunksFetched == 2)
        // Done: later events do nothing.
        #expect(scheduler.timerFired(now: Self.ms(100)).isEmpty)
    }

    @Test("The last chunk found written by its duplicate: finished waits for the copy that wrote it, or its end")
    func drainsTheWriter() {
        var scheduler = Self.make(chunks: 1)
        _ = scheduler.availabilityChanged(
            [.added(Self.a, ownershipKey: 10, .complete), .added(Self.b, ownershipKey: 11, .complete)], now: .zero)
        #expect(Self.requests(scheduler.timerFired(now: Self.ms(5)), from: Self.b) == [0])
        // b's copy comes first but a's request wrote it: all is held, yet a's reply still counts it as fetched.
        let found = scheduler.chunkArrived(0, from: Self.b, .stored(new: false), latency: Self.ms(20), now: Self.ms(20))
        #expect(found.contains(.held(position: 0)))
        #expect(!found.contains(.finished))
        #expect(scheduler.timerFired(now: Self.ms(30)).isEmpty)
        let wrote = scheduler.chunkArrived(0, from: Self.a, .stored(new: true), latency: Self.ms(40), now: Self.ms(40))
        #expect(wrote == [.fetched(position: 0), .finished])
        #expect(scheduler.statistics.chunksFetched == 1)

        // When the writer was someone else (a's request ends without writing), the end of the last request ends it.
        var other = Self.make(chunks: 1)
        _ = other.availabilityChanged(
            [.added(Self.a, ownershipKey: 10, .complete), .added(Self.b, ownershipKey: 11, .complete)], now: .zero)
        _ = other.timerFired(now: Self.ms(5))
        #expect(
            !other.chunkArrived(0, from: Self.b, .stored(new: false), latency: Self.ms(20), now: Self.ms(20))
                .contains(.finished))
        #expect(other.requestFailed(0, from: Self.a, .cancelled, elapsed: Self.ms(25), now: Self.ms(25)) == [.finished])
        #expect(other.statistics.chunksFetched == 0)
    }

    @Test("Per-source pipeline: 4 requests at first, one more per prompt reply, never more than 48")
    func pipelineLimits() {
        var scheduler = Self.make(chunks: 400)
        var now = Duration.zero
        var outstanding = Self.requests(
            scheduler.sourceAdded(Self.a, ownershipKey: 10, holding: Self.partial(0..<400), now: now))
        #expect(outstanding.count == 4)
        var most = outstanding.count
        for _ in 0..<200 {
            guard !outstanding.isEmpty else { break }
            now += Self.ms(1)
            let position = outstanding.removeFirst()
            let actions = scheduler.chunkArrived(
                position, from: Self.a, .stored(new: true), latency: Self.ms(10), now: now)
            outstanding += Self.requests(actions)
            #expect(scheduler.requestsInFlight == outstanding.count)
            most = max(most, outstanding.count)
        }
        #expect(most == Scheduler.maxWindow)
        // Replies that queue (well above the fastest) shrink the window.
        for _ in 0..<10 {
            now += Self.ms(1)
            let position = outstanding.removeFirst()
            outstanding += Self.requests(
                scheduler.chunkArrived(position, from: Self.a, .stored(new: true), latency: .seconds(2), now: now))
        }
        #expect(outstanding.count < Scheduler.maxWindow)
    }

    @Test("A timed-out request goes to another source, and not back to the slow one while a faster one has it")
    func timeoutRetriesElsewhere() {
        var scheduler = Self.make(chunks: 1)
        let first = scheduler.availabilityChanged(
            [.added(Self.a, ownershipKey: 10, Self.partial([0])), .added(Self.b, ownershipKey: 11, Self.partial([0]))],
            now: .zero)
        // At first (no latency measured) the timeout is its floor, half the longest.
        #expect(first.contains(.request(position: 0, from: Self.a, timeout: .seconds(5))))
        let retry = scheduler.requestFailed(0, from: Self.a, .timeout, elapsed: .seconds(3), now: .seconds(3))
        #expect(Self.requests(retry, from: Self.b) == [0])
        #expect(Self.requests(retry, from: Self.a).isEmpty)
        #expect(scheduler.statistics.retries == 1)
        // b refuses (it no longer has it): a is the only holder left that has not refused, so it is asked again,
        // with the timeout its latency now calls for.
        let again = scheduler.requestFailed(
            0, from: Self.b, .notHeld, elapsed: Self.ms(5), now: .seconds(3) + Self.ms(5))
        #expect(again.contains(.request(position: 0, from: Self.a, timeout: .seconds(10))))
        #expect(Self.requests(again, from: Self.b).isEmpty)
    }

    @Test("A busy source is left alone for 20 ms")
    func busyPauses() {
        var scheduler = Self.make(chunks: 1)
        _ = scheduler.sourceAdded(Self.a, ownershipKey: 10, holding: Self.partial([0]), now: .zero)
        let paused = scheduler.requestFailed(0, from: Self.a, .busy, elapsed: Self.ms(1), now: Self.ms(1))
        #expect(Self.requests(paused).isEmpty)
        #expect(paused == [.scheduleTimer(at: Self.ms(51))])
        #expect(Self.requests(scheduler.timerFired(now: Self.ms(15))).isEmpty)
        #expect(Self.requests(scheduler.timerFired(now: Self.ms(25)), from: Self.a) == [0])
    }

    @Test("A source that sends a bad chunk is banned once and never asked again, even when it comes back")
    func badChunkBans() {
        var scheduler = Self.make(chunks: 2)
        let first = scheduler.availabilityChanged(
            [
                .added(Self.a, ownershipKey: 10, Self.partial(0..<2)),
                .added(Self.b, ownershipKey: 11, Self.partial(0..<2)),
            ],
            now: .zero)
        #expect(Self.requests(first, from: Self.a).sorted() == [0, 1])
        let bad = scheduler.chunkArrived(
            0, from: Self.a, .bad(reason: "wrong hash"), latency: Self.ms(5), now: Self.ms(5))
        #expect(bad.contains(.ban(Self.a, reason: "wrong hash")))
        #expect(Self.requests(bad, from: Self.b).contains(0))
        // Its other request fails as its connection closes; it reconnects and says it holds everything.
        let closed = scheduler.requestFailed(1, from: Self.a, .closed, elapsed: Self.ms(6), now: Self.ms(6))
        #expect(!closed.contains { if case .ban = $0 { true } else { false } })
        let back = scheduler.sourceAdded(Self.a, ownershipKey: 10, holding: .complete, now: Self.ms(7))
        #expect(Self.requests(back, from: Self.a).isEmpty)
        #expect(Self.requests(scheduler.timerFired(now: .seconds(2)), from: Self.a).isEmpty)
        #expect(scheduler.statistics.sourcesBanned == 1)
    }

    @Test("Every source gone: the download waits, then fails with a reason after the stall timeout")
    func allSourcesGone() {
        var scheduler = Self.make(chunks: 3)
        _ = scheduler.sourceAdded(Self.a, ownershipKey: 10, holding: .complete, now: .zero)
        let removed = scheduler.sourceRemoved(Self.a, now: Self.ms(10))
        #expect(removed.isEmpty)  // its requests are still in flight
        var actions = [Action]()
        for position in 0..<3 {
            actions = scheduler.requestFailed(position, from: Self.a, .closed, elapsed: Self.ms(1), now: Self.ms(11))
        }
        #expect(actions == [.scheduleTimer(at: Self.ms(61))])
        #expect(scheduler.timerFired(now: .seconds(59)) == [.scheduleTimer(at: .seconds(59) + Self.ms(50))])
        let stalled = Action.failed(.stalled(missingChunks: 3, seconds: 60, sources: 0))
        #expect(scheduler.timerFired(now: .seconds(61)) == [stalled])
        #expect(scheduler.sourceAdded(Self.b, ownershipKey: 11, holding: .complete, now: .seconds(62)).isEmpty)
    }

    @Test("Seeds are asked only for the positions this node owns in the split and no downloader holds")
    func seedSplit() {
        let total = 64
        let owned = Scheduler.ownership(total: total, me: 1, others: [2])
        var scheduler = Self.make(chunks: total, me: 1)
        // One seed, one other downloader holding position 0: seeds are scarce (1 < 1 + 1).
        var actions = scheduler.availabilityChanged(
            [.added(Self.a, ownershipKey: 10, .complete), .added(Self.b, ownershipKey: 2, Self.partial([0]))],
            now: .zero)
        var fromSeed = Self.requests(actions, from: Self.a)
        #expect(fromSeed.count == Scheduler.initialWindow)
        #expect(fromSeed.allSatisfy { owned[$0] && $0 != 0 }, "\(fromSeed)")
        // Serve everything the seed is asked for: it is never asked for what it should leave to the other one.
        var now = Duration.zero
        while !fromSeed.isEmpty {
            now += Self.ms(1)
            let position = fromSeed.removeFirst()
            actions = scheduler.chunkArrived(position, from: Self.a, .stored(new: true), latency: Self.ms(1), now: now)
            fromSeed += Self.requests(actions, from: Self.a)
            #expect(fromSeed.allSatisfy { owned[$0] })
        }
        // Nothing in flight for half a second: any chunk may come from the seed rather than leave it idle.
        _ = scheduler.requestFailed(0, from: Self.b, .notHeld, elapsed: Self.ms(1), now: now)
        let idle = scheduler.timerFired(now: now + Self.ms(600))
        #expect(Self.requests(idle, from: Self.a).contains { !owned[$0] })
    }

    @Test("The same events with the same seed give the same actions; another seed another order")
    func deterministic() {
        func run(seed: UInt64) -> [Action] {
            var scheduler = Self.make(chunks: 200, seed: seed)
            var log = scheduler.availabilityChanged(
                [
                    .added(Self.c, ownershipKey: 12, Self.partial(0..<150)),
                    .added(Self.a, ownershipKey: 10, .complete),
                    .added(Self.b, ownershipKey: 11, Self.partial(50..<200)),
                ],
                now: .zero)
            var now = Duration.zero
            for step in 0..<300 {
                now += Self.ms(3)
                guard
                    case .request(let position, let source, _)? = log.first(where: {
                        if case .request = $0 { true } else { false }
                    })
                else { break }
                log.removeAll { $0 == .request(position: position, from: source, timeout: .milliseconds(2500)) }
                log +=
                    step % 7 == 0
                    ? scheduler.requestFailed(position, from: source, .timeout, elapsed: Self.ms(40), now: now)
                    : scheduler.chunkArrived(position, from: source, .stored(new: true), latency: Self.ms(20), now: now)
            }
            return log
        }
        #expect(run(seed: 3) == run(seed: 3))
        #expect(run(seed: 3) != run(seed: 4))
    }

    @Test("Availability is wanted at most every 10 ms in the first second, every 100 ms after, at once with no source")
    func availabilityCadence() {
        var scheduler = Self.make(chunks: 4)
        #expect(scheduler.wantsAvailability(now: .zero))
        _ = scheduler.sourceAdded(Self.a, ownershipKey: 10, holding: Self.partial([0]), now: .zero)
        #expect(!scheduler.wantsAvailability(now: Self.ms(5)))
        #expect(scheduler.wantsAvailability(now: Self.ms(11)))
        _ = scheduler.availabilityChanged([.changed(Self.a, Self.partial([0, 1]))], now: .seconds(2))
        #expect(!scheduler.wantsAvailability(now: .seconds(2) + Self.ms(50)))
        #expect(scheduler.wantsAvailability(now: .seconds(2) + Self.ms(101)))
        _ = scheduler.sourceRemoved(Self.a, now: .seconds(2) + Self.ms(102))
        #expect(scheduler.wantsAvailability(now: .seconds(2) + Self.ms(103)))
    }
}
