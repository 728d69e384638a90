import Foundation
public import KindlingCrypto
public import KindlingManifest
public import KindlingStore
import KindlingWire
public import Logging
public import NIOPosix

/// What we hold of a manifest ourselves.
typealias LocalHolding = Availability

/// Work that needs a task of its own: dialling a peer, or running a download.
enum NodeWork: Sendable {
    case dial(HostPort)
    case download(Digest)
}

/// The state of a mesh node and its gossip logic (Specs/wire.md, "Gossip").
///
/// The actor holds state only; bytes move outside it. Connections deliver gossip messages here in order;
/// downloads and connections run as tasks of `MeshServer`, which consumes `work`.
public actor MeshNode {
    public nonisolated let configuration: MeshConfiguration
    public nonisolated let store: ChunkStore
    nonisolated let pool: NIOThreadPool
    nonisolated let logger: Logger
    nonisolated let decompressors = DecompressorPool()
    nonisolated let uploadLimiter: TokenBucket?
    /// Chunk requests being served right now, across all peers (bounded by `maxServingTotal`).
    nonisolated let servingTotal = ServingGauge()
    nonisolated let bodyCache = BodyCache()
    /// Pre-handshake caps and the descriptor reserve, checked at accept and dial.
    nonisolated let gate: ConnectionGate
    public nonisolated let nodeID: PublicKey

    nonisolated let work: AsyncStream<NodeWork>
    private nonisolated let workQueue: AsyncStream<NodeWork>.Continuation

    private(set) var listenPort: UInt16 = 0
    private var peers: [PublicKey: PeerConnection] = [:]
    private var catalog: [Digest: SignedHeader] = [:]
    private var holdings: [Digest: [PublicKey: PeerHoldings]] = [:]
    /// Partial availability tracked per peer (manifests, bitfield bytes): bounded by the configuration.
    private var partialUsage: [PublicKey: (entries: Int, bytes: Int)] = [:]
    private var local: [Digest: LocalHolding] = [:]
    private var indexes: [Digest: ChunkIndex] = [:]
    /// Who holds which trusted manifest, heard from peers: at most `maxHoldersPerManifest` per manifest, each
    /// forgotten after `holderNoticeLifetime`.
    private var holderNotices: [Digest: [PublicKey: HolderRecord]] = [:]
    /// Manifests whose holder notices a newly connected peer has yet to be sent (in batches, by `flushHaves`).
    private var holderReplay: [PublicKey: [Digest]] = [:]
    private var pendingHaves: [Digest: [UInt32]] = [:]
    private var bans: [PublicKey: ContinuousClock.Instant] = [:]
    /// Protocol offences per node id (not per connection: reconnecting does not reset them), forgotten after
    /// `banDuration`.
    private var strikes: [PublicKey: StrikeRecord] = [:]
    private var knownAddresses: Set<HostPort> = []
    private var dialing: Set<HostPort> = []
    /// When each address may be dialled again (only addresses in `knownAddresses`).
    private var redial: [HostPort: Backoff] = [:]
    private var downloads: [Digest: DownloadRecord] = [:]
    /// Failed downloads (still wanted) and when to try again; only manifests in the catalog.
    private var retries: [Digest: Backoff] = [:]
    /// Bumped whenever what peers hold changes; readable without a hop onto the actor.
    nonisolated let holdingsVersion = VersionCounter()
    var availabilityVersion: Int { holdingsVersion.value }
    private var counters = GossipCounters()
    /// Bytes moved by connections that have closed (live ones are summed on demand).
    private var closedUploaded = 0
    private var closedDownloaded = 0
    private var shuttingDown = false
    /// The catalog only grows while the node runs (ids are never removed), so its size identifies its digest.
    private var cachedCatalogDigest: (count: Int, digest: Digest)?

    struct HolderRecord {
        var address: PeerAddress
        var expires: ContinuousClock.Instant
        /// Heard from the holder itself (its Have complete), not relayed by another peer.
        var firstHand = false
    }

    /// Failures in a row of something retried (dialling an address, a download), and when to try it again.
    struct Backoff {
        var failures: Int
        var notBefore: ContinuousClock.Instant

        /// base × 2^(failures − 1), at most `maximum`, times a factor drawn from `jitter`.
        static func delay(failures: Int, base: Duration, maximum: Duration, jitter: ClosedRange<Double> = 1...1) -> Duration {
            let delay = min(maximum.seconds, base.seconds * pow(2, Double(max(0, failures - 1))))
            return .milliseconds(Int(delay * Double.random(in: jitter) * 1000))
        }
    }

    struct StrikeRecord {
        var count: Int
        var expires: ContinuousClock.Instant
    }

    struct DownloadRecord {
        var waiters: [CheckedContinuation<FetchResult, any Error>] = []
        var progress: [@Sendable (FetchProgress) -> Void] = []
    }

    public init(configuration: MeshConfiguration, store: ChunkStore, pool: NIOThreadPool, logger: Logger) {
        self.configuration = configuration
        self.store = store
        self.pool = pool
        self.logger = logger
        self.nodeID = configuration.nodeKey.publicKey
        self.uploadLimiter = configuration.uploadLimit.map { TokenBucket(bytesPerSecond: $0) }
        self.gate = ConnectionGate(
            limits: ConnectionGate.Limits(
                pendingPerSource: configuration.maxPendingPerSource, pendingTotal: configuration.maxPendingTotal,
                descriptorReserve: configuration.descriptorReserve))
        (work, workQueue) = AsyncStream.makeStream(of: NodeWork.self)
    }

    // MARK: Startup and shutdown

    /// Loads the catalog (every stored manifest that the trust file accepts now) and what we hold of each.
    func loadFromStore() async throws {
        let store = self.store
        let policy = configuration.trust
        let loaded = try await pool.runIfActive { () throws -> [(SignedHeader, LocalHolding?, ChunkIndex?)] in
            var result: [(SignedHeader, LocalHolding?, ChunkIndex?)] = []
            for summary in try store.manifestSummaries() where policy.isTrusted(summary.signed) {
                guard summary.hasBody, let manifest = try? store.manifest(summary.id) else {
                    result.append((summary.signed, nil, nil))
                    continue
                }
                let index = ChunkIndex(manifest: manifest)
                let present = try store.presentChunks(among: index.chunks.map(\.id))
                if present.count == index.count {
                    result.append((summary.signed, .complete, index))
                } else {
                    var bits = Bitset(capacity: index.count)
                    for (position, chunk) in index.chunks.enumerated() where present.contains(chunk.id) { bits.insert(position) }
                    result.append((summary.signed, bits.count > 0 ? .partial(bits) : nil, index))
                }
            }
            return result
        }
        for (signed, holding, index) in loaded {
            catalog[signed.id] = signed
            if let holding { local[signed.id] = holding }
            if let index { indexes[signed.id] = index }
        }
        for peer in configuration.bootstrapPeers { knownAddresses.insert(peer) }
        // Resume downloads that a restart interrupted.
        let wanted = try await pool.runIfActive { try store.wantedManifests() }
        for id in wanted where catalog[id] != nil {
            startDownload(id)
        }
        logger.info("catalog loaded", metadata: ["manifests": "\(catalog.count)", "held": "\(local.count)"])
    }

    func setListenPort(_ port: UInt16) {
        listenPort = port
    }

    func beginShutdown() {
        shuttingDown = true
        workQueue.finish()
        for peer in peers.values { peer.close() }
        for (_, record) in downloads {
            for waiter in record.waiters { waiter.resume(throwing: MeshError.shuttingDown) }
        }
        downloads.removeAll()
    }

    // MARK: Peers

    /// Admits a newly authenticated connection, or says why not.
    func admit(_ peer: PeerConnection) -> WireError? {
        if shuttingDown { return .closedByPeer(code: .shuttingDown, message: "node is shutting down") }
        if let until = bans[peer.nodeID], until > .now {
            return .closedByPeer(code: .banned, message: "banned")
        }
        if peers[peer.nodeID] != nil { return .closedByPeer(code: .alreadyConnected, message: "already connected") }
        if let refusal = makeRoom(for: peer) { return refusal }
        peers[peer.nodeID] = peer
        if let address = peer.listenAddress { learnAddress(HostPort(host: address.host, port: Int(address.port))) }
        logger.info(
            "peer connected",
            metadata: [
                "peer": "\(peer)", "direction": "\(peer.role)", "agent": "\(escapedPeerText(peer.identity.agent))",
            ])
        // Anti-entropy: compare catalogs, tell what we hold, ask for more peers.
        peer.send(.catalogDigest(count: catalog.count, digest: catalogDigest()))
        for (id, holding) in local { peer.send(Self.availability(of: id, holding)) }
        // Who else holds what: a peer that joins after a notice went round learns it, in batches (`flushHaves`)
        // so that a large catalog does not flood its queue.
        if !holderNotices.isEmpty { holderReplay[peer.nodeID] = Array(holderNotices.keys) }
        if configuration.peerExchange { peer.requestPeers() }
        holdingsVersion.bump()
        return nil
    }

    /// Finds a slot for a newly authenticated peer, or says why there is none. Connections we opened and our
    /// bootstrap peers may use every slot; other inbound peers only `maxInboundPeers`, so that a flood of them
    /// cannot cut the node off from its seeds. When the peer's class is full, the least useful inbound peer makes
    /// room, but only one that has done nothing for us: no chunks either way, no snapshot of our catalog held.
    private func makeRoom(for peer: PeerConnection) -> WireError? {
        let privileged = peer.role == .initiator || isBootstrap(peer)
        let inbound = peers.values.filter { $0.role == .responder && !isBootstrap($0) }
        let full =
            peers.count >= configuration.maxPeers || (!privileged && inbound.count >= configuration.maxInboundPeers)
        guard full else { return nil }
        let holders = Set(holdings.values.flatMap(\.keys))
        let useless = inbound.filter { candidate in
            let stats = candidate.statistics
            return stats.uploaded == 0 && stats.downloaded == 0 && !holders.contains(candidate.nodeID)
        }
        // From the source address with the most such peers, the youngest: an address flooding us loses its own.
        var bySource: [String: Int] = [:]
        for candidate in useless { bySource[candidate.remoteHost, default: 0] += 1 }
        guard let victim = useless.max(by: { lhs, rhs in
            (bySource[lhs.remoteHost] ?? 0, lhs.connectedAt) < (bySource[rhs.remoteHost] ?? 0, rhs.connectedAt)
        }) else {
            return .closedByPeer(code: .tooManyPeers, message: "too many peers")
        }
        gate.noteEvictedPeer()
        logger.info("evicting an idle inbound peer to make room", metadata: ["evicted": "\(victim)", "for": "\(peer)"])
        victim.closeAfterSending(.error(code: .tooManyPeers, message: "too many peers: making room for another"))
        remove(victim)
        return nil
    }

    /// True when the peer is one of our bootstrap peers that dialled us (same address and listening port).
    private func isBootstrap(_ peer: PeerConnection) -> Bool {
        guard let address = peer.listenAddress else { return false }
        return configuration.bootstrapPeers.contains(HostPort(host: address.host, port: Int(address.port)))
    }

    func remove(_ peer: PeerConnection) {
        guard peers[peer.nodeID] === peer else { return }
        peers[peer.nodeID] = nil
        let stats = peer.statistics
        closedUploaded += stats.uploaded
        closedDownloaded += stats.downloaded
        for id in Array(holdings.keys) {
            holdings[id]?[peer.nodeID] = nil
            if holdings[id]?.isEmpty == true { holdings[id] = nil }
        }
        partialUsage[peer.nodeID] = nil
        holderReplay[peer.nodeID] = nil
        holdingsVersion.bump()
        logger.info("peer disconnected", metadata: ["peer": "\(peer)"])
    }

    /// Disconnects and bans a peer that lied (a corrupt chunk, a forged announcement, garbage). The Error frame
    /// carries `code` (5, banned, unless the offence has a code of its own) and says for how long.
    func ban(_ peer: PeerConnection, reason: String, code: RefusalCode = .banned) {
        let now = ContinuousClock.now
        Self.insertBounded(&bans, key: peer.nodeID, value: now + configuration.banDuration, limit: configuration.maxBanRecords) { $0 > now }
        strikes[peer.nodeID] = nil
        counters.bans += 1
        logger.warning(
            "banning peer",
            metadata: [
                "peer": "\(peer)", "reason": "\(escapedPeerText(reason))",
                "seconds": "\(Int(configuration.banDuration.seconds))",
            ])
        peer.closeAfterSending(.error(code: code, message: "banned for \(Int(configuration.banDuration.seconds)) s: \(reason)"))
        remove(peer)
    }

    /// Counts a protocol offence against the peer's node id; the `maxStrikes`-th bans it. True when banned.
    @discardableResult
    func strike(_ peer: PeerConnection, reason: String) -> Bool {
        let now = ContinuousClock.now
        var record = strikes[peer.nodeID].flatMap { $0.expires > now ? $0 : nil } ?? StrikeRecord(count: 0, expires: now)
        record.count += 1
        record.expires = now + configuration.banDuration
        counters.strikes += 1
        logger.notice(
            "strike against peer",
            metadata: ["peer": "\(peer)", "reason": "\(escapedPeerText(reason))", "strikes": "\(record.count)"])
        if record.count >= configuration.maxStrikes {
            ban(peer, reason: "\(reason) (\(record.count) offences)")
            return true
        }
        Self.insertBounded(&strikes, key: peer.nodeID, value: record, limit: configuration.maxBanRecords) { $0.expires > now }
        return false
    }

    func isBanned(_ nodeID: PublicKey) -> Bool {
        guard let until = bans[nodeID] else { return false }
        if until > .now { return true }
        bans[nodeID] = nil
        return false
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

    /// Forgets expired bans and strikes. Called by the maintenance loop.
    func purgeExpired() {
        let now = ContinuousClock.now
        bans = bans.filter { $0.value > now }
        strikes = strikes.filter { $0.value.expires > now }
        for (id, holders) in holderNotices {
            let live = holders.filter { $0.value.expires > now }
            holderNotices[id] = live.isEmpty ? nil : live
        }
    }

    /// Remembers an address to dial later, up to `maxKnownAddresses` learned ones. False when it is full.
    @discardableResult
    private func learnAddress(_ address: HostPort) -> Bool {
        if knownAddresses.contains(address) { return true }
        guard knownAddresses.count < configuration.maxKnownAddresses + configuration.bootstrapPeers.count else { return false }
        knownAddresses.insert(address)
        return true
    }

    func noteSlowConsumer() {
        counters.slowConsumers += 1
    }

    /// Asks every peer for more peers, when below the peer limit. Called by the maintenance loop.
    func exchangePeers() {
        guard configuration.peerExchange, !shuttingDown, peers.count < configuration.maxPeers else { return }
        for peer in peers.values { peer.requestPeers() }
    }

    /// Addresses worth dialling now: bootstrap peers and learned ones we are not connected to, whose redial
    /// backoff has passed.
    func dialCandidates() -> [HostPort] {
        guard !shuttingDown, peers.count < configuration.maxPeers else { return [] }
        let now = ContinuousClock.now
        let connected = Set(peers.values.compactMap { $0.listenAddress.map { HostPort(host: $0.host, port: Int($0.port)) } })
        let ownAddresses = Set([HostPort(host: "127.0.0.1", port: Int(listenPort)), HostPort(host: "::1", port: Int(listenPort)), HostPort(host: "localhost", port: Int(listenPort))])
        var candidates = Array(knownAddresses.subtracting(connected).subtracting(dialing).subtracting(ownAddresses))
            .filter { redial[$0].map { $0.notBefore <= now } ?? true }
        candidates.shuffle()
        return Array(candidates.prefix(max(0, configuration.maxPeers - peers.count)))
    }

    func requestDial(_ address: HostPort) {
        guard !dialing.contains(address), !shuttingDown else { return }
        if let backoff = redial[address], backoff.notBefore > .now { return }
        dialing.insert(address)
        workQueue.yield(.dial(address))
    }

    /// A dial ended: the connection could not be made or was refused (`admitted` false), or it ran and closed.
    /// Failures back off exponentially (with 20 % jitter) up to `redialMaxDelay`; learned addresses that fail are
    /// forgotten, bootstrap peers stay and are retried.
    func dialFinished(_ address: HostPort, admitted: Bool) {
        dialing.remove(address)
        let now = ContinuousClock.now
        if admitted {
            redial[address] = Backoff(failures: 0, notBefore: now + configuration.redialBaseDelay)
            return
        }
        guard configuration.bootstrapPeers.contains(address) else {
            knownAddresses.remove(address)
            redial[address] = nil
            return
        }
        let failures = min((redial[address]?.failures ?? 0) + 1, 30)
        redial[address] = Backoff(failures: failures, notBefore: now + Self.redialDelay(failures: failures, configuration: configuration))
    }

    /// The wait before the next dial after `failures` failures in a row: base × 2^(failures − 1), at most the
    /// maximum, with ±20 % jitter so that nodes restarted together do not dial in step.
    static func redialDelay(failures: Int, configuration: MeshConfiguration) -> Duration {
        Backoff.delay(failures: failures, base: configuration.redialBaseDelay, maximum: configuration.redialMaxDelay, jitter: 0.8...1.2)
    }

    public var connectedPeers: [PeerConnection] { Array(peers.values) }

    /// A node of our mesh announced itself on the LAN.
    func learnLANPeer(_ id: PublicKey, host: String, port: UInt16) {
        guard id != nodeID, peers[id] == nil, !isBanned(id) else { return }
        let address = HostPort(host: host, port: Int(port))
        guard !knownAddresses.contains(address) else { return requestDial(address) }
        if learnAddress(address) {
            counters.lanDiscovered += 1
            logger.info("found a peer on the LAN", metadata: ["address": "\(address)"])
        }
        requestDial(address)
    }

    // MARK: Gossip

    /// Handles one gossip message from a peer (chunk and body traffic is handled by the connection itself).
    func handle(_ message: WireMessage, from peer: PeerConnection) async {
        switch message {
        case .announce(let signed):
            await receiveAnnouncement(signed, from: peer)
        case .have(let id, let availability):
            // Availability of a manifest that is not in our catalog (another publisher's) is of no use: ignored.
            guard let limit = chunkLimit(id) else { return }
            switch availability {
            case .complete:
                setHolding(.complete, of: id, by: peer)
                if let address = peer.listenAddress { noteHolder(HolderNotice(manifest: id, nodeID: peer.nodeID, host: address.host, port: address.port), from: peer) }
            case .partial(let bitfield):
                guard let bits = Self.validatedBitfield(bitfield.bytes, positions: limit) else {
                    strike(peer, reason: "availability bitfield beyond the manifest's \(limit) chunks")
                    return
                }
                setHolding(bits.count == 0 ? nil : .partial(bits), of: id, by: peer)
            }
        case .haveChunks(let id, let indices):
            guard let limit = chunkLimit(id) else { return }
            if let bad = indices.first(where: { Int($0) >= limit }) {
                strike(peer, reason: "HaveChunks index \(bad) beyond the manifest's \(limit) chunks")
                return
            }
            var bits: Bitset
            switch holdings[id]?[peer.nodeID] {
            case .complete?: return
            case .partial(let existing)?: bits = existing
            case nil: bits = Bitset()
            }
            for index in indices { bits.insert(Int(index)) }
            setHolding(.partial(bits), of: id, by: peer)
        case .holder(let notice):
            noteHolder(notice, from: peer)
        case .catalogDigest(let count, let digest):
            // Each costs a comparison and may cost a whole catalog both ways: a few per peer, then one per 5 s.
            guard peer.catalogBudget.tryTake() else { return noteThrottled("CatalogDigest", from: peer) }
            if count != catalog.count || digest != catalogDigest() { peer.send(.catalogRequest) }
        case .catalogRequest:
            guard peer.catalogBudget.tryTake() else { return noteThrottled("CatalogRequest", from: peer) }
            let ids = catalog.keys.sorted()
            var start = 0
            repeat {
                let page = Array(ids[start..<min(ids.count, start + WireLimits.maxCatalogIDsPerFrame)])
                start += page.count
                peer.send(.catalog(ids: page, more: start < ids.count))
            } while start < ids.count
        case .catalog(let ids, _):
            let unknown = ids.filter { catalog[$0] == nil }
            for start in stride(from: 0, to: unknown.count, by: WireLimits.maxAnnounceRequestIDs) {
                peer.send(.announceRequest(ids: Array(unknown[start..<min(unknown.count, start + WireLimits.maxAnnounceRequestIDs)])))
            }
        case .announceRequest(let ids):
            guard peer.announceIDBudget.tryTake(ids.count) else { return noteThrottled("AnnounceRequest", from: peer) }
            var seen = Set<Digest>()
            for id in ids where seen.insert(id).inserted {
                guard let signed = catalog[id] else { continue }
                peer.send(.announce(signed))
                // Availability sent before the peer knew the manifest was ignored there: say it again now.
                if let holding = local[id] { peer.send(Self.availability(of: id, holding)) }
                for address in liveHolders(id) where address.nodeID != peer.nodeID {
                    peer.send(.holder(HolderNotice(manifest: id, nodeID: address.nodeID, host: address.host, port: address.port)))
                }
            }
        case .getPeers:
            let addresses = peers.values.filter { $0 !== peer }.compactMap(\.listenAddress)
            peer.send(.peers(Array(addresses.shuffled().prefix(WireLimits.maxPeersPerFrame))))
        case .peers(let addresses):
            // Only an answer to our GetPeers is taken: unsolicited lists could fill the address book.
            guard configuration.peerExchange, peer.takePeersAnswer() else { return }
            for address in addresses where address.nodeID != nodeID && !isBanned(address.nodeID) && peers[address.nodeID] == nil {
                learnAddress(HostPort(host: address.host, port: Int(address.port)))
            }
        default:
            break
        }
    }

    func noteThrottledBody(from peer: PeerConnection) {
        noteThrottled("GetBody", from: peer)
    }

    /// A request over the peer's budget is not answered (it may ask again later); counted, logged at debug.
    private func noteThrottled(_ what: String, from peer: PeerConnection) {
        counters.throttled += 1
        logger.debug(
            "request over the peer's budget, not answered", metadata: ["peer": "\(peer)", "request": "\(what)"])
    }

    /// The trust gate for gossip (invariant 1): only announcements that verify are stored and relayed, once.
    private func receiveAnnouncement(_ signed: SignedHeader, from peer: PeerConnection?) async {
        if catalog[signed.id] != nil {
            counters.duplicates += 1
            return
        }
        let trusted: TrustedHeader
        do throws(TrustError) {
            trusted = try configuration.trust.verify(signed)
        } catch {
            counters.rejected += 1
            logger.warning(
                "dropped untrusted announcement",
                metadata: [
                    "manifest": "\(signed.id.short)", "from": "\(peer.map(\.description) ?? "local")",
                    "reason": "\(escapedPeerText("\(error)"))",
                ])
            if let peer {
                // A forged signature is a lie; an unknown key may just be another team's bors, so only strike.
                if case .badSignature = error {
                    ban(peer, reason: "forged announcement")
                } else {
                    strike(peer, reason: "untrusted announcement")
                }
            }
            return
        }
        let store = self.store
        do {
            try await pool.runIfActive { try store.saveHeader(trusted) }
        } catch {
            logger.error("could not store announcement", metadata: ["manifest": "\(signed.id.short)", "error": "\(error)"])
            return
        }
        // Another task may have recorded it while we were storing.
        guard catalog[signed.id] == nil else { return }
        catalog[signed.id] = signed
        counters.accepted += 1
        logger.info(
            "new snapshot",
            metadata: [
                "manifest": "\(signed.id.short)", "repository": "\(escapedPeerText(signed.header.repository))",
                "commit": "\(escapedPeerText(signed.header.commit))",
            ])
        for other in peers.values where other !== peer {
            other.send(.announce(signed))
            counters.relayed += 1
        }
        if configuration.follow.contains(where: { $0.matches(signed.header.repository) }) {
            startDownload(signed.id)
        }
    }

    /// How many chunk positions manifest `id` has: exact with its body, else the header's count of chunk
    /// references (an upper bound, signed by the publisher). Nil when the manifest is not in the catalog.
    private func chunkLimit(_ id: Digest) -> Int? {
        if let index = indexes[id] { return index.count }
        return catalog[id]?.header.chunkReferenceCount
    }

    /// A peer's bitfield over `positions` chunks, without trailing zero bytes; nil when it names a position
    /// beyond them.
    static func validatedBitfield(_ bitfield: [UInt8], positions: Int) -> Bitset? {
        var bytes = bitfield
        while bytes.last == 0 { bytes.removeLast() }
        guard bytes.count <= (positions + 7) / 8 else { return nil }
        if let last = bytes.last, positions % 8 != 0, last >> UInt8(positions % 8) != 0 { return nil }
        return Bitset(bytes: bytes)
    }

    /// Records what a peer holds of a manifest (nil: nothing), within the peer's partial-availability budget.
    /// Partial availability beyond the budget is ignored (the peer then looks as if it held what it said before).
    private func setHolding(_ holding: PeerHoldings?, of id: Digest, by peer: PeerConnection) {
        guard peers[peer.nodeID] === peer else { return }
        var usage = partialUsage[peer.nodeID] ?? (0, 0)
        if case .partial(let old)? = holdings[id]?[peer.nodeID] {
            usage.entries -= 1
            usage.bytes -= old.bytes.count
        }
        if case .partial(let bits)? = holding {
            guard usage.entries < configuration.maxPartialHoldingsPerPeer,
                usage.bytes + bits.bytes.count <= configuration.maxPartialHoldingBytesPerPeer
            else {
                logger.debug("partial availability over the peer's budget, ignored", metadata: ["peer": "\(peer)", "manifest": "\(id.short)"])
                return
            }
            usage.entries += 1
            usage.bytes += bits.bytes.count
        }
        partialUsage[peer.nodeID] = usage
        if let holding {
            if holdings[id]?[peer.nodeID] == nil { noteNewHolder(of: id) }
            holdings[id, default: [:]][peer.nodeID] = holding
        } else {
            holdings[id]?[peer.nodeID] = nil
            if holdings[id]?.isEmpty == true { holdings[id] = nil }
        }
        holdingsVersion.bump()
    }

    /// Records and relays (once) that a node holds a manifest. Only for manifests in our catalog, at most
    /// `maxHoldersPerManifest` live notices each.
    ///
    /// A notice is a hint, never evidence: it may only make us dial an address, whose node then proves its id in
    /// the handshake and its holdings with its own Have. Nothing here strikes, bans or credits anyone, and a notice
    /// is relayed as a Holder notice (the claim it was), never as our own Have. A notice straight from the holder
    /// (its Have complete) is first-hand: it replaces a relayed one for that node, address included, and when the
    /// manifest's notices are full it displaces a relayed one, so relayed notices cannot keep the real holders out.
    private func noteHolder(_ notice: HolderNotice, from peer: PeerConnection?) {
        guard notice.nodeID != nodeID, catalog[notice.manifest] != nil else { return }
        let now = ContinuousClock.now
        let expires = now + configuration.holderNoticeLifetime
        let firstHand = peer?.nodeID == notice.nodeID
        let address = PeerAddress(nodeID: notice.nodeID, host: notice.host, port: notice.port)
        var holders = (holderNotices[notice.manifest] ?? [:]).filter { $0.value.expires > now }
        if let existing = holders[notice.nodeID] {
            guard firstHand else { return }
            holders[notice.nodeID] = HolderRecord(address: address, expires: expires, firstHand: true)
            holderNotices[notice.manifest] = holders
            // Relayed once already, unless what was relayed had another address.
            guard existing.address != address else { return }
        } else {
            if holders.count >= configuration.maxHoldersPerManifest {
                guard firstHand, let relayed = holders.first(where: { !$0.value.firstHand })?.key else { return }
                holders[relayed] = nil
            }
            holders[notice.nodeID] = HolderRecord(address: address, expires: expires, firstHand: firstHand)
            holderNotices[notice.manifest] = holders
        }
        for other in peers.values where other !== peer && other.nodeID != notice.nodeID {
            other.send(.holder(notice))
        }
        // Someone we are not connected to holds what we are downloading: worth a connection.
        noteNewHolder(of: notice.manifest)
        if downloads[notice.manifest] != nil || retries[notice.manifest] != nil, peers[notice.nodeID] == nil, !isBanned(notice.nodeID) {
            let hostPort = HostPort(host: notice.host, port: Int(notice.port))
            if learnAddress(hostPort) { requestDial(hostPort) }
        }
    }

    /// Live holder notices of a manifest.
    func liveHolders(_ id: Digest) -> [PeerAddress] {
        let now = ContinuousClock.now
        return (holderNotices[id] ?? [:]).values.filter { $0.expires > now }.map(\.address)
    }

    /// Sends newly connected peers the next batch of holder notices.
    private func replayHolders() {
        for (peerID, pending) in holderReplay {
            guard let peer = peers[peerID] else {
                holderReplay[peerID] = nil
                continue
            }
            var sent = 0
            var remaining = pending
            while let manifest = remaining.last, sent < Self.holderReplayBatch {
                remaining.removeLast()
                for address in liveHolders(manifest) where address.nodeID != peerID {
                    peer.send(.holder(HolderNotice(manifest: manifest, nodeID: address.nodeID, host: address.host, port: address.port)))
                    sent += 1
                }
            }
            holderReplay[peerID] = remaining.isEmpty ? nil : remaining
        }
    }

    /// Holder notices replayed to one new peer per 100 ms at most.
    static let holderReplayBatch = 256

    /// BLAKE2b-256 over the sorted ids of the catalog: equal digests mean equal catalogs.
    private func catalogDigest() -> Digest {
        if let cached = cachedCatalogDigest, cached.count == catalog.count { return cached.digest }
        let digest = Blake2b.hash(catalog.keys.sorted().flatMap(\.bytes))
        cachedCatalogDigest = (catalog.count, digest)
        return digest
    }

    // MARK: Local snapshots

    /// Announces a manifest that was published into our store by the local CLI.
    public func announceLocal(_ id: Digest) async throws {
        let store = self.store
        let policy = configuration.trust
        // Store reads and writes on the I/O pool, not on the actor.
        let (manifest, index, complete) = try await pool.runIfActive { () throws -> (Manifest, ChunkIndex, Bool) in
            guard let manifest = try store.manifest(id) else { throw MeshError.unknownManifest(id) }
            let trusted = try policy.verify(manifest)
            try store.saveHeader(trusted.header)
            return (manifest, ChunkIndex(manifest: manifest), try store.missingChunks(of: manifest).isEmpty)
        }
        indexes[id] = index
        if complete { local[id] = .complete }
        if catalog[id] == nil {
            catalog[id] = manifest.signed
            for peer in peers.values { peer.send(.announce(manifest.signed)) }
        }
        if case .complete? = local[id] {
            for peer in peers.values { peer.send(.have(manifest: id, availability: .complete)) }
        }
    }

    /// Runs the store's gc (off the actor) and, when it evicted chunks, recomputes what we hold and tells peers:
    /// a snapshot that lost chunks is advertised as partial (or withdrawn), not as complete.
    public func collectGarbage(maxStoredBytes: Int?) async throws -> GarbageReport {
        let store = self.store
        let report = try await pool.runIfActive { try store.collectGarbage(maxStoredBytes: maxStoredBytes, waitForLeases: false) }
        if report.evictedChunks > 0 { await refreshLocalHoldings() }
        return report
    }

    /// Recomputes what we hold of every manifest we hold something of, from the store, and re-advertises those
    /// that changed (a Have with the new bitfield, empty if nothing is left).
    func refreshLocalHoldings() async {
        let store = self.store
        let held = local.compactMap { id, holding in indexes[id].map { (id, $0, holding) } }
        let fresh: [(Digest, LocalHolding?)]
        do {
            fresh = try await pool.runIfActive {
                try held.map { id, index, _ in (id, try Self.holding(of: index, in: store)) }
            }
        } catch {
            logger.error("could not recompute what the store holds", metadata: ["error": "\(error)"])
            return
        }
        for (id, holding) in fresh {
            // A download of it may have stored more meanwhile; it reports its own progress.
            guard downloads[id] == nil else { continue }
            let before = local[id]
            switch (before, holding) {
            case (.complete?, .complete?): continue
            case (.partial(let old)?, .partial(let new)?) where old == new: continue
            default: break
            }
            local[id] = holding
            pendingHaves[id] = nil
            let bitfield: Bitset
            switch holding {
            case .complete?:
                for peer in peers.values { peer.send(.have(manifest: id, availability: .complete)) }
                continue
            case .partial(let bits)?: bitfield = bits
            case nil: bitfield = Bitset()
            }
            logger.info("snapshot no longer complete here", metadata: ["manifest": "\(id.short)", "chunks held": "\(holding.map { if case .partial(let b) = $0 { b.count } else { 0 } } ?? 0)"])
            for peer in peers.values { peer.send(.have(manifest: id, availability: .partial(bitfield))) }
        }
    }

    /// What the store holds of a manifest's chunks.
    static func holding(of index: ChunkIndex, in store: ChunkStore) throws(StoreError) -> LocalHolding? {
        let present = try store.presentChunks(among: index.chunks.map(\.id))
        if present.count == index.count { return .complete }
        var bits = Bitset(capacity: index.count)
        for (position, chunk) in index.chunks.enumerated() where present.contains(chunk.id) { bits.insert(position) }
        return bits.count > 0 ? .partial(bits) : nil
    }

    /// Headers of trusted snapshots this node knows, newest first, optionally for one repository.
    public func knownSnapshots(repository: String? = nil) -> [(signed: SignedHeader, local: Bool, holders: Int)] {
        catalog.values
            .filter { repository == nil || $0.header.repository == repository }
            .sorted { ($0.header.createdAt, $0.id) > ($1.header.createdAt, $1.id) }
            .map { signed in
                let isLocal: Bool
                if case .complete? = local[signed.id] { isLocal = true } else { isLocal = false }
                return (signed, isLocal, holdings[signed.id]?.count ?? 0)
            }
    }

    public func signedHeader(_ id: Digest) -> SignedHeader? { catalog[id] }

    // MARK: Downloads

    /// Fetches a snapshot through the mesh into the store; returns once every chunk is stored and verified.
    /// Concurrent fetches of the same manifest share one download.
    public func fetch(_ id: Digest, progress: (@Sendable (FetchProgress) -> Void)? = nil) async throws -> FetchResult {
        guard !shuttingDown else { throw MeshError.shuttingDown }
        guard catalog[id] != nil else { throw MeshError.unknownManifest(id) }
        if case .complete? = local[id], let index = indexes[id] {
            // The store may have lost chunks since (a gc by another process): check before saying so.
            let store = self.store
            if case .complete? = try await pool.runIfActive({ try Self.holding(of: index, in: store) }) {
                return FetchResult(manifest: id, totalBytes: index.totalBytes, alreadyLocalBytes: index.totalBytes)
            }
            local[id] = nil
            logger.info("snapshot lost chunks since it was complete; fetching again", metadata: ["manifest": "\(id.short)"])
        }
        guard !shuttingDown else { throw MeshError.shuttingDown }
        return try await withCheckedThrowingContinuation { continuation in
            guard startDownload(id) else {
                // Never leave a caller waiting on a download that will not run.
                return continuation.resume(throwing: MeshError.shuttingDown)
            }
            downloads[id]?.waiters.append(continuation)
            if let progress { downloads[id]?.progress.append(progress) }
        }
    }

    /// Starts a download unless one runs already; false when none runs (the node is shutting down).
    @discardableResult
    private func startDownload(_ id: Digest) -> Bool {
        guard !shuttingDown else { return false }
        guard downloads[id] == nil else { return true }
        downloads[id] = DownloadRecord()
        // Holders we heard of but are not connected to are worth a connection now.
        for address in liveHolders(id) where peers[address.nodeID] == nil && !isBanned(address.nodeID) {
            let hostPort = HostPort(host: address.host, port: Int(address.port))
            if learnAddress(hostPort) { requestDial(hostPort) }
        }
        workQueue.yield(.download(id))
        return true
    }

    func reportProgress(_ progress: FetchProgress) {
        for callback in downloads[progress.manifest]?.progress ?? [] { callback(progress) }
    }

    /// A download ended. A failed one stays wanted (in the store) and is retried: after `downloadRetryBaseDelay`,
    /// doubling up to `downloadRetryMaxDelay`, or sooner when a new holder of it appears.
    func finishDownload(_ id: Digest, result: Result<FetchResult, any Error>) {
        guard let record = downloads.removeValue(forKey: id) else { return }
        switch result {
        case .success:
            retries[id] = nil
        case .failure(let error):
            if !shuttingDown, catalog[id] != nil, !(error is CancellationError) {
                let failures = min((retries[id]?.failures ?? 0) + 1, 30)
                let delay = Backoff.delay(
                    failures: failures, base: configuration.downloadRetryBaseDelay, maximum: configuration.downloadRetryMaxDelay)
                retries[id] = Backoff(failures: failures, notBefore: .now + delay)
                logger.info(
                    "will retry the fetch", metadata: ["manifest": "\(id.short)", "attempt": "\(failures)", "in seconds": "\(Int(delay.seconds))"])
            }
        }
        for waiter in record.waiters { waiter.resume(with: result) }
    }

    /// Restarts failed downloads whose retry time has come. Called by the maintenance loop.
    func retryDueDownloads() {
        guard !shuttingDown else { return }
        let now = ContinuousClock.now
        for (id, state) in retries where state.notBefore <= now && downloads[id] == nil {
            guard catalog[id] != nil else {
                retries[id] = nil
                continue
            }
            logger.info("retrying fetch", metadata: ["manifest": "\(id.short)", "attempt": "\(state.failures + 1)"])
            startDownload(id)
        }
    }

    /// Someone new holds (some of) a manifest whose download failed: retry it within a second.
    private func noteNewHolder(of id: Digest) {
        guard let state = retries[id] else { return }
        let soon = ContinuousClock.now + .seconds(1)
        if state.notBefore > soon { retries[id]?.notBefore = soon }
    }

    /// What peers hold of a manifest, for the scheduler. Bumps when anything changes.
    func holdersSnapshot(_ id: Digest) -> (version: Int, holders: [(PeerConnection, PeerHoldings)]) {
        let known = holdings[id] ?? [:]
        let list = known.compactMap { key, value in peers[key].map { ($0, value) } }
        return (availabilityVersion, list)
    }

    func setIndex(_ index: ChunkIndex, for id: Digest) {
        indexes[id] = index
    }

    /// Chunks of a download are stored and verified: others may now fetch them from us.
    func noteChunksStored(_ id: Digest, positions: [Int], total: Int) {
        var bits: Bitset
        switch local[id] {
        case .complete?: return
        case .partial(let existing)?: bits = existing
        case nil: bits = Bitset(capacity: total)
        }
        for position in positions { bits.insert(position) }
        local[id] = .partial(bits)
        pendingHaves[id, default: []].append(contentsOf: positions.map(UInt32.init))
    }

    /// A download starts, with the chunks we already had. Peers learn at once that we are downloading, even
    /// holding nothing yet (an empty HaveChunks), so that the seed split counts us from the first request: when
    /// downloaders only showed up once they held a chunk, each asked the seed for everything meanwhile, and four
    /// of them fetching 8 MB made it upload 1.5-1.7 times the snapshot.
    func noteChunksPresent(_ id: Digest, positions: [Int], total: Int) {
        var bits = Bitset(capacity: total)
        if case .partial(let existing)? = local[id] { bits = existing }
        for position in positions { bits.insert(position) }
        local[id] = .partial(bits)
        let message = Self.availability(of: id, .partial(bits))
        for peer in peers.values { peer.send(message) }
    }

    /// What we say of our holding of `id`: Have for a complete holding or some chunks; an empty HaveChunks for a
    /// download that holds nothing yet (an empty Have bitfield would mean "nothing, not downloading").
    static func availability(of id: Digest, _ holding: LocalHolding) -> WireMessage {
        switch holding {
        case .complete: return .have(manifest: id, availability: .complete)
        case .partial(let bits) where bits.count == 0: return .haveChunks(manifest: id, indices: [])
        case .partial: return .have(manifest: id, availability: holding)
        }
    }

    /// Every chunk is stored: tell every peer (each of them relays a holder notice with our address).
    func markComplete(_ id: Digest) {
        retries[id] = nil
        local[id] = .complete
        pendingHaves[id] = nil
        for peer in peers.values { peer.send(.have(manifest: id, availability: .complete)) }
    }

    /// Sends batched HaveChunks to peers that do not hold the manifest completely.
    func flushHaves() {
        replayHolders()
        guard !pendingHaves.isEmpty else { return }
        let batches = pendingHaves
        pendingHaves.removeAll()
        for (id, indices) in batches {
            for peer in peers.values where holdings[id]?[peer.nodeID] != .complete {
                for start in stride(from: 0, to: indices.count, by: WireLimits.maxHaveIndicesPerFrame) {
                    peer.send(.haveChunks(manifest: id, indices: Array(indices[start..<min(indices.count, start + WireLimits.maxHaveIndicesPerFrame)])))
                }
            }
        }
    }

    // MARK: Status

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
        for (_, byPeer) in holdings {
            sizes.holdingEntries += byPeer.count
            for case .partial(let bits) in byPeer.values { sizes.partialBitfieldBytes += bits.bytes.count }
        }
        sizes.holderNotices = holderNotices.values.reduce(0) { $0 + $1.count }
        sizes.knownAddresses = knownAddresses.count
        sizes.bans = bans.count
        sizes.strikes = strikes.count
        sizes.redial = redial.count
        sizes.downloadRetries = retries.count
        return sizes
    }

    public func status() -> MeshStatus {
        MeshStatus(
            nodeID: nodeID.text, listenPort: Int(listenPort),
            peers: peers.values.map { peer in
                let stats = peer.statistics
                return MeshStatus.Peer(
                    nodeID: peer.nodeID.text, address: "\(peer.remoteHost):\(peer.identity.listenPort)",
                    direction: peer.role == .initiator ? "out" : "in", agent: escapedPeerText(peer.identity.agent),
                    uploaded: stats.uploaded, downloaded: stats.downloaded, requestsInFlight: stats.inFlight,
                    serving: stats.serving, connectedSeconds: (ContinuousClock.now - peer.connectedAt).seconds)
            }.sorted { $0.nodeID < $1.nodeID },
            catalogSize: catalog.count, completeSnapshots: local.values.filter { if case .complete = $0 { true } else { false } }.count,
            downloads: downloads.keys.map(\.hex).sorted(), gossip: counters, bannedPeers: bans.filter { $0.value > .now }.count,
            uploadedBytes: closedUploaded + peers.values.reduce(0) { $0 + $1.statistics.uploaded },
            downloadedBytes: closedDownloaded + peers.values.reduce(0) { $0 + $1.statistics.downloaded },
            meshPrivate: configuration.mesh.isPrivate, encrypted: configuration.mesh.isPrivate,
            transport: configuration.mesh.isPrivate
                ? "private mesh: peers authenticated with the mesh secret, every frame encrypted"
                : "open mesh: peers authenticated but traffic NOT encrypted (anyone on the path can read it); "
                    + "use --mesh-secret for anything that crosses an untrusted network",
            connections: connectionStatus())
    }

    private func connectionStatus() -> MeshStatus.Connections {
        let gate = self.gate.snapshot
        return MeshStatus.Connections(
            openDescriptors: DescriptorLimit.openDescriptors() ?? -1, descriptorLimit: self.gate.descriptorLimit,
            descriptorReserve: configuration.descriptorReserve, sockets: gate.sockets, pendingHandshakes: gate.pending,
            inboundPeers: peers.values.filter { $0.role == .responder }.count, maxPeers: configuration.maxPeers,
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
    /// Protocol offences counted (untrusted announcements, availability beyond a manifest).
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

    public var description: String {
        switch self {
        case .unknownManifest(let id):
            return "no trusted announcement of manifest \(id.short) has reached this node; is a peer that holds it connected?"
        case .shuttingDown: return "the node is shutting down"
        case .stalled(let missing, let seconds):
            return "no peer could supply \(missing) chunks for \(seconds) s; check that a node holding the snapshot is reachable"
        case .noBodySource(let id):
            return "no connected peer could send the manifest body of \(id.short)"
        case .store(let message): return message
        }
    }
}

extension Duration {
    var seconds: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }
}
