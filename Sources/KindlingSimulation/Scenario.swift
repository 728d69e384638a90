public import Foundation

/// What to simulate: the network, the population, and the snapshots bors publishes (tools/sim/README.md documents
/// each field). Every field has a default, so a scenario file names only what it changes.
public struct Scenario: Sendable, Equatable {
    public var name = "default"
    /// Seed of the simulation's random generator: the same scenario and seed give the same report.
    public var randomSeed: UInt64 = 1
    /// Nodes besides bors (the seed) and the origin.
    public var nodes = 200
    /// Offices the nodes are spread over, round robin (0: every node on its own internet line).
    public var offices = 4
    public var officeUplinkMbps = 100.0
    public var nodeUplinkMbps = 100.0
    public var nodeDownlinkMbps = 1000.0
    /// Node to site edge, one way.
    public var nodeLatencyMs = 2.0
    /// Between sites, one way.
    public var wideAreaLatencyMs = 20.0
    /// Inside an office, one way.
    public var localLatencyMs = 0.2
    /// Share of nodes that cannot be dialled from outside their office.
    public var natOnlyFraction = 0.3
    /// Share of nodes that leave per hour (each comes back after `churnDowntimeSeconds`, store intact).
    public var churnPerHour = 0.2
    public var churnDowntimeSeconds = 300.0
    /// bors: the publisher and first seed, on the internet.
    public var seedUplinkMbps = 1000.0
    /// An origin webseed (a CDN in front of bors's store) with this bandwidth; nil: none.
    public var originMbps: Double? = nil
    /// Every node on one machine whose CPU handles this many megabits per second of messages in all (hash,
    /// store, serve): a benchmark on loopback or in network namespaces of one host. nil: no such limit.
    public var hostMbps: Double? = nil
    /// The snapshots: `snapshotCount` of them, one every `snapshotIntervalSeconds`, the first at
    /// `firstSnapshotSeconds`, each of `snapshotChunks` chunks of `chunkBytes`.
    public var snapshotChunks = 64
    public var chunkBytes = 256 << 10
    public var snapshotCount = 1
    public var snapshotIntervalSeconds = 600.0
    public var firstSnapshotSeconds = 60.0
    /// Virtual time simulated; the run also ends early once every snapshot is everywhere it can be.
    public var durationSeconds = 900.0
    /// Peers each node keeps at most (the mesh configuration's maxPeers), and bors.
    public var maxPeers = 32
    public var seedMaxPeers = 256
    /// Office members find each other by LAN multicast (LANDiscovery), besides bors and peer exchange.
    public var lanDiscovery = true

    public init() {}

    public var snapshotBytes: Int { snapshotChunks * chunkBytes }

    /// Reads a scenario file, refusing unknown fields (a typo must not silently fall back to a default).
    public static func load(path: String) throws(ScenarioError) -> Scenario {
        guard let data = FileManager.default.contents(atPath: path) else { throw .unreadable(path: path) }
        return try parse(data, origin: path)
    }

    public static func parse(_ data: Data, origin: String = "scenario") throws(ScenarioError) -> Scenario {
        let fields: [String: ScenarioValue]
        do {
            fields = try JSONDecoder().decode([String: ScenarioValue].self, from: data)
        } catch DecodingError.typeMismatch {
            throw .malformed(origin: origin, reason: "the top level must be a JSON object of fields")
        } catch {
            throw .malformed(origin: origin, reason: "not JSON: \(error)")
        }
        var scenario = Scenario()
        for (key, value) in fields.sorted(by: { $0.key < $1.key }) {
            try scenario.set(key, value, origin: origin)
        }
        try scenario.validate(origin: origin)
        return scenario
    }

    private mutating func set(_ key: String, _ value: ScenarioValue, origin: String) throws(ScenarioError) {
        func number() throws(ScenarioError) -> Double {
            guard case .number(let number) = value, number.isFinite else {
                throw .malformed(origin: origin, reason: "\(key) must be a number")
            }
            return number
        }
        func integer() throws(ScenarioError) -> Int {
            let value = try number()
            guard value == value.rounded(), abs(value) < 1e15 else {
                throw .malformed(origin: origin, reason: "\(key) must be an integer")
            }
            return Int(value)
        }
        switch key {
        case "name":
            guard case .string(let text) = value else {
                throw .malformed(origin: origin, reason: "name must be a string")
            }
            name = text
        case "randomSeed":
            let seed = try integer()
            guard seed >= 0 else { throw .malformed(origin: origin, reason: "randomSeed must be ≥ 0") }
            randomSeed = UInt64(seed)
        case "nodes": nodes = try integer()
        case "offices": offices = try integer()
        case "officeUplinkMbps": officeUplinkMbps = try number()
        case "nodeUplinkMbps": nodeUplinkMbps = try number()
        case "nodeDownlinkMbps": nodeDownlinkMbps = try number()
        case "nodeLatencyMs": nodeLatencyMs = try number()
        case "wideAreaLatencyMs": wideAreaLatencyMs = try number()
        case "localLatencyMs": localLatencyMs = try number()
        case "natOnlyFraction": natOnlyFraction = try number()
        case "churnPerHour": churnPerHour = try number()
        case "churnDowntimeSeconds": churnDowntimeSeconds = try number()
        case "seedUplinkMbps": seedUplinkMbps = try number()
        case "originMbps": originMbps = value == .null ? nil : try number()
        case "hostMbps": hostMbps = value == .null ? nil : try number()
        case "snapshotChunks": snapshotChunks = try integer()
        case "chunkBytes": chunkBytes = try integer()
        case "snapshotCount": snapshotCount = try integer()
        case "snapshotIntervalSeconds": snapshotIntervalSeconds = try number()
        case "firstSnapshotSeconds": firstSnapshotSeconds = try number()
        case "durationSeconds": durationSeconds = try number()
        case "maxPeers": maxPeers = try integer()
        case "seedMaxPeers": seedMaxPeers = try integer()
        case "lanDiscovery":
            guard case .bool(let flag) = value else {
                throw .malformed(origin: origin, reason: "lanDiscovery must be true or false")
            }
            lanDiscovery = flag
        case "comment": break
        default: throw .malformed(origin: origin, reason: "unknown field \"\(key)\"")
        }
    }

    /// Checks ranges; the command line calls it again after its overrides.
    public func validate(origin: String = "scenario") throws(ScenarioError) {
        func require(_ condition: Bool, _ reason: String) throws(ScenarioError) {
            if !condition { throw .malformed(origin: origin, reason: reason) }
        }
        try require(nodes >= 1, "nodes must be at least 1 (got \(nodes))")
        try require(nodes <= 1_000_000, "nodes must be at most 1,000,000 (got \(nodes))")
        try require(offices >= 0 && offices <= nodes, "offices must be between 0 and nodes (got \(offices))")
        try require(
            officeUplinkMbps >= 0 && nodeUplinkMbps >= 0 && nodeDownlinkMbps >= 0 && seedUplinkMbps >= 0,
            "rates must be ≥ 0 (0 means unlimited)")
        try require((originMbps ?? 0) >= 0, "originMbps must be ≥ 0")
        try require((hostMbps ?? 1) > 0, "hostMbps must be > 0 (null: no shared host)")
        try require(nodeLatencyMs >= 0 && wideAreaLatencyMs >= 0 && localLatencyMs >= 0, "latencies must be ≥ 0")
        try require((0...1).contains(natOnlyFraction), "natOnlyFraction must be between 0 and 1")
        try require(churnPerHour >= 0 && churnDowntimeSeconds >= 0, "churn figures must be ≥ 0")
        try require(snapshotChunks >= 1 && snapshotChunks <= 1 << 20, "snapshotChunks must be between 1 and 2^20")
        try require(chunkBytes >= 1 && chunkBytes <= 1 << 20, "chunkBytes must be between 1 and 1 MiB")
        try require(snapshotCount >= 1, "snapshotCount must be at least 1")
        try require(snapshotIntervalSeconds > 0 && firstSnapshotSeconds >= 0, "snapshot times must be positive")
        try require(durationSeconds > 0 && durationSeconds <= 7 * 86_400, "durationSeconds must be in (0, 1 week]")
        try require(maxPeers >= 1 && seedMaxPeers >= 1, "maxPeers and seedMaxPeers must be at least 1")
    }
}

/// One field's value in a scenario file.
enum ScenarioValue: Decodable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case other

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else {
            self = .other
        }
    }
}

/// Why a scenario cannot run, with what to fix.
public enum ScenarioError: Error, Equatable, CustomStringConvertible {
    case unreadable(path: String)
    case malformed(origin: String, reason: String)

    public var description: String {
        switch self {
        case .unreadable(let path): return "cannot read scenario file \(path): check the path"
        case .malformed(let origin, let reason): return "bad scenario \(origin): \(reason)"
        }
    }
}
