/// What a run measured. The JSON form (`--json`) is a contract for scripts: keys are only ever added.
public struct SimulationReport: Codable, Sendable, Equatable {
    public var scenario: String
    public var nodes: Int
    public var offices: Int
    public var randomSeed: UInt64
    /// Wall-clock seconds the run took (the only figure that differs between identical runs).
    public var wallSeconds: Double
    public var virtualSeconds: Double
    public var events: Int
    /// The events by kind: "deliver.<message type>", "timer", "timer.servingSlot", "dial", "dialAnswer",
    /// "disconnect", "publish", "churn".
    public var eventsByKind: [String: Int]
    public var snapshotsPublished: Int
    public var snapshotBytes: Int
    /// From a snapshot's announcement by bors until each online node has it in its catalog, over all snapshots.
    public var gossipP50Seconds: Double
    public var gossipP99Seconds: Double
    public var gossipMaxSeconds: Double
    /// Share of (node, snapshot) pairs that learned of the snapshot before the run ended.
    public var gossipReachedFraction: Double
    /// Gossip (everything but chunk and body traffic), sent per node per second, between snapshots.
    public var gossipMessagesPerNodePerSecond: Double
    public var gossipBytesPerNodePerSecond: Double
    /// The same by message type (keepalives under "keepalive").
    public var gossipBytesPerNodePerSecondByType: [String: Double]
    /// Bytes bors and the origin sent, over the bytes of all published snapshots.
    public var seedEgressRatio: Double
    public var originEgressRatio: Double
    /// Bytes into each office through its uplink over the bytes of all published snapshots: worst and mean.
    public var maxOfficeUplinkRatio: Double
    public var meanOfficeUplinkRatio: Double
    /// From publication until each node that wanted the snapshot held all of it.
    public var completionP50Seconds: Double
    public var completionP99Seconds: Double
    public var completionMaxSeconds: Double
    public var completedFraction: Double
    public var churnLeaves: Int
    public var transfer: TransferCounters

    public init(scenario: String, nodes: Int, offices: Int, randomSeed: UInt64) {
        self.scenario = scenario
        self.nodes = nodes
        self.offices = offices
        self.randomSeed = randomSeed
        wallSeconds = 0
        virtualSeconds = 0
        events = 0
        eventsByKind = [:]
        snapshotsPublished = 0
        snapshotBytes = 0
        gossipP50Seconds = 0
        gossipP99Seconds = 0
        gossipMaxSeconds = 0
        gossipReachedFraction = 0
        gossipMessagesPerNodePerSecond = 0
        gossipBytesPerNodePerSecond = 0
        gossipBytesPerNodePerSecondByType = [:]
        seedEgressRatio = 0
        originEgressRatio = 0
        maxOfficeUplinkRatio = 0
        meanOfficeUplinkRatio = 0
        completionP50Seconds = 0
        completionP99Seconds = 0
        completionMaxSeconds = 0
        completedFraction = 0
        churnLeaves = 0
        transfer = TransferCounters()
    }

    /// The report with its wall time zeroed: what two runs with one seed must agree on exactly.
    public var deterministicPart: SimulationReport {
        var copy = self
        copy.wallSeconds = 0
        return copy
    }
}

/// The value below which `fraction` of the sorted samples lie (nearest rank); 0 for no samples.
public func percentile(_ sorted: [Double], _ fraction: Double) -> Double {
    guard !sorted.isEmpty else { return 0 }
    let rank = Int((fraction * Double(sorted.count)).rounded(.up)) - 1
    return sorted[min(sorted.count - 1, max(0, rank))]
}
