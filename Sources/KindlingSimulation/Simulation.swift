import Foundation
import KindlingWire

/// The roles of the simulated population: node 0 is bors (publisher and first seed), node 1 the origin webseed
/// when the scenario has one, the rest are developers' nodes.
public enum NodeRole: Sendable, Equatable {
    case bors
    case origin
    case member
}

/// The layout a scenario describes, before any node runs: who is where, behind what.
public struct Topology: Sendable {
    public var roles: [NodeRole]
    public var links: LinkModel
    public var officeCount: Int

    public init(scenario: Scenario, random: inout SimulationRandom) {
        func bytesPerSecond(_ megabits: Double) -> Double { megabits * 1_000_000 / 8 }
        var roles: [NodeRole] = [.bors]
        var attachments = [
            Attachment(
                uplink: Pipe(bytesPerSecond: bytesPerSecond(scenario.seedUplinkMbps)),
                downlink: Pipe(bytesPerSecond: 0), latency: .seconds(scenario.nodeLatencyMs / 1000), office: nil,
                natOnly: false)
        ]
        if let origin = scenario.originMbps {
            roles.append(.origin)
            attachments.append(
                Attachment(
                    uplink: Pipe(bytesPerSecond: bytesPerSecond(origin)), downlink: Pipe(bytesPerSecond: 0),
                    latency: .seconds(scenario.nodeLatencyMs / 1000), office: nil, natOnly: false))
        }
        for member in 0..<scenario.nodes {
            roles.append(.member)
            attachments.append(
                Attachment(
                    uplink: Pipe(bytesPerSecond: bytesPerSecond(scenario.nodeUplinkMbps)),
                    downlink: Pipe(bytesPerSecond: bytesPerSecond(scenario.nodeDownlinkMbps)),
                    latency: .seconds(scenario.nodeLatencyMs / 1000),
                    office: scenario.offices > 0 ? member % scenario.offices : nil,
                    natOnly: random.unit() < scenario.natOnlyFraction))
        }
        self.roles = roles
        self.officeCount = scenario.offices
        self.links = LinkModel(
            nodes: attachments,
            officeUplinkBytesPerSecond: Array(
                repeating: bytesPerSecond(scenario.officeUplinkMbps), count: scenario.offices),
            wideAreaLatency: .seconds(scenario.wideAreaLatencyMs / 1000),
            localLatency: .seconds(scenario.localLatencyMs / 1000),
            hostBytesPerSecond: scenario.hostMbps.map(bytesPerSecond))
    }
}

/// Keepalive: a Ping and a Pong per connection per interval (MeshConfiguration's default 15 s).
enum Keepalive {
    static let intervalSeconds = 15.0
    static let bytes = SimulatedMessage(.ping(0)).wireBytes + SimulatedMessage(.pong(0)).wireBytes
}

/// A deterministic discrete-event run of one scenario: one thread, virtual time, one seeded generator.
///
/// The simulator owns links, connections, churn, the publication schedule and the metrics; each node's decisions
/// are its `SimulatedNode`'s. Messages on a connection arrive in order (each hop is FIFO and a pair's latency is
/// fixed) and are dropped if the connection closed meanwhile. Keepalives are not simulated event by event (they
/// would be most of the events and decide nothing): their bytes are added to the gossip figures.
public final class MeshSimulation<Node: SimulatedNode> {
    enum Event {
        case deliver(from: Int32, to: Int32, epoch: UInt32, SimulatedMessage)
        case dialArrives(from: Int32, to: Int32)
        case dialAnswer(from: Int32, to: Int32, accepted: Bool, epoch: UInt32)
        case disconnectArrives(from: Int32, to: Int32, epoch: UInt32)
        case timer(node: Int32, life: UInt32, token: Int)
        case publish(Int)
        case leave(Int32)
        case join(Int32)
    }

    public let scenario: Scenario
    public private(set) var topology: Topology
    public private(set) var nodes: [Node]
    public private(set) var now: VirtualTime = 0
    private var queue = EventQueue<Event>()
    private var random: SimulationRandom
    private var online: [Bool]
    /// Bumped each time a node goes down, so timers and answers meant for its previous life are dropped.
    private var life: [UInt32]
    /// Open connections per node: peer → connection epoch (the same on both sides).
    private var connections: [[Int32: UInt32]]
    private var nextEpoch: UInt32 = 1
    private var metrics: SimulationMetrics

    /// A run of `scenario` over `topology` (built with `random`, which the run continues); `makeNode` makes each
    /// node's behaviour, given a generator of its own.
    public init(
        scenario: Scenario, topology: Topology, random: SimulationRandom,
        makeNode: (_ index: Int, _ role: NodeRole, _ random: SimulationRandom) -> Node
    ) {
        self.scenario = scenario
        var random = random
        self.topology = topology
        var nodes: [Node] = []
        nodes.reserveCapacity(topology.roles.count)
        for (index, role) in topology.roles.enumerated() {
            nodes.append(makeNode(index, role, random.fork()))
        }
        self.nodes = nodes
        self.random = random
        online = Array(repeating: true, count: nodes.count)
        life = Array(repeating: 0, count: nodes.count)
        connections = Array(repeating: [:], count: nodes.count)
        metrics = SimulationMetrics(scenario: scenario, nodeCount: nodes.count, roles: topology.roles)
    }

    /// Runs the scenario to its end and reports.
    public func run() -> SimulationReport {
        let wallStart = ProcessInfo.processInfo.systemUptime
        for index in nodes.indices {
            perform(nodes[index].start(now: 0), by: index)
        }
        for snapshot in 0..<scenario.snapshotCount {
            let time = scenario.firstSnapshotSeconds + Double(snapshot) * scenario.snapshotIntervalSeconds
            if time < scenario.durationSeconds { queue.schedule(.publish(snapshot), at: .seconds(time)) }
        }
        if scenario.churnPerHour > 0 {
            for index in nodes.indices where topology.roles[index] == .member { scheduleLeave(Int32(index)) }
        }
        let end = VirtualTime.seconds(scenario.durationSeconds)
        var events = 0
        var kinds = EventKinds()
        while let next = queue.nextTime, next <= end, let (time, event) = queue.pop() {
            now = time
            events += 1
            kinds.count(event)
            handle(event)
        }
        now = end
        var report = metrics.report(
            links: topology.links, end: end, connectionsPerNode: averageConnections(), online: online)
        report.events = events
        report.eventsByKind = kinds.byName
        report.wallSeconds = ProcessInfo.processInfo.systemUptime - wallStart
        return report
    }

    private func averageConnections() -> Double {
        let members = nodes.indices.filter { topology.roles[$0] == .member && online[$0] }
        guard !members.isEmpty else { return 0 }
        return Double(members.reduce(0) { $0 + connections[$1].count }) / Double(members.count)
    }

    private func scheduleLeave(_ node: Int32) {
        let delay = random.exponential(mean: 3600 / scenario.churnPerHour)
        queue.schedule(.leave(node), at: now + .seconds(delay))
    }

    /// Events by kind, for the report: where a run's time goes (deliveries by message type).
    struct EventKinds {
        private static var names: [String] {
            ["dial", "dialAnswer", "disconnect", "timer", "timer.servingSlot", "publish", "churn"]
        }
        private var deliveries = [Int](repeating: 0, count: 256)
        private var others = [Int](repeating: 0, count: 7)

        mutating func count(_ event: Event) {
            switch event {
            case .deliver(_, _, _, let message): deliveries[Int(message.message.type.rawValue)] += 1
            case .dialArrives: others[0] += 1
            case .dialAnswer: others[1] += 1
            case .disconnectArrives: others[2] += 1
            case .timer(_, _, let token): others[token < 0 ? 4 : 3] += 1
            case .publish: others[5] += 1
            case .leave, .join: others[6] += 1
            }
        }

        var byName: [String: Int] {
            var byName: [String: Int] = [:]
            for (index, count) in others.enumerated() where count > 0 { byName[Self.names[index]] = count }
            for (raw, count) in deliveries.enumerated() where count > 0 {
                let type = MessageType(rawValue: UInt8(raw)).map { "\($0)" } ?? "\(raw)"
                byName["deliver.\(type)"] = count
            }
            return byName
        }
    }

    // MARK: Events

    private func handle(_ event: Event) {
        switch event {
        case .deliver(let from, let to, let epoch, let message):
            let receiver = Int(to)
            guard online[receiver], connections[receiver][from] == epoch else { return }
            perform(nodes[receiver].received(message, from: Int(from), now: now), by: receiver)
        case .dialArrives(let from, let to):
            let target = Int(to)
            let accepted =
                online[target] && connections[target][from] == nil
                && nodes[target].accepts(Int(from), now: now)
            var epoch: UInt32 = 0
            if accepted {
                epoch = nextEpoch
                nextEpoch &+= 1
                connections[target][from] = epoch
                perform(nodes[target].connected(Int(from), outbound: false, now: now), by: target)
            }
            // The answer (the rest of the handshake) travels back: one more path latency.
            let back = topology.links.send(
                Self.handshakeBytes, from: target, to: Int(from), at: now)
            queue.schedule(.dialAnswer(from: from, to: to, accepted: accepted, epoch: epoch), at: back)
        case .dialAnswer(let from, let to, let accepted, let epoch):
            let dialler = Int(from)
            guard online[dialler] else { return }
            if accepted, connections[dialler][to] == nil {
                // Still up on the far side? If it went down meanwhile, its disconnect is already on the way.
                connections[dialler][to] = epoch
                perform(nodes[dialler].connected(Int(to), outbound: true, now: now), by: dialler)
            } else {
                if accepted { closeFarSide(of: to, peer: from, epoch: epoch) }
                perform(nodes[dialler].dialFailed(Int(to), now: now), by: dialler)
            }
        case .disconnectArrives(let from, let to, let epoch):
            let receiver = Int(to)
            guard online[receiver], connections[receiver][from] == epoch else { return }
            connections[receiver][from] = nil
            perform(nodes[receiver].disconnected(Int(from), now: now), by: receiver)
        case .timer(let node, let nodeLife, let token):
            let index = Int(node)
            guard online[index], life[index] == nodeLife else { return }
            perform(nodes[index].timerFired(token, now: now), by: index)
        case .publish(let snapshot):
            metrics.published(snapshot, at: now)
            perform(nodes[0].publish(snapshot: snapshot, now: now), by: 0)
        case .leave(let node):
            let index = Int(node)
            guard online[index] else { return }
            metrics.churnLeaves += 1
            online[index] = false
            life[index] &+= 1
            for (peer, epoch) in connections[index] {
                queue.schedule(
                    .disconnectArrives(from: node, to: peer, epoch: epoch),
                    at: now + topology.links.latency(from: index, to: Int(peer)))
            }
            connections[index] = [:]
            queue.schedule(.join(node), at: now + .seconds(scenario.churnDowntimeSeconds))
        case .join(let node):
            let index = Int(node)
            online[index] = true
            metrics.joined(index, at: now)
            perform(nodes[index].start(now: now), by: index)
            scheduleLeave(node)
        }
    }

    /// The far side accepted a connection the dialler no longer wants (it already had one): close it there.
    private func closeFarSide(of node: Int32, peer: Int32, epoch: UInt32) {
        let at = now + topology.links.latency(from: Int(peer), to: Int(node))
        queue.schedule(.disconnectArrives(from: peer, to: node, epoch: epoch), at: at)
    }

    /// Hello, StreamHeader and Auth, one way (Specs/wire.md, "Handshake"), roughly.
    static var handshakeBytes: Int { 4 + 45 + 32 + 32 + 4 + 24 + 4 + 32 + 64 + 3 + 16 + 4 }

    private func perform(_ actions: [SimulatedAction], by node: Int) {
        let sender = Int32(node)
        for action in actions {
            switch action {
            case .send(let peer, let message):
                guard let epoch = connections[node][Int32(peer)] else { continue }
                let arrival = topology.links.send(message.wireBytes, from: node, to: peer, at: now)
                metrics.sent(message, by: node, at: now)
                if message.message.type == .chunk {
                    // The server's serving slot is free once the reply has left its uplink.
                    queue.schedule(
                        .timer(node: sender, life: life[node], token: -(peer + 1)), at: topology.links.lastUplinkFinish)
                }
                queue.schedule(.deliver(from: sender, to: Int32(peer), epoch: epoch, message), at: arrival)
            case .dial(let peer):
                guard peer != node, peer >= 0, peer < nodes.count else { continue }
                if online[peer], topology.links.canDial(from: node, to: peer) {
                    let arrival = topology.links.send(Self.handshakeBytes, from: node, to: peer, at: now)
                    queue.schedule(.dialArrives(from: sender, to: Int32(peer)), at: arrival)
                } else {
                    // No answer: the handshake timeout (MeshConfiguration's 5 s) decides.
                    queue.schedule(
                        .dialAnswer(from: sender, to: Int32(peer), accepted: false, epoch: 0), at: now + .seconds(5))
                }
            case .disconnect(let peer):
                guard let epoch = connections[node].removeValue(forKey: Int32(peer)) else { continue }
                queue.schedule(
                    .disconnectArrives(from: sender, to: Int32(peer), epoch: epoch),
                    at: now + topology.links.latency(from: node, to: peer))
            case .timer(let after, let token):
                queue.schedule(.timer(node: sender, life: life[node], token: token), at: now + max(0, after))
            case .learned(let snapshot):
                metrics.learned(snapshot, node: node, at: now)
            case .completed(let snapshot):
                metrics.completed(snapshot, node: node, at: now)
            }
        }
    }
}
