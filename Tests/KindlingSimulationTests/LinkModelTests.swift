import Testing

@testable import KindlingSimulation

@Suite struct LinkModelTests {
    static let megabyte = 1_000_000

    /// Two nodes on the internet (no office): 10 MB/s up, unlimited down, 5 ms each way to the edge, 20 ms between.
    func internetPair(uplink: Double = 10e6) -> LinkModel {
        let node = Attachment(
            uplink: Pipe(bytesPerSecond: uplink), downlink: Pipe(bytesPerSecond: 0), latency: .seconds(0.005),
            office: nil, natOnly: false)
        return LinkModel(
            nodes: [node, node], officeUplinkBytesPerSecond: [], wideAreaLatency: .seconds(0.02),
            localLatency: .seconds(0.0002))
    }

    @Test func transferTakesSizeOverRatePlusLatency() {
        var links = internetPair()
        let arrival = links.send(10 * Self.megabyte, from: 0, to: 1, at: .seconds(1))
        // 10 MB at 10 MB/s = 1 s, plus 5 + 20 + 5 ms of latency, after the start at 1 s.
        #expect(arrival == .seconds(2.030))
    }

    @Test func backToBackTransfersQueueOnTheUplink() {
        var links = internetPair()
        let first = links.send(Self.megabyte, from: 0, to: 1, at: 0)
        let second = links.send(Self.megabyte, from: 0, to: 1, at: 0)
        #expect(first == .seconds(0.1 + 0.03))
        #expect(second == .seconds(0.2 + 0.03))
        // An idle link does not carry a backlog forward: a later send starts fresh.
        let third = links.send(Self.megabyte, from: 0, to: 1, at: .seconds(10))
        #expect(third == .seconds(10.13))
    }

    @Test func slowestHopDecides() {
        // 100 MB/s node links behind a 1 MB/s office uplink: the office uplink sets the pace.
        let fast = Pipe(bytesPerSecond: 100e6)
        let inOffice = Attachment(uplink: fast, downlink: fast, latency: 0, office: 0, natOnly: false)
        let outside = Attachment(uplink: fast, downlink: fast, latency: 0, office: nil, natOnly: false)
        var links = LinkModel(
            nodes: [outside, inOffice], officeUplinkBytesPerSecond: [1e6], wideAreaLatency: 0, localLatency: 0)
        #expect(links.send(Self.megabyte, from: 0, to: 1, at: 0) == .seconds(1))
        #expect(links.officeInboundBytes == [Self.megabyte])
    }

    @Test func sharedOfficeUplinkIsShared() {
        // Four nodes in one office, each with its own fast link, fetch 1 MB each from outside at once: the 1 MB/s
        // office uplink carries all four, so the last one arrives after 4 s, not 1 s.
        let fast = Pipe(bytesPerSecond: 100e6)
        let source = Attachment(
            uplink: Pipe(bytesPerSecond: 0), downlink: fast, latency: 0, office: nil, natOnly: false)
        let member = Attachment(uplink: fast, downlink: fast, latency: 0, office: 0, natOnly: false)
        var links = LinkModel(
            nodes: [source, member, member, member, member], officeUplinkBytesPerSecond: [1e6],
            wideAreaLatency: 0, localLatency: 0)
        let arrivals = (1...4).map { links.send(Self.megabyte, from: 0, to: $0, at: 0) }
        #expect(arrivals.max() == .seconds(4))
        #expect(links.officeInboundBytes == [4 * Self.megabyte])
        // Inside the office the uplink is not used: node to node at 100 MB/s.
        let local = links.send(Self.megabyte, from: 1, to: 2, at: .seconds(10))
        #expect(local == .seconds(10.01))
        #expect(links.officeInboundBytes == [4 * Self.megabyte])
    }

    @Test func natOnlyNodesAcceptOnlyFromTheirOffice() {
        let pipe = Pipe(bytesPerSecond: 0)
        let outside = Attachment(uplink: pipe, downlink: pipe, latency: 0, office: nil, natOnly: false)
        let hidden = Attachment(uplink: pipe, downlink: pipe, latency: 0, office: 0, natOnly: true)
        let colleague = Attachment(uplink: pipe, downlink: pipe, latency: 0, office: 0, natOnly: false)
        let links = LinkModel(
            nodes: [outside, hidden, colleague], officeUplinkBytesPerSecond: [0], wideAreaLatency: 0, localLatency: 0)
        #expect(!links.canDial(from: 0, to: 1))
        #expect(links.canDial(from: 1, to: 0))
        #expect(links.canDial(from: 2, to: 1))
    }

    @Test func eventQueueRunsInTimeThenInsertionOrder() {
        var queue = EventQueue<Int>()
        var random = SimulationRandom(seed: 7)
        var expected: [(VirtualTime, Int)] = []
        for value in 0..<1000 {
            let time = VirtualTime(random.next() % 50)
            queue.schedule(value, at: time)
            expected.append((time, value))
        }
        expected.sort { $0.0 < $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }
        var popped: [(VirtualTime, Int)] = []
        while let (time, value) = queue.pop() { popped.append((time, value)) }
        #expect(popped.map(\.1) == expected.map(\.1))
    }

    /// Pops between schedules (slots are reused) against a sorted reference: still time, then insertion order.
    @Test func eventQueueInterleavedWithPops() {
        var queue = EventQueue<Int>()
        var random = SimulationRandom(seed: 11)
        var pending: [(time: VirtualTime, value: Int)] = []
        var now: VirtualTime = 0
        for value in 0..<5000 {
            let time = now + VirtualTime(random.next() % 40)
            queue.schedule(value, at: time)
            pending.append((time, value))
            if random.next() % 3 == 0 {
                let earliest = pending.indices.min { lhs, rhs in
                    (pending[lhs].time, pending[lhs].value) < (pending[rhs].time, pending[rhs].value)
                }
                let expected = pending.remove(at: earliest ?? 0)
                let popped = queue.pop()
                #expect(popped?.time == expected.time && popped?.event == expected.value)
                now = expected.time
            }
        }
        #expect(queue.count == pending.count)
        pending.sort { $0.time < $1.time || ($0.time == $1.time && $0.value < $1.value) }
        var rest: [Int] = []
        while let (_, value) = queue.pop() { rest.append(value) }
        #expect(rest == pending.map(\.value))
    }

    /// Nodes on one machine (a benchmark's CPU, `hostMbps`): fast links, but every transfer crosses the host pipe,
    /// so two 1 MB transfers between different pairs at 1 MB/s of host take 2 s in all, not 1 s each in parallel.
    @Test func hostPipeIsSharedByEveryTransfer() {
        let fast = Pipe(bytesPerSecond: 100e6)
        let node = Attachment(uplink: fast, downlink: fast, latency: 0, office: nil, natOnly: false)
        var links = LinkModel(
            nodes: [node, node, node, node], officeUplinkBytesPerSecond: [], wideAreaLatency: 0, localLatency: 0,
            hostBytesPerSecond: 1e6)
        #expect(links.send(Self.megabyte, from: 0, to: 1, at: 0) == .seconds(1))
        #expect(links.send(Self.megabyte, from: 2, to: 3, at: 0) == .seconds(2))
        var unshared = LinkModel(
            nodes: [node, node, node, node], officeUplinkBytesPerSecond: [], wideAreaLatency: 0, localLatency: 0)
        #expect(unshared.send(Self.megabyte, from: 0, to: 1, at: 0) == .seconds(0.01))
        #expect(unshared.send(Self.megabyte, from: 2, to: 3, at: 0) == .seconds(0.01))
    }

    @Test func randomIsAPureFunctionOfItsSeed() {
        var a = SimulationRandom(seed: 42)
        var b = SimulationRandom(seed: 42)
        var c = SimulationRandom(seed: 43)
        let first = (0..<8).map { _ in a.next() }
        #expect(first == (0..<8).map { _ in b.next() })
        #expect(first != (0..<8).map { _ in c.next() })
        let mean = (0..<10_000).map { _ in a.exponential(mean: 2) }.reduce(0, +) / 10_000
        #expect(abs(mean - 2) < 0.1)
    }
}
