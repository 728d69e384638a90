import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingMesh
import KindlingWire

/// A snapshot bors publishes in the simulation: a real signed manifest over synthetic chunks (their bytes never
/// exist; only their ids and lengths do).
struct SimulatedSnapshot {
    var manifest: Manifest
    var index: ChunkIndex
    var id: Digest { manifest.id }
}

/// What every simulated node shares and never changes per node: identities, addresses, the trust policy, the
/// snapshots published so far, and the mapping from virtual time to the instants the state machines take.
final class SimulationWorld {
    let scenario: Scenario
    let roles: [NodeRole]
    let offices: [Int?]
    let natOnly: [Bool]
    let keys: [PublicKey]
    let indexByKey: [PublicKey: Int]
    let addresses: [HostPort]
    let indexByAddress: [HostPort: Int]
    /// Members of each office, in order.
    let officeMembers: [[Int]]
    let borsKey: SigningKey
    let trust: TrustPolicy
    let meshConfiguration: MeshConfiguration
    private(set) var snapshots: [SimulatedSnapshot] = []
    /// What the nodes' downloads did, in all (for the report).
    var transfer = TransferCounters()
    private(set) var snapshotByID: [Digest: Int] = [:]
    /// The state machines take `ContinuousClock.Instant`s: each is this opaque origin plus virtual time. Nothing
    /// depends on the origin's value, only on differences, so runs stay deterministic.
    let origin: ContinuousClock.Instant
    /// Wall-clock time of virtual time 0, for the trust policy's validity checks (fixed: a run must not depend on
    /// the day it runs).
    static let epoch = Date(timeIntervalSince1970: 1_800_000_000)

    init(scenario: Scenario, topology: Topology) {
        self.scenario = scenario
        roles = topology.roles
        offices = topology.links.nodes.map(\.office)
        natOnly = topology.links.nodes.map(\.natOnly)
        var keys: [PublicKey] = []
        var addresses: [HostPort] = []
        for index in roles.indices {
            // Node ids need not be real key pairs (no handshake is simulated): 32 bytes naming the index, the last
            // eight, after 24 that look random as a real key's do. The seed and office splits rank nodes by the
            // first eight: with a common prefix (as before) every node owned the same positions.
            var bytes = [UInt8](repeating: 0, count: PublicKey.byteCount)
            for word in 0..<3 {
                let mixed = ChunkScheduler.rank(UInt64(index), word)
                withUnsafeBytes(of: mixed.bigEndian) { bytes.replaceSubrange(word * 8..<word * 8 + 8, with: $0) }
            }
            withUnsafeBytes(of: UInt64(index).bigEndian) { bytes.replaceSubrange(24..<32, with: $0) }
            keys.append((try? PublicKey(bytes: bytes)) ?? { preconditionFailure("32-byte key") }())
            addresses.append(HostPort(host: "10.\(index >> 16 & 255).\(index >> 8 & 255).\(index & 255)", port: 7070))
        }
        self.keys = keys
        self.addresses = addresses
        indexByKey = Dictionary(uniqueKeysWithValues: keys.enumerated().map { ($1, $0) })
        indexByAddress = Dictionary(uniqueKeysWithValues: addresses.enumerated().map { ($1, $0) })
        var members = Array(repeating: [Int](), count: topology.officeCount)
        for (index, office) in offices.enumerated() {
            if let office { members[office].append(index) }
        }
        officeMembers = members
        let seed = Blake2b.hash(Array("kindling-sim bors \(scenario.randomSeed)".utf8)).bytes
        borsKey =
            (try? SigningKey(seed: Array(seed.prefix(SigningKey.seedByteCount))))
            ?? {
                preconditionFailure("32-byte seed")
            }()
        trust = TrustPolicy(trust: TrustFile(keys: [TrustedKey(name: "bors", publicKey: borsKey.publicKey)]))
        var configuration = MeshConfiguration(
            nodeKey: borsKey, bootstrapPeers: [addresses[0]], trust: trust, follow: [RepositoryGlob("**")],
            maxPeers: scenario.maxPeers)
        configuration.lan = LANConfiguration()
        meshConfiguration = configuration
        origin = ContinuousClock.now
    }

    func instant(_ time: VirtualTime) -> ContinuousClock.Instant { origin + .nanoseconds(time) }

    func virtualTime(_ instant: ContinuousClock.Instant) -> VirtualTime {
        let duration = instant - origin
        let (seconds, attoseconds) = duration.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }

    func date(_ time: VirtualTime) -> Date { Self.epoch.addingTimeInterval(time.secondsValue) }

    func peerAddress(_ index: Int) -> PeerAddress {
        PeerAddress(nodeID: keys[index], host: addresses[index].host, port: UInt16(addresses[index].port))
    }

    /// The address a connection from `peer` seems to come from, seen by `node`: a node behind an office's NAT shows
    /// the office's public address to anyone outside the office.
    func remoteHost(of peer: Int, seenBy node: Int) -> String {
        if let office = offices[peer], offices[node] != office { return "office-\(office)" }
        return addresses[peer].host
    }

    func snapshotIndex(_ id: Digest) -> Int? { snapshotByID[id] }

    /// Whether two nodes sit in the same office (bors and the origin are in none).
    func sameOffice(_ a: Int, _ b: Int) -> Bool { offices[a] != nil && offices[a] == offices[b] }

    func snapshot(_ id: Digest) -> SimulatedSnapshot? { snapshotByID[id].map { snapshots[$0] } }

    /// Builds and signs snapshot `number`: one file of `snapshotChunks` chunks of `chunkBytes`, chunk ids fresh
    /// (a build that shares no chunk with the one before: the worst case for transfer).
    func makeSnapshot(_ number: Int, at time: VirtualTime) -> SimulatedSnapshot {
        precondition(number == snapshots.count, "snapshots are published in order")
        let chunks = (0..<scenario.snapshotChunks).map { position in
            ChunkReference(
                id: Blake2b.hash(Array("snapshot \(number) chunk \(position) seed \(scenario.randomSeed)".utf8)),
                length: scenario.chunkBytes)
        }
        let body = ManifestBody(entries: [
            .file(path: "target/build.bin", mode: 0o644, modificationTime: 0, chunks: chunks)
        ])
        let createdAt = UInt64(date(time).timeIntervalSince1970 * 1e9)
        let commit = Hex.encode(Blake2b.hash(Array("commit \(number)".utf8)).bytes.prefix(20))
        let manifest: Manifest
        do {
            manifest = try Manifest.sign(
                repository: "acme/monorepo", commit: commit, createdAt: createdAt, cacheKey: [:], body: body,
                with: borsKey)
        } catch {
            preconditionFailure("the simulator's synthetic manifest is valid: \(error)")
        }
        let snapshot = SimulatedSnapshot(manifest: manifest, index: ChunkIndex(manifest: manifest))
        snapshotByID[manifest.id] = snapshots.count
        snapshots.append(snapshot)
        return snapshot
    }
}

/// Chunk requests and what became of them, over all nodes.
public struct TransferCounters: Codable, Sendable, Equatable {
    public var requests = 0
    public var timeouts = 0
    public var notHeld = 0
    /// GetChunks answered busy (over MeshServer's serving limits).
    public var busy = 0
    public var cancels = 0
    public var closed = 0
    /// Replies that arrived after their request had ended (timed out, cancelled): bytes the uplinks carried for
    /// nothing.
    public var lateReplies = 0
    public var lateReplyBytes = 0
    public var downloadsFailed = 0
    /// Chunk replies into an office from outside it, by fate: the first copy, a copy of a chunk already stored,
    /// a reply to a request that had ended (what an office uplink carries beyond one copy of each snapshot).
    public var officeInboundFirstBytes = 0
    public var officeInboundDuplicateBytes = 0
    public var officeInboundLateBytes = 0
    /// Requests to far sources, summed over the downloads' `ChunkScheduler.Statistics`.
    public var farOwned = 0
    public var farIdle = 0
    public var farAfterFailures = 0
    public var farAlone = 0

    mutating func add(_ statistics: ChunkScheduler.Statistics) {
        farOwned += statistics.farOwned
        farIdle += statistics.farIdle
        farAfterFailures += statistics.farAfterFailures
        farAlone += statistics.farAlone
    }
}
