import Foundation
public import KindlingCrypto
public import KindlingManifest
import KindlingWire
import Logging
import NIOPosix

extension MeshNode {
    /// How big the node's bookkeeping is: every one of these is bounded (Specs/wire.md, "Limits"), and tests
    /// check that hostile peers cannot grow them.
    struct StateSizes: Sendable, Equatable {
        var holdingEntries = 0
        var partialBitfieldBytes = 0
        var holderNotices = 0
        var knownAddresses = 0
        var bans = 0
        var strikes = 0
        var redial = 0
        var downloadRetries = 0
    }

    func stateSizes() -> StateSizes {
        var sizes = StateSizes()
        for (_, byPeer) in gossip.holdings {
            sizes.holdingEntries += byPeer.count
            for case .partial(let bits) in byPeer.values { sizes.partialBitfieldBytes += bits.bytes.count }
        }
        sizes.holderNotices = gossip.holderNotices.values.reduce(0) { $0 + $1.count }
        sizes.knownAddresses = book.knownAddresses.count
        sizes.bans = book.bans.count
        sizes.strikes = book.strikes.count
        sizes.redial = book.redial.count
        sizes.downloadRetries = gossip.retries.count
        return sizes
    }

    /// What gossip and peer bookkeeping counted, with what the connections counted.
    var counters: GossipCounters {
        var counters = gossip.counters
        counters.bans = book.counters.bans
        counters.strikes = book.counters.strikes
        counters.lanDiscovered = book.counters.lanDiscovered
        counters.slowConsumers = slowConsumers
        counters.throttled += throttledBodies
        return counters
    }

    public func status() -> MeshStatus {
        let now = ContinuousClock.now
        return MeshStatus(
            nodeID: nodeID.text, listenPort: Int(listenPort),
            peers: peers.values.map { peer in
                let stats = peer.statistics
                return MeshStatus.Peer(
                    nodeID: peer.nodeID.text, address: "\(peer.remoteHost):\(peer.identity.listenPort)",
                    direction: peer.role == .initiator ? "out" : "in", agent: escapedPeerText(peer.identity.agent),
                    uploaded: stats.uploaded, downloaded: stats.downloaded, requestsInFlight: stats.inFlight,
                    serving: stats.serving, connectedSeconds: (now - peer.connectedAt).seconds)
            }.sorted { $0.nodeID < $1.nodeID },
            catalogSize: gossip.catalogCount, completeSnapshots: gossip.completeCount,
            downloads: downloads.keys.map(\.hex).sorted(), gossip: counters, bannedPeers: book.activeBans(now: now),
            uploadedBytes: closedUploaded + peers.values.reduce(0) { $0 + $1.statistics.uploaded },
            downloadedBytes: closedDownloaded + peers.values.reduce(0) { $0 + $1.statistics.downloaded },
            meshPrivate: configuration.mesh.isPrivate, encrypted: configuration.mesh.isPrivate,
            transport: configuration.mesh.isPrivate
                ? "private mesh: peers authenticated with the mesh secret, every frame encrypted"
                : "open mesh: peers authenticated but traffic NOT encrypted (anyone on the path can read it); "
                    + "use --mesh-secret for anything that crosses an untrusted network",
            connections: connectionStatus(), trustKeys: trust.trust.keys.count, trustProblem: trustProblem,
            equivocations: gossip.equivocations.map(MeshStatus.EquivocationReport.init), trust: trustStatus(),
            heads: headStatus())
    }

    private func connectionStatus() -> MeshStatus.Connections {
        let gate = self.gate.snapshot
        return MeshStatus.Connections(
            openDescriptors: DescriptorLimit.openDescriptors() ?? -1, descriptorLimit: self.gate.descriptorLimit,
            descriptorReserve: configuration.descriptorReserve, sockets: gate.sockets, pendingHandshakes: gate.pending,
            inboundPeers: book.inboundCount, maxPeers: configuration.maxPeers,
            maxInboundPeers: configuration.maxInboundPeers, counters: gate.counters)
    }
}

/// Counts of what gossip did, for status and benchmarks.
public struct GossipCounters: Sendable, Codable {
    public var accepted = 0
    public var relayed = 0
    public var duplicates = 0
    public var rejected = 0
    public var bans = 0
    /// Protocol offences counted (availability beyond a manifest; never disagreement about trust).
    public var strikes = 0
    /// Peers disconnected because they did not read what was queued for them.
    public var slowConsumers = 0
    /// Requests not answered because the peer was over its budget (catalog exchanges, announcement lookups, body
    /// pieces).
    public var throttled = 0
    public var lanDiscovered = 0
}

/// A node's state for `kindling status`.
public struct MeshStatus: Sendable, Codable {
    public struct Peer: Sendable, Codable {
        public var nodeID: String
        public var address: String
        public var direction: String
        public var agent: String
        public var uploaded: Int
        public var downloaded: Int
        public var requestsInFlight: Int
        public var serving: Int
        public var connectedSeconds: Double
    }
    public var nodeID: String
    public var listenPort: Int
    public var peers: [Peer]
    public var catalogSize: Int
    public var completeSnapshots: Int
    public var downloads: [String]
    public var gossip: GossipCounters
    public var bannedPeers: Int
    /// Chunk bytes (compressed, as sent) served to and received from peers since the node started.
    public var uploadedBytes: Int
    public var downloadedBytes: Int
    /// An open mesh authenticates peers (node keys) but sends everything in the clear; a private one encrypts.
    public var meshPrivate: Bool
    public var encrypted: Bool
    /// One line saying what the transport protects, for `kindling status`.
    public var transport: String
    public var connections: Connections
    /// Publisher keys of the trust policy in force (revoked ones included).
    public var trustKeys: Int
    /// Set when the trust policy in force is not what is configured now: why (a trust file that failed to reload).
    public var trustProblem: String?
    /// Keys that signed two different manifests of one build (Specs/trust.md, "Equivocation").
    public var equivocations: [EquivocationReport]

    public struct EquivocationReport: Sendable, Codable {
        public var key: String
        public var repository: String
        public var commit: String
        public var cacheKey: [String: String]
        public var manifests: [String]
        public var message: String

        public init(_ equivocation: Equivocation) {
            key = equivocation.build.publisher.text
            repository = equivocation.build.repository
            commit = equivocation.build.commit
            cacheKey = equivocation.build.cacheKey
            manifests = equivocation.manifests.map(\.hex)
            // The cache key is the publisher's text: escaped like every peer string shown.
            message = escapedPeerText(equivocation.description, limit: 4096)
        }
    }
    /// The root-signed trust document, for a node with roots.
    public var trust: TrustDocumentStatus? = nil
    /// Head records held (Specs/freshness.md), newest first; an expired newest one carries a warning. Optional so
    /// that a CLI still reads the status of a node that predates head records.
    public var heads: [HeadRecordStatus]? = nil

    /// Descriptors and connection slots: what a flood of connections could use up, and what the caps refused.
    public struct Connections: Sendable, Codable {
        /// Descriptors open in the node process when asked (-1 when /proc cannot be read).
        public var openDescriptors: Int
        public var descriptorLimit: Int
        public var descriptorReserve: Int
        /// TCP sockets of the mesh (any stage), and those still in their handshake.
        public var sockets: Int
        public var pendingHandshakes: Int
        public var inboundPeers: Int
        public var maxPeers: Int
        public var maxInboundPeers: Int
        public var counters: ConnectionCounters
    }
}

public enum MeshError: Error, Sendable, CustomStringConvertible {
    case unknownManifest(Digest)
    case shuttingDown
    case stalled(missingChunks: Int, seconds: Int)
    case noBodySource(Digest)
    case store(String)
    /// The trust policy changed and refuses the manifest.
    case refused(Digest, reason: String)
    /// The download stopped: the trust policy refuses the manifest, or it turned out equivocal.
    case cancelledByTrust(Digest)
    case equivocal(Equivocation)

    public var description: String {
        switch self {
        case .unknownManifest(let id):
            return "no trusted announcement of manifest \(id.short) has reached this node; "
                + "is a peer that holds it connected?"
        case .shuttingDown: return "the node is shutting down"
        case .stalled(let missing, let seconds):
            return "no peer could supply \(missing) chunks for \(seconds) s; "
                + "check that a node holding the snapshot is reachable"
        case .noBodySource(let id):
            return "no connected peer could send the manifest body of \(id.short)"
        case .store(let message): return message
        case .refused(let id, let reason):
            return "manifest \(id.short) is no longer trusted (\(reason)); it was dropped from this node's catalog"
        case .cancelledByTrust(let id):
            return "the fetch of manifest \(id.short) stopped: the trust policy no longer allows it to be used "
                + "(revoked or withdrawn, or its key signed another build of the same commit); see 'kindling status'"
        case .equivocal(let equivocation):
            return "refused: \(equivocation)"
        }
    }
}

extension Duration {
    var seconds: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }
}
