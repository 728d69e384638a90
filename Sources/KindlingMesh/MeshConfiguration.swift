public import KindlingCrypto
public import KindlingManifest
public import KindlingWire

/// A `host:port` to listen on or dial.
public struct HostPort: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port`, `[v6]:port`, or `:port` (all interfaces).
    public init?(_ text: String) {
        var hostPart: Substring
        var portPart: Substring
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            hostPart = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portPart = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
        }
        if hostPart.isEmpty { hostPart = "0.0.0.0" }
        guard let port = Int(portPart), (0...65535).contains(port) else { return nil }
        self.init(host: String(hostPart), port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// True for addresses only this machine can reach: 127.0.0.0/8, ::1, localhost.
    public var isLoopback: Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }
}

/// Everything a mesh node needs to know, with defaults a developer's background node can run with.
public struct MeshConfiguration: Sendable {
    public var nodeKey: SigningKey
    public var mesh: MeshIdentity
    public var listen: HostPort
    /// Peers never forgotten: while short of its dial target (`reservedOutboundSlots`) the node dials them, as it
    /// does learned addresses. One that cannot be reached (or refuses us) is re-dialled after
    /// `redialBaseDelay`, doubling with each failure up to `redialMaxDelay`; one that drops after a good
    /// connection is re-dialled after `redialBaseDelay`.
    public var bootstrapPeers: [HostPort]
    public var redialBaseDelay: Duration = .seconds(1)
    public var redialMaxDelay: Duration = .seconds(60)
    public var trust: TrustPolicy
    /// Trust roots: the node's trust is then the newest root-signed trust document (`trust` is what it was at start).
    public var trustRoots: TrustRootsSetting?
    /// Where head records are kept durably (`<store>/head-state`); nil keeps them in memory only.
    public var headRecords: HeadRecordKeeper?
    /// Repositories whose new snapshots are fetched as soon as they are announced.
    public var follow: [RepositoryGlob]
    public var peerExchange: Bool
    public var maxPeers: Int
    /// Chunk requests this node serves at once, per peer and in all.
    public var maxServingPerPeer: Int
    public var maxServingTotal: Int
    /// Upload rate limit in bytes per second (nil: unlimited), for laptops and polite seeds.
    public var uploadLimit: Int?
    public var handshakeTimeout: Duration
    public var keepaliveInterval: Duration
    public var idleTimeout: Duration
    /// How long a chunk request may take before it is re-requested from another peer.
    public var requestTimeout: Duration
    /// How long a fetch waits without any progress before it gives up.
    public var stallTimeout: Duration
    public var banDuration: Duration
    /// LAN discovery by multicast; nil turns it off.
    public var lan: LANConfiguration?
    /// Protocol offences (availability beyond a manifest's chunks; never disagreement about trust) tolerated from one
    /// node id before it is banned. Strikes are kept per node id, not per connection, for `banDuration`.
    public var maxStrikes: Int
    /// Ban and strike records kept at most (expired ones go first, then those that expire soonest).
    public var maxBanRecords = 4096
    /// Partial availability tracked per peer: at most this many manifests and this many bitfield bytes in all
    /// (complete holders cost a few bytes each and are bounded by the catalog). Beyond it, new partial
    /// availability from that peer is ignored.
    public var maxPartialHoldingsPerPeer = 64
    public var maxPartialHoldingBytesPerPeer = 1 << 20
    /// Addresses learned from peer exchange, holder notices and the LAN, at most (bootstrap peers come on top).
    public var maxKnownAddresses = 1024
    /// A failed download (a `--follow` prefetch, a resumed one) is retried after this, doubling up to the
    /// maximum; a new holder of it brings the retry forward to within a second.
    public var downloadRetryBaseDelay: Duration = .seconds(5)
    public var downloadRetryMaxDelay: Duration = .seconds(300)
    /// Manifest body pieces served to one peer at once (more get an empty Body, "not now").
    public var maxBodyServesPerPeer = 2
    /// Bytes queued for one peer and not yet written, Chunk replies excepted (the serving limit bounds those): a
    /// peer that lets more pile up is not reading and is disconnected as a slow consumer.
    public var maxQueuedBytesPerPeer = 16 << 20
    /// Holder notices kept per manifest (first come; others are neither kept nor relayed), and how long each lives.
    public var maxHoldersPerManifest = 16
    public var holderNoticeLifetime: Duration = .seconds(1800)
    /// How often a node below its peer limit asks its peers for more (GetPeers).
    public var peerExchangeInterval: Duration = .seconds(60)
    /// Connections still in their handshake, at most, from one source address and in all (Specs/wire.md,
    /// "Limits"). When all are taken, a connection from a less represented source replaces the oldest one of the
    /// busiest source; otherwise new connections are closed as soon as they are accepted.
    public var maxPendingPerSource = 8
    public var maxPendingTotal = 64
    /// Descriptors never handed to sockets: accepts and dials stop while fewer would be left free.
    public var descriptorReserve = 128
    /// Peer slots kept for connections we open (and for our bootstrap peers when they dial us): inbound peers
    /// take at most `maxPeers` less these (at most a quarter of `maxPeers`). They are also the dial target: the node
    /// dials until that many connections of its own are up, and leaves the rest to peers that dial it.
    public var reservedOutboundSlots = 8
    /// Peers found by LAN discovery connect on slots of their own, beyond `maxPeers`: a LAN connection costs no
    /// uplink, and colleagues that see each other whole split what they fetch over the site's uplink without
    /// overlap (`ChunkScheduler`'s office split; with colleagues on `maxPeers` slots each saw about ten of fifty).
    public var maxLANPeers = 64
    /// Messages read from one peer per second at most (burst: one second's worth); past it the node reads that
    /// peer more slowly, and TCP pushes back on it.
    public var maxMessagesPerSecondPerPeer = 1000
    /// CatalogDigest and CatalogRequest answered per peer: a burst, then one per `1 / catalogRequestsPerSecond`.
    public var catalogRequestBurst = 4
    public var catalogRequestsPerSecond = 0.2
    /// Manifest ids answered per peer in AnnounceRequests: a burst, then this many per second.
    public var announceRequestIDBurst = 16_384
    public var announceRequestIDsPerSecond = 4096.0
    /// Manifest body pieces served per peer: a burst (a whole 64 MiB body), then this many per second; more get an
    /// empty Body ("not now").
    public var bodyPieceBurst = 128
    public var bodyPiecesPerSecond = 16.0
    /// Listening on an address other than loopback in an open mesh (no secret) serves every snapshot the node holds
    /// to anyone who can reach it: refused unless this is set (`--public`).
    public var isPublic = false
    public var agent: String

    /// Inbound peers admitted at most (the rest of `maxPeers` is kept for outbound connections).
    public var maxInboundPeers: Int {
        max(1, maxPeers - min(reservedOutboundSlots, maxPeers / 4))
    }

    public init(
        nodeKey: SigningKey, mesh: MeshIdentity = .open(), listen: HostPort = HostPort(host: "127.0.0.1", port: 0),
        bootstrapPeers: [HostPort] = [], trust: TrustPolicy, follow: [RepositoryGlob] = [], peerExchange: Bool = true,
        maxPeers: Int = 32, maxServingPerPeer: Int = 64, maxServingTotal: Int = 256, uploadLimit: Int? = nil,
        handshakeTimeout: Duration = .seconds(5), keepaliveInterval: Duration = .seconds(15),
        idleTimeout: Duration = .seconds(45), requestTimeout: Duration = .seconds(10),
        stallTimeout: Duration = .seconds(60), banDuration: Duration = .seconds(600), lan: LANConfiguration? = nil,
        maxStrikes: Int = 3, agent: String = "kindling/0.1.0"
    ) {
        self.nodeKey = nodeKey
        self.mesh = mesh
        self.listen = listen
        self.bootstrapPeers = bootstrapPeers
        self.trust = trust
        self.follow = follow
        self.peerExchange = peerExchange
        self.maxPeers = maxPeers
        self.maxServingPerPeer = maxServingPerPeer
        self.maxServingTotal = maxServingTotal
        self.uploadLimit = uploadLimit
        self.handshakeTimeout = handshakeTimeout
        self.keepaliveInterval = keepaliveInterval
        self.idleTimeout = idleTimeout
        self.requestTimeout = requestTimeout
        self.stallTimeout = stallTimeout
        self.banDuration = banDuration
        self.lan = lan
        self.maxStrikes = maxStrikes
        self.agent = agent
    }
}
