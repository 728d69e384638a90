import KindlingWire

/// What the simulator records while it runs, and how it becomes a report.
struct SimulationMetrics {
    let scenario: Scenario
    let roles: [NodeRole]
    var publishedAt: [VirtualTime?]
    /// Per snapshot, per node: when it learned of it / completed it.
    var learnedAt: [[VirtualTime?]]
    var completedAt: [[VirtualTime?]]
    var churnLeaves = 0
    /// Gossip sent by members while in a steady window (from `settleSeconds` after a publication until the next).
    var steadyGossipMessages = 0
    var steadyGossipBytes = 0
    var steadyGossipBytesByType: [String: Int] = [:]
    var egress: [Int]
    /// When each node last came back from an outage (0: never left).
    var lastJoin: [VirtualTime]

    /// How long after a publication gossip and transfers are not yet steady.
    static let settleSeconds = 120.0

    init(scenario: Scenario, nodeCount: Int, roles: [NodeRole]) {
        self.scenario = scenario
        self.roles = roles
        publishedAt = Array(repeating: nil, count: scenario.snapshotCount)
        learnedAt = Array(repeating: Array(repeating: nil, count: nodeCount), count: scenario.snapshotCount)
        completedAt = learnedAt
        egress = Array(repeating: 0, count: nodeCount)
        lastJoin = Array(repeating: 0, count: nodeCount)
    }

    mutating func joined(_ node: Int, at time: VirtualTime) {
        lastJoin[node] = time
    }

    /// Whether the node ran without an outage since the snapshot's publication (delays of the others measure churn).
    func onlineSince(_ snapshot: Int, node: Int) -> Bool {
        guard let published = publishedAt[snapshot] else { return false }
        return lastJoin[node] <= published
    }

    mutating func published(_ snapshot: Int, at time: VirtualTime) {
        publishedAt[snapshot] = time
    }

    mutating func learned(_ snapshot: Int, node: Int, at time: VirtualTime) {
        guard learnedAt.indices.contains(snapshot), learnedAt[snapshot][node] == nil else { return }
        learnedAt[snapshot][node] = time
    }

    mutating func completed(_ snapshot: Int, node: Int, at time: VirtualTime) {
        guard completedAt.indices.contains(snapshot), completedAt[snapshot][node] == nil else { return }
        completedAt[snapshot][node] = time
    }

    mutating func sent(_ message: SimulatedMessage, by node: Int, at time: VirtualTime) {
        egress[node] += message.wireBytes
        guard message.isGossip, roles[node] == .member, isSteady(time) else { return }
        steadyGossipMessages += 1
        steadyGossipBytes += message.wireBytes
        steadyGossipBytesByType["\(message.message.type)", default: 0] += message.wireBytes
    }

    /// Steady windows: none before the first publication's settling, then each gap between publications past its
    /// first `settleSeconds`.
    func isSteady(_ time: VirtualTime) -> Bool {
        let seconds = time.secondsValue - scenario.firstSnapshotSeconds
        guard seconds >= 0 else { return false }
        let sinceLast: Double
        if seconds >= Double(scenario.snapshotCount - 1) * scenario.snapshotIntervalSeconds {
            sinceLast = seconds - Double(scenario.snapshotCount - 1) * scenario.snapshotIntervalSeconds
        } else {
            sinceLast = seconds.truncatingRemainder(dividingBy: scenario.snapshotIntervalSeconds)
        }
        return sinceLast >= Self.settleSeconds
    }

    /// Total steady seconds up to `end`.
    func steadySeconds(end: VirtualTime) -> Double {
        var total = 0.0
        for snapshot in 0..<scenario.snapshotCount {
            let start = scenario.firstSnapshotSeconds + Double(snapshot) * scenario.snapshotIntervalSeconds
            let stop =
                snapshot + 1 < scenario.snapshotCount
                ? start + scenario.snapshotIntervalSeconds : end.secondsValue
            total += max(0, min(stop, end.secondsValue) - (start + Self.settleSeconds))
        }
        return total
    }

    func report(links: LinkModel, end: VirtualTime, connectionsPerNode: Double, online: [Bool]) -> SimulationReport {
        var report = SimulationReport(
            scenario: scenario.name, nodes: scenario.nodes, offices: scenario.offices, randomSeed: scenario.randomSeed)
        report.virtualSeconds = end.secondsValue
        report.snapshotBytes = scenario.snapshotBytes
        let members = roles.indices.filter { roles[$0] == .member }
        var gossipDelays: [Double] = []
        var completionDelays: [Double] = []
        var pairs = 0
        var published = 0
        var reached = 0
        var completed = 0
        for (snapshot, time) in publishedAt.enumerated() {
            guard let time else { continue }
            published += 1
            for node in members {
                pairs += 1
                let steady = onlineSince(snapshot, node: node)
                if let learned = learnedAt[snapshot][node] {
                    reached += 1
                    if steady { gossipDelays.append((learned - time).secondsValue) }
                }
                if let done = completedAt[snapshot][node] {
                    completed += 1
                    if steady { completionDelays.append((done - time).secondsValue) }
                }
            }
        }
        gossipDelays.sort()
        completionDelays.sort()
        report.snapshotsPublished = published
        report.gossipP50Seconds = percentile(gossipDelays, 0.5)
        report.gossipP99Seconds = percentile(gossipDelays, 0.99)
        report.gossipMaxSeconds = gossipDelays.last ?? 0
        report.gossipReachedFraction = pairs == 0 ? 0 : Double(reached) / Double(pairs)
        report.completionP50Seconds = percentile(completionDelays, 0.5)
        report.completionP99Seconds = percentile(completionDelays, 0.99)
        report.completionMaxSeconds = completionDelays.last ?? 0
        report.completedFraction = pairs == 0 ? 0 : Double(completed) / Double(pairs)
        let steady = steadySeconds(end: end)
        if steady > 0, !members.isEmpty {
            let perNode = Double(members.count) * steady
            let keepalives = connectionsPerNode / Keepalive.intervalSeconds
            report.gossipMessagesPerNodePerSecond = Double(steadyGossipMessages) / perNode + keepalives * 2
            report.gossipBytesPerNodePerSecond =
                Double(steadyGossipBytes) / perNode
                + keepalives * Double(Keepalive.bytes)
            report.gossipBytesPerNodePerSecondByType = steadyGossipBytesByType.mapValues { Double($0) / perNode }
            report.gossipBytesPerNodePerSecondByType["keepalive"] = keepalives * Double(Keepalive.bytes)
        }
        let snapshotTotal = Double(max(1, published) * scenario.snapshotBytes)
        let seed = roles.firstIndex(of: .bors).map { egress[$0] } ?? 0
        let origin = roles.firstIndex(of: .origin).map { egress[$0] } ?? 0
        report.seedEgressRatio = Double(seed) / snapshotTotal
        report.originEgressRatio = Double(origin) / snapshotTotal
        let inbound = links.officeInboundBytes.map { Double($0) / snapshotTotal }
        report.maxOfficeUplinkRatio = inbound.max() ?? 0
        report.meanOfficeUplinkRatio = inbound.isEmpty ? 0 : inbound.reduce(0, +) / Double(inbound.count)
        report.churnLeaves = churnLeaves
        return report
    }
}
