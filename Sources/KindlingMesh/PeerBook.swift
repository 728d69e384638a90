public import KindlingCrypto
public import KindlingWire

/// Who the node knows, is connected to, dials and has banned: peer bookkeeping as a plain value, with no I/O and
/// no clock of its own (Specs/wire.md, "Connections", "Limits").
///
/// A driver (`MeshNode` over real sockets, or a simulator on virtual time) calls one method per event, passing the
/// time, and performs the actions returned, in order:
///
/// ```swift
/// var book = PeerBook(configuration: .init(meshConfiguration), seed: 42)
/// switch book.peerAuthenticated(peer, now: now, idle: { id in noTrafficWith(id) }) {
/// case .admitted(let actions): perform(actions)
/// case .refused(let code, let message): sendErrorAndClose(code, message)
/// }
/// perform(book.timerFired(now: now))   // at the last `.scheduleTimer` instant, or more often
/// ```
///
/// Peers are named by node id. `.dial` must be answered by `dialFinished` once the dial failed or the connection it
/// made ended; `.disconnect` and `.ban` ask the driver to send an Error frame and close, and then to report
/// `peerDisconnected`. A book with nothing to do later (connected to its dial target, no dial pending) asks for no
/// timer; `dialFinished` and `peerDisconnected` ask for one when they leave it short of peers.
///
/// The node opens connections until `dialTarget` of its own are up (its reserved outbound slots) and leaves the
/// rest of `maxPeers` to peers that dial it. Filling every slot by dialling made an idle mesh churn forever: a node
/// short of one peer dialled a full one, which evicted an idle peer for it, whose node was then short and redialled
/// a second later (in a 1,000-node simulation, 60 % of all events).
public struct PeerBook: Sendable {
    public typealias Instant = ContinuousClock.Instant

    /// The tunables of `MeshConfiguration` that peer bookkeeping uses.
    public struct Configuration: Sendable {
        public var localNodeID: PublicKey
        public var bootstrapPeers: Set<HostPort>
        public var maxPeers: Int
        public var maxInboundPeers: Int
        public var maxLANPeers: Int
        public var maxKnownAddresses: Int
        public var banDuration: Duration
        public var maxBanRecords: Int
        public var maxStrikes: Int
        public var redialBaseDelay: Duration
        public var redialMaxDelay: Duration
        public var peerExchange: Bool
        public var peerExchangeInterval: Duration
        /// Connections the node opens itself (by its dial sweep) and keeps: the slots `maxPeers` keeps for outbound
        /// connections, at least one.
        public var dialTarget: Int

        public init(_ mesh: MeshConfiguration) {
            localNodeID = mesh.nodeKey.publicKey
            bootstrapPeers = Set(mesh.bootstrapPeers)
            maxPeers = mesh.maxPeers
            maxInboundPeers = mesh.maxInboundPeers
            maxLANPeers = mesh.maxLANPeers
            maxKnownAddresses = mesh.maxKnownAddresses
            banDuration = mesh.banDuration
            maxBanRecords = mesh.maxBanRecords
            maxStrikes = mesh.maxStrikes
            redialBaseDelay = mesh.redialBaseDelay
            redialMaxDelay = mesh.redialMaxDelay
            peerExchange = mesh.peerExchange
            peerExchangeInterval = mesh.peerExchangeInterval
            dialTarget = max(1, mesh.maxPeers - mesh.maxInboundPeers)
        }
    }

    /// An authenticated connection, as the book sees it.
    public struct Peer: Sendable, Hashable {
        public var nodeID: PublicKey
        /// We opened the connection.
        public var outbound: Bool
        /// Where the peer listens (nil: it does not), as others can dial it.
        public var listenAddress: PeerAddress?
        /// The address the connection came from: eviction picks from the source with the most idle peers.
        public var remoteHost: String
        public var connectedAt: Instant

        public init(
            nodeID: PublicKey, outbound: Bool, listenAddress: PeerAddress?, remoteHost: String, connectedAt: Instant
        ) {
            self.nodeID = nodeID
            self.outbound = outbound
            self.listenAddress = listenAddress
            self.remoteHost = remoteHost
            self.connectedAt = connectedAt
        }

        var listenHostPort: HostPort? { listenAddress.map { HostPort(host: $0.host, port: Int($0.port)) } }
    }

    public enum Action: Sendable, Hashable {
        case send(WireMessage, to: PublicKey)
        /// Open a connection to the address; answer with `dialFinished`.
        case dial(HostPort)
        /// Send an Error frame with this code and message, then close the connection.
        case disconnect(PublicKey, code: RefusalCode, message: String)
        /// The node is banned until `until`: send an Error frame (`code`, `message`) and close its connection.
        case ban(PublicKey, code: RefusalCode, reason: String, message: String)
        /// An offence was counted against the node (`count` within `banDuration`); below `maxStrikes`, no ban yet.
        case strike(PublicKey, reason: String, count: Int)
        /// A node of our mesh was found on the LAN and its address learned.
        case discoveredOnLAN(HostPort)
        /// Call `timerFired` at this instant (or earlier).
        case scheduleTimer(at: Instant)
    }

    public enum Admission: Sendable, Hashable {
        case admitted([Action])
        case refused(RefusalCode, message: String)
    }

    /// Failures in a row of something retried, and when to try it again.
    struct Backoff: Sendable, Hashable {
        var failures: Int
        var notBefore: Instant
    }

    struct StrikeRecord: Sendable, Hashable {
        var count: Int
        var expires: Instant
    }

    public let configuration: Configuration
    private var random: MeshRandom
    private(set) var peers: [PublicKey: Peer] = [:]
    private(set) var listenPort: UInt16 = 0
    private(set) var knownAddresses: Set<HostPort>
    /// `knownAddresses` in a fixed order (bootstrap peers sorted, then as learned), so that picking dial candidates
    /// is random under the seed yet needs no sort: it ran every second and sorted every address by its text, the
    /// most expensive thing a 1,000-node simulation did.
    private var knownOrder: [HostPort]
    private(set) var dialing: Set<HostPort> = []
    /// Addresses the dial sweep asked for, until their dial ends (failed, or the connection closed): what counts
    /// toward `dialTarget`. Holder and LAN dials do not.
    private(set) var sweepDials: Set<HostPort> = []
    /// When each address may be dialled again (only addresses in `knownAddresses`).
    private(set) var redial: [HostPort: Backoff] = [:]
    private(set) var bans: [PublicKey: Instant] = [:]
    /// Nodes heard on the LAN (at most `maxLANNodes`): the scheduler treats them as near, whose bytes do not cross
    /// the site's uplink. A hint for scheduling only; a forged beacon can at worst make us prefer a far peer.
    public private(set) var lanNodes: Set<PublicKey> = []
    static let maxLANNodes = 1024
    /// Peers admitted on the LAN's own slots (see `MeshConfiguration.maxLANPeers`); the others count toward
    /// `maxPeers`.
    private(set) var lanSlotted: Set<PublicKey> = []
    /// Peers on the slots `maxPeers` bounds.
    var slottedCount: Int { peers.count - lanSlotted.count }
    /// Protocol offences per node id (not per connection: reconnecting does not reset them), forgotten after
    /// `banDuration`.
    private(set) var strikes: [PublicKey: StrikeRecord] = [:]
    /// Peers we sent GetPeers and whose answer we wait for: Peers frames nobody asked for are ignored.
    private(set) var awaitingPeers: Set<PublicKey> = []
    private(set) var shuttingDown = false
    public private(set) var counters = Counters()
    /// The last dial sweep (they run at most once a second), purge and peer exchange.
    private var lastDialSweep: Instant?
    private var nextPurge: Instant?
    private var nextExchange: Instant?

    public struct Counters: Sendable, Hashable {
        public var bans = 0
        public var strikes = 0
        public var lanDiscovered = 0
        public var evictions = 0
    }

    /// Dial candidates are looked for once a second while short of the dial target, expired bans forgotten every 10 s
    /// (when the timer runs: records are checked for expiry wherever they are read).
    static let dialSweepInterval = Duration.seconds(1)
    static let purgeInterval = Duration.seconds(10)

    public init(configuration: Configuration, seed: UInt64) {
        self.configuration = configuration
        random = MeshRandom(seed: seed)
        knownAddresses = configuration.bootstrapPeers
        knownOrder = configuration.bootstrapPeers.sorted { ($0.host, $0.port) < ($1.host, $1.port) }
    }

    // MARK: Queries

    public var connectedCount: Int { peers.count }
    public var inboundCount: Int { peers.values.filter { !$0.outbound }.count }
    public func isConnected(_ id: PublicKey) -> Bool { peers[id] != nil }
    public func peer(_ id: PublicKey) -> Peer? { peers[id] }

    public func isBanned(_ id: PublicKey, now: Instant) -> Bool {
        guard let until = bans[id] else { return false }
        return until > now
    }

    public func activeBans(now: Instant) -> Int { bans.values.filter { $0 > now }.count }

    /// Short of peers: the sweep's own connections (up or being dialled) are fewer than `dialTarget`, and a usual
    /// slot is free.
    public var wantsPeers: Bool {
        !shuttingDown && sweepDials.count < configuration.dialTarget && slottedCount < configuration.maxPeers
    }

    /// True when the peer is one of our bootstrap peers that dialled us (same address and listening port).
    func isBootstrap(_ peer: Peer) -> Bool {
        guard let address = peer.listenHostPort else { return false }
        return configuration.bootstrapPeers.contains(address)
    }

    // MARK: Events

    public mutating func listening(port: UInt16) {
        listenPort = port
    }

    public mutating func shutdown() {
        shuttingDown = true
    }

    /// A connection finished its handshake. Connections we opened and our bootstrap peers may use every slot; other
    /// inbound peers only `maxInboundPeers`, so that a flood of them cannot cut the node off from its seeds. When the
    /// peer's class is full, the least useful inbound peer makes room, but only one that is `idle` (has done nothing
    /// for us: no chunks either way, no snapshot of our catalog held).
    public mutating func peerAuthenticated(
        _ peer: Peer, now: Instant, idle: (PublicKey) -> Bool
    ) -> Admission {
        if shuttingDown { return .refused(.shuttingDown, message: "node is shutting down") }
        if isBanned(peer.nodeID, now: now) { return .refused(.banned, message: "banned") }
        if peers[peer.nodeID] != nil { return .refused(.alreadyConnected, message: "already connected") }
        var actions: [Action] = []
        // A peer heard on the LAN takes one of the LAN's own slots while there is one.
        let onLANSlot = lanNodes.contains(peer.nodeID) && lanSlotted.count < configuration.maxLANPeers
        let privileged = peer.outbound || isBootstrap(peer)
        let inbound = peers.values.filter { !$0.outbound && !isBootstrap($0) && !lanSlotted.contains($0.nodeID) }
        let full =
            !onLANSlot
            && (slottedCount >= configuration.maxPeers
                || (!privileged && inbound.count >= configuration.maxInboundPeers))
        if full {
            // From the source address with the most idle peers, the youngest: an address flooding us loses its own.
            let useless = inbound.filter { idle($0.nodeID) }
            var bySource: [String: Int] = [:]
            for candidate in useless { bySource[candidate.remoteHost, default: 0] += 1 }
            // (idle peers from its source, connection time, id text), compared lexicographically; the id's text
            // (a hex encoding) only on a tie, as a tuple would compute it for every comparison.
            let victim = useless.max { lhs, rhs in
                let (left, right) = (bySource[lhs.remoteHost] ?? 0, bySource[rhs.remoteHost] ?? 0)
                if left != right { return left < right }
                if lhs.connectedAt != rhs.connectedAt { return lhs.connectedAt < rhs.connectedAt }
                return lhs.nodeID.text < rhs.nodeID.text
            }
            guard let victim else { return .refused(.tooManyPeers, message: "too many peers") }
            counters.evictions += 1
            forget(victim.nodeID)
            actions.append(
                .disconnect(victim.nodeID, code: .tooManyPeers, message: "too many peers: making room for another"))
        }
        if onLANSlot { lanSlotted.insert(peer.nodeID) }
        peers[peer.nodeID] = peer
        if let address = peer.listenHostPort { learn(address) }
        if configuration.peerExchange { actions.append(requestPeers(from: peer.nodeID)) }
        return .admitted(actions)
    }

    /// A connection closed. When that leaves the node short of peers, the result asks for the timer (the next
    /// dial sweep).
    @discardableResult
    public mutating func peerDisconnected(_ id: PublicKey, now: Instant) -> [Action] {
        let wanted = wantsPeers
        forget(id)
        return wanted ? [] : sweepTimer(now: now)
    }

    private mutating func forget(_ id: PublicKey) {
        peers[id] = nil
        lanSlotted.remove(id)
        awaitingPeers.remove(id)
    }

    /// A dial ended: the connection could not be made or was refused (`admitted` false), or it ran and closed.
    /// Failures back off exponentially (with 20 % jitter) up to `redialMaxDelay`; learned addresses that fail are
    /// forgotten, bootstrap peers stay and are retried. When the node is short of peers, the result asks for the
    /// timer (the next dial sweep).
    @discardableResult
    public mutating func dialFinished(_ address: HostPort, admitted: Bool, now: Instant) -> [Action] {
        dialing.remove(address)
        sweepDials.remove(address)
        if admitted {
            redial[address] = Backoff(failures: 0, notBefore: now + configuration.redialBaseDelay)
        } else if configuration.bootstrapPeers.contains(address) {
            let failures = min((redial[address]?.failures ?? 0) + 1, 30)
            let delay = Self.backoffDelay(
                failures: failures, base: configuration.redialBaseDelay, maximum: configuration.redialMaxDelay,
                jitter: random.nextDouble(in: 0.8...1.2))
            redial[address] = Backoff(failures: failures, notBefore: now + delay)
        } else {
            knownAddresses.remove(address)
            knownOrder.removeAll { $0 == address }
            redial[address] = nil
        }
        return sweepTimer(now: now)
    }

    /// When short of peers, the timer at the next dial sweep (at most one a second).
    private func sweepTimer(now: Instant) -> [Action] {
        guard wantsPeers else { return [] }
        let due = lastDialSweep.map { max(now, $0 + Self.dialSweepInterval) } ?? now
        return [.scheduleTimer(at: due)]
    }

    /// Asks for a connection to an address, unless one is being dialled or its backoff has not passed.
    public mutating func requestDial(_ address: HostPort, now: Instant) -> [Action] {
        guard !dialing.contains(address), !shuttingDown else { return [] }
        if let backoff = redial[address], backoff.notBefore > now { return [] }
        dialing.insert(address)
        return [.dial(address)]
    }

    /// Someone we are not connected to holds what we are downloading (`GossipState`'s `.dialHolder`).
    public mutating func holderWanted(_ address: PeerAddress, now: Instant) -> [Action] {
        guard peers[address.nodeID] == nil, !isBanned(address.nodeID, now: now) else { return [] }
        let hostPort = HostPort(host: address.host, port: Int(address.port))
        guard learn(hostPort) else { return [] }
        return requestDial(hostPort, now: now)
    }

    /// A node of our mesh announced itself on the LAN.
    public mutating func lanPeerSeen(_ id: PublicKey, at address: HostPort, now: Instant) -> [Action] {
        guard id != configuration.localNodeID else { return [] }
        if lanNodes.count < Self.maxLANNodes { lanNodes.insert(id) }
        guard peers[id] == nil, !isBanned(id, now: now) else { return [] }
        guard !knownAddresses.contains(address) else { return requestDial(address, now: now) }
        var actions: [Action] = []
        if learn(address) {
            counters.lanDiscovered += 1
            actions.append(.discoveredOnLAN(address))
        }
        return actions + requestDial(address, now: now)
    }

    /// A peer asked for peers (GetPeers): the listen addresses of up to `maxPeersPerFrame` others, at random.
    public mutating func peersRequested(by id: PublicKey) -> [Action] {
        var addresses = peers.values.filter { $0.nodeID != id }.compactMap(\.listenAddress)
        addresses.shuffle(using: &random)
        return [.send(.peers(Array(addresses.prefix(WireLimits.maxPeersPerFrame))), to: id)]
    }

    /// A Peers frame arrived. Only an answer to our GetPeers is taken: unsolicited lists could fill the address book.
    public mutating func peersReceived(_ addresses: [PeerAddress], from id: PublicKey, now: Instant) {
        guard configuration.peerExchange, awaitingPeers.remove(id) != nil else { return }
        for address in addresses
        where address.nodeID != configuration.localNodeID && !isBanned(address.nodeID, now: now)
            && peers[address.nodeID] == nil
        {
            learn(HostPort(host: address.host, port: Int(address.port)))
        }
    }

    /// Counts a protocol offence against the node id; the `maxStrikes`-th bans it.
    public mutating func offence(_ id: PublicKey, reason: String, now: Instant) -> [Action] {
        var record = strikes[id].flatMap { $0.expires > now ? $0 : nil } ?? StrikeRecord(count: 0, expires: now)
        record.count += 1
        record.expires = now + configuration.banDuration
        counters.strikes += 1
        var actions: [Action] = [.strike(id, reason: reason, count: record.count)]
        if record.count >= configuration.maxStrikes {
            actions += ban(id, reason: "\(reason) (\(record.count) offences)", now: now)
        } else {
            Self.insertBounded(&strikes, key: id, value: record, limit: configuration.maxBanRecords) {
                $0.expires > now
            }
        }
        return actions
    }

    /// Bans a node that lied (a corrupt chunk, a forged announcement, garbage) for `banDuration`. The Error frame
    /// carries `code` (banned, unless the offence has a code of its own) and says for how long.
    public mutating func ban(_ id: PublicKey, reason: String, code: RefusalCode = .banned, now: Instant) -> [Action] {
        Self.insertBounded(&bans, key: id, value: now + configuration.banDuration, limit: configuration.maxBanRecords) {
            $0 > now
        }
        strikes[id] = nil
        counters.bans += 1
        forget(id)
        let seconds = Int(configuration.banDuration.seconds)
        return [.ban(id, code: code, reason: reason, message: "banned for \(seconds) s: \(reason)")]
    }

    /// Periodic work while short of peers (`wantsPeers`): dial candidates once a second, and ask every peer for more
    /// peers every `peerExchangeInterval`. Expired bans and strikes are forgotten every 10 s. Ends with the next
    /// `.scheduleTimer` while short of peers; a node at its dial target needs no timer (`dialFinished` and
    /// `peerDisconnected` ask for it again).
    public mutating func timerFired(now: Instant) -> [Action] {
        var actions: [Action] = []
        if wantsPeers, lastDialSweep.map({ $0 + Self.dialSweepInterval <= now }) ?? true {
            lastDialSweep = now
            for address in dialCandidates(now: now) {
                let dial = requestDial(address, now: now)
                if !dial.isEmpty { sweepDials.insert(address) }
                actions += dial
            }
        }
        if let due = nextPurge, due <= now {
            bans = bans.filter { $0.value > now }
            strikes = strikes.filter { $0.value.expires > now }
        }
        if nextPurge.map({ $0 <= now }) ?? true { nextPurge = now + Self.purgeInterval }
        let exchangeEvery = max(Self.dialSweepInterval, configuration.peerExchangeInterval)
        if let due = nextExchange, due <= now {
            if configuration.peerExchange, wantsPeers {
                // By id text, each encoded once (not twice per comparison).
                let ordered = peers.keys.map { ($0.text, $0) }.sorted { $0.0 < $1.0 }
                for (_, id) in ordered { actions.append(requestPeers(from: id)) }
            }
        }
        if nextExchange.map({ $0 <= now }) ?? true { nextExchange = now + exchangeEvery }
        if wantsPeers, let last = lastDialSweep {
            let next = [last + Self.dialSweepInterval, nextExchange].compactMap { $0 }.min() ?? now
            actions.append(.scheduleTimer(at: next))
        }
        return actions
    }

    // MARK: Policy

    /// Addresses worth dialling now: bootstrap peers and learned ones we are not connected to (nor dialling, nor
    /// ourselves), whose redial backoff has passed; at most as many as the dial target still lacks (and free slots),
    /// at random.
    mutating func dialCandidates(now: Instant) -> [HostPort] {
        guard wantsPeers else { return [] }
        let connected = Set(peers.values.compactMap(\.listenHostPort))
        let port = Int(listenPort)
        // Our own listening address under its loopback names: compared, not hashed (this runs every second over
        // every known address).
        func own(_ address: HostPort) -> Bool {
            address.port == port
                && (address.host == "127.0.0.1" || address.host == "::1" || address.host == "localhost")
        }
        var candidates = knownOrder.filter { address in
            !own(address) && !connected.contains(address) && !dialing.contains(address)
                && (redial[address].map { $0.notBefore <= now } ?? true)
        }
        // The first steps of a Fisher-Yates shuffle: as many random picks as there are free slots.
        let short = min(configuration.dialTarget - sweepDials.count, configuration.maxPeers - slottedCount)
        let picks = min(short, candidates.count)
        for index in 0..<picks {
            candidates.swapAt(index, Int.random(in: index..<candidates.count, using: &random))
        }
        return Array(candidates.prefix(picks))
    }

    private mutating func requestPeers(from id: PublicKey) -> Action {
        awaitingPeers.insert(id)
        return .send(.getPeers, to: id)
    }

    /// Remembers an address to dial later, up to `maxKnownAddresses` learned ones. False when it is full.
    @discardableResult
    mutating func learn(_ address: HostPort) -> Bool {
        if knownAddresses.contains(address) { return true }
        guard knownAddresses.count < configuration.maxKnownAddresses + configuration.bootstrapPeers.count else {
            return false
        }
        knownAddresses.insert(address)
        knownOrder.append(address)
        return true
    }

    /// The wait before the next attempt after `failures` failures in a row: base × 2^(failures − 1), at most
    /// `maximum`, times `jitter`.
    static func backoffDelay(failures: Int, base: Duration, maximum: Duration, jitter: Double = 1) -> Duration {
        let exponent = max(0, min(failures - 1, 62))
        let delay = min(maximum.seconds, base.seconds * Double(UInt64(1) << UInt64(exponent)))
        return .milliseconds(Int(delay * jitter * 1000))
    }

    /// Inserts into a map of at most `limit` records: when full, drops the records that are no longer `live`, and
    /// if none is, an arbitrary one (a flood of offenders cannot grow the map; the cost is an early pardon).
    static func insertBounded<Value>(
        _ map: inout [PublicKey: Value], key: PublicKey, value: Value, limit: Int, live: (Value) -> Bool
    ) {
        if map[key] == nil && map.count >= limit {
            map = map.filter { live($0.value) }
            if map.count >= limit, let victim = map.keys.first { map[victim] = nil }
        }
        map[key] = value
    }
}

/// SplitMix64: a small, seedable generator, so that a simulator replays the same run for the same seed.
public struct MeshRandom: RandomNumberGenerator, Sendable, Hashable {
    private var state: UInt64

    public init(seed: UInt64) {
        state = seed
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func nextDouble(in range: ClosedRange<Double>) -> Double {
        Double.random(in: range, using: &self)
    }
}
