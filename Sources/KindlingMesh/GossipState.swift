public import KindlingCrypto
public import KindlingManifest
public import KindlingWire

/// The gossip of a node as a plain value, with no I/O and no clock of its own (Specs/wire.md, "Gossip"): which
/// signed snapshots it knows, what it and each connected peer hold of them, who else holds them (holder notices),
/// what it still has to tell its peers, anti-entropy (catalog exchange), and the retry backoff of failed fetches.
///
/// A driver (`MeshNode` over real sockets, or a simulator on virtual time) calls one method per event, passing the
/// time, and performs the actions returned, in order:
///
/// ```swift
/// var gossip = GossipState(configuration: .init(meshConfiguration))
/// perform(gossip.peerConnected(id, listenAddress: address, now: now))
/// perform(gossip.messageReceived(message, from: id, now: now))   // gossip messages; others are ignored
/// perform(gossip.timerFired(now: now))   // at the last `.scheduleTimer` instant, or more often (MeshNode: 100 ms)
/// ```
///
/// `.verifyAnnouncement` asks the driver to check the signature against the trust policy (and store the header);
/// it answers with `announcementVerified` or `announcementRejected`. `.startDownload` asks it to run a download,
/// which reports `chunksPresent`, `chunksStored`, `snapshotComplete` and finally `downloadFinished`. `.strike`,
/// `.ban` and `.dialHolder` go to the `PeerBook`. Work per event is proportional to what the event touches (a
/// peer's holdings, one manifest's holders), not to the whole catalogue, except where a peer asks for the catalogue.
public struct GossipState: Sendable {
    public typealias Instant = ContinuousClock.Instant

    /// The tunables of `MeshConfiguration` that gossip uses.
    public struct Configuration: Sendable {
        public var localNodeID: PublicKey
        public var follow: [RepositoryGlob]
        public var maxPartialHoldingsPerPeer: Int
        public var maxPartialHoldingBytesPerPeer: Int
        public var maxHoldersPerManifest: Int
        public var holderNoticeLifetime: Duration
        public var downloadRetryBaseDelay: Duration
        public var downloadRetryMaxDelay: Duration
        public var catalogRequestBurst: Int
        public var catalogRequestsPerSecond: Double
        public var announceRequestIDBurst: Int
        public var announceRequestIDsPerSecond: Double

        public init(_ mesh: MeshConfiguration) {
            localNodeID = mesh.nodeKey.publicKey
            follow = mesh.follow
            maxPartialHoldingsPerPeer = mesh.maxPartialHoldingsPerPeer
            maxPartialHoldingBytesPerPeer = mesh.maxPartialHoldingBytesPerPeer
            maxHoldersPerManifest = mesh.maxHoldersPerManifest
            holderNoticeLifetime = mesh.holderNoticeLifetime
            downloadRetryBaseDelay = mesh.downloadRetryBaseDelay
            downloadRetryMaxDelay = mesh.downloadRetryMaxDelay
            catalogRequestBurst = mesh.catalogRequestBurst
            catalogRequestsPerSecond = mesh.catalogRequestsPerSecond
            announceRequestIDBurst = mesh.announceRequestIDBurst
            announceRequestIDsPerSecond = mesh.announceRequestIDsPerSecond
        }
    }

    public enum Action: Sendable, Hashable {
        case send(WireMessage, to: PublicKey)
        /// Send to every connected peer but these.
        case broadcast(WireMessage, except: Set<PublicKey>)
        /// Check a new announcement against the trust policy and store it; answer with `announcementVerified` or
        /// `announcementRejected`. `from` is nil for our own.
        case verifyAnnouncement(SignedHeader, from: PublicKey?)
        /// A trusted snapshot joined the catalog.
        case accepted(SignedHeader)
        /// A protocol offence by the peer (for `PeerBook.offence`).
        case strike(PublicKey, reason: String)
        /// A lie by the peer (for `PeerBook.ban`).
        case ban(PublicKey, reason: String)
        /// A node we are not connected to holds what we are downloading (for `PeerBook.holderWanted`).
        case dialHolder(PeerAddress)
        /// Run a download of the manifest; report `downloadFinished` when it ends.
        case startDownload(Digest)
        /// A failed download will be retried `after` this, its `attempt`-th try.
        case retryScheduled(Digest, attempt: Int, after: Duration)
        /// What peers hold changed (the download's scheduler reads `holders(of:)` again).
        case availabilityChanged
        /// A request over the peer's budget was not answered.
        case throttled(PublicKey, request: String)
        /// Call `timerFired` at this instant (or earlier).
        case scheduleTimer(at: Instant)
        /// The trust policy changed and refuses this manifest: it left the catalog (stop serving its body and the
        /// chunks no other manifest we keep has; chunks on disk stay until gc).
        case dropped(Digest, reason: String)
        /// Stop a running download (its manifest was dropped or is part of an equivocation); it reports
        /// `downloadFinished` with `.cancelled`, or nothing.
        case cancelDownload(Digest)
        /// One key signed different manifests for one build: say so loudly (log, status). None of them is used.
        case equivocation(Equivocation)
        /// A trust change settled an equivocation: the manifest kept is usable again.
        case equivocationSettled(BuildIdentity, kept: Digest)
    }

    public enum DownloadOutcome: Sendable, Hashable {
        case succeeded
        case failed
        /// Cancelled (the node is stopping or the caller went away): not retried.
        case cancelled
    }

    struct HolderRecord: Sendable, Hashable {
        var address: PeerAddress
        var expires: Instant
        /// Heard from the holder itself (its Have complete), not relayed by another peer.
        var firstHand = false
    }

    struct Backoff: Sendable, Hashable {
        var failures: Int
        var notBefore: Instant
    }

    /// A value-type token bucket over the injected clock: a burst, then `rate` a second. Starts full.
    struct Budget: Sendable, Hashable {
        var tokens: Double
        var updated: Instant

        mutating func take(_ count: Int, rate: Double, burst: Int, now: Instant) -> Bool {
            tokens = min(Double(burst), tokens + max(0, (now - updated).seconds) * max(0.001, rate))
            updated = now
            guard tokens >= Double(count) else { return false }
            tokens -= Double(count)
            return true
        }
    }

    struct PeerRecord: Sendable, Hashable {
        var listenAddress: PeerAddress?
        var catalogBudget: Budget
        var announceBudget: Budget
        /// Manifests this peer holds something of (a reverse index of `holdings`).
        var holds: Set<Digest> = []
        var partialEntries = 0
        var partialBytes = 0
        /// Manifests the peer said it holds (some of) before we knew them: asked for again once we do (see
        /// `askAgainForAvailability`), at most `maxUnknownHavesPerPeer`.
        var unknownHaves: Set<Digest> = []
    }

    public let configuration: Configuration
    var peers: [PublicKey: PeerRecord] = [:]
    var catalog: [Digest: SignedHeader] = [:]
    var holdings: [Digest: [PublicKey: Availability]] = [:]
    var local: [Digest: Availability] = [:]
    /// Unique chunks of manifests whose body we have (else the header's count of chunk references bounds them).
    var chunkCounts: [Digest: Int] = [:]
    /// Who holds which manifest, heard from peers: at most `maxHoldersPerManifest` per manifest, each forgotten
    /// after `holderNoticeLifetime`.
    var holderNotices: [Digest: [PublicKey: HolderRecord]] = [:]
    /// Manifests whose holder notices a newly connected peer has yet to be sent (in batches, by `timerFired`).
    var holderReplay: [PublicKey: [Digest]] = [:]
    var pendingHaves: [Digest: [UInt32]] = [:]
    var downloads: Set<Digest> = []
    /// Failed downloads (still wanted) and when to try again; only manifests in the catalog.
    var retries: [Digest: Backoff] = [:]
    var shuttingDown = false
    public internal(set) var counters = GossipCounters()
    /// The catalog's manifests by build (`BuildIdentity`), and the builds with more than one: equivocations.
    var builds: [BuildIdentity: Set<Digest>] = [:]
    var equivocalBuilds: Set<BuildIdentity> = []
    /// Manifests the trust policy refused lately: not asked for again in catalog exchanges until it changes.
    var recentlyRefused: Set<Digest> = []
    /// The catalog only grows between trust changes (which reset this), so its size identifies its digest.
    var cachedCatalogDigest: (count: Int, digest: Digest)?
    var nextRetryCheck: Instant?
    var nextPurge: Instant?

    /// Availability of manifests not (yet) in the catalog remembered per peer: one AnnounceRequest's worth.
    static let maxUnknownHavesPerPeer = WireLimits.maxAnnounceRequestIDs
    /// Refused manifest ids remembered at most (then forgotten all at once: asking again is only a cost).
    static let maxRecentlyRefused = 65_536
    /// Holder notices replayed to one new peer per flush at most.
    static let holderReplayBatch = 256
    /// Pending Haves and holder replays go out this often; failed downloads are looked at once a second and
    /// expired holder notices forgotten every 10 s.
    static let flushInterval = Duration.milliseconds(100)
    static let retryCheckInterval = Duration.seconds(1)
    static let purgeInterval = Duration.seconds(10)

    public init(configuration: Configuration) {
        self.configuration = configuration
    }

    // MARK: Queries

    public func signedHeader(_ id: Digest) -> SignedHeader? { catalog[id] }
    public var catalogCount: Int { catalog.count }
    public func localHolding(_ id: Digest) -> Availability? { local[id] }
    public var heldManifests: [Digest] { Array(local.keys) }
    public var completeCount: Int { local.values.filter(\.isComplete).count }
    public func isDownloading(_ id: Digest) -> Bool { downloads.contains(id) }
    public var runningDownloads: Set<Digest> { downloads }

    /// What connected peers hold of a manifest.
    public func holders(of id: Digest) -> [PublicKey: Availability] { holdings[id] ?? [:] }

    /// True when the peer holds something of a manifest in our catalog (an eviction spares it).
    public func holdsAnything(_ peer: PublicKey) -> Bool { peers[peer]?.holds.isEmpty == false }

    /// Live holder notices of a manifest.
    public func liveHolders(_ id: Digest, now: Instant) -> [PeerAddress] {
        (holderNotices[id] ?? [:]).values.filter { $0.expires > now }.map(\.address)
    }

    /// Headers of trusted snapshots, newest first, optionally of one repository, with whether we hold each
    /// completely and how many connected peers hold some of it. Equivocal ones are evidence, not snapshots to use:
    /// left out.
    public func knownSnapshots(repository: String?) -> [(signed: SignedHeader, local: Bool, holders: Int)] {
        catalog.values
            .filter { repository == nil || $0.header.repository == repository }
            .filter { !isEquivocal($0.id) }
            .sorted { ($0.header.createdAt, $0.id) > ($1.header.createdAt, $1.id) }
            .map { ($0, local[$0.id]?.isComplete ?? false, holdings[$0.id]?.count ?? 0) }
    }

    /// What we say of our holding of `id`: Have for a complete holding or some chunks; an empty HaveChunks for a
    /// download that holds nothing yet (an empty Have bitfield would mean "nothing, not downloading").
    public static func availability(of id: Digest, _ holding: Availability) -> WireMessage {
        switch holding {
        case .complete: return .have(manifest: id, availability: .complete)
        case .partial(let bits) where bits.count == 0: return .haveChunks(manifest: id, indices: [])
        case .partial: return .have(manifest: id, availability: holding)
        }
    }

    // MARK: Peers

    public mutating func peerConnected(_ id: PublicKey, listenAddress: PeerAddress?, now: Instant) -> [Action] {
        peers[id] = PeerRecord(
            listenAddress: listenAddress,
            catalogBudget: Budget(tokens: Double(max(1, configuration.catalogRequestBurst)), updated: now),
            announceBudget: Budget(tokens: Double(max(1, configuration.announceRequestIDBurst)), updated: now))
        // Anti-entropy: compare catalogs, tell what we hold.
        var actions: [Action] = [.send(.catalogDigest(count: catalog.count, digest: catalogDigest()), to: id)]
        for (manifest, holding) in local { actions.append(.send(Self.availability(of: manifest, holding), to: id)) }
        // Who else holds what: a peer that joins after a notice went round learns it, in batches (`timerFired`) so
        // that a large catalog does not flood its queue.
        if !holderNotices.isEmpty {
            holderReplay[id] = Array(holderNotices.keys)
            actions.append(.scheduleTimer(at: now + Self.flushInterval))
        }
        actions.append(.availabilityChanged)
        return actions
    }

    public mutating func peerDisconnected(_ id: PublicKey) -> [Action] {
        guard let record = peers.removeValue(forKey: id) else { return [] }
        for manifest in record.holds {
            holdings[manifest]?[id] = nil
            if holdings[manifest]?.isEmpty == true { holdings[manifest] = nil }
        }
        holderReplay[id] = nil
        return [.availabilityChanged]
    }

    public mutating func shutdown() {
        shuttingDown = true
    }

    // MARK: Messages

    /// One gossip message from a connected peer (chunk, body, peer-exchange and keepalive traffic is not gossip and
    /// is ignored here).
    public mutating func messageReceived(_ message: WireMessage, from peer: PublicKey, now: Instant) -> [Action] {
        guard peers[peer] != nil else { return [] }
        switch message {
        case .announce(let signed):
            if catalog[signed.id] != nil || recentlyRefused.contains(signed.id) {
                counters.duplicates += 1
                return []
            }
            return [.verifyAnnouncement(signed, from: peer)]
        case .have(let id, let availability):
            // Availability of a manifest that is not in our catalog (another publisher's) is of no use: ignored,
            // but remembered in case its announcement is on its way.
            guard let limit = chunkLimit(id) else { return rememberUnknownHave(id, from: peer) }
            switch availability {
            case .complete:
                var actions = setHolding(.complete, of: id, by: peer, now: now)
                if let address = peers[peer]?.listenAddress {
                    let notice = HolderNotice(manifest: id, nodeID: peer, host: address.host, port: address.port)
                    actions += noteHolder(notice, from: peer, now: now)
                }
                return actions
            case .partial(let bitfield):
                guard let bits = Self.validatedBitfield(bitfield.bytes, positions: limit) else {
                    return [.strike(peer, reason: "availability bitfield beyond the manifest's \(limit) chunks")]
                }
                return setHolding(bits.count == 0 ? nil : .partial(bits), of: id, by: peer, now: now)
            }
        case .haveChunks(let id, let indices):
            guard let limit = chunkLimit(id) else { return rememberUnknownHave(id, from: peer) }
            if let bad = indices.first(where: { Int($0) >= limit }) {
                return [.strike(peer, reason: "HaveChunks index \(bad) beyond the manifest's \(limit) chunks")]
            }
            var bits: Bitset
            switch holdings[id]?[peer] {
            case .complete?: return []
            case .partial(let existing)?: bits = existing
            case nil: bits = Bitset()
            }
            for index in indices { bits.insert(Int(index)) }
            return setHolding(.partial(bits), of: id, by: peer, now: now)
        case .holder(let notice):
            return noteHolder(notice, from: peer, now: now)
        case .catalogDigest(let count, let digest):
            // Each costs a comparison and may cost a whole catalog both ways: a few per peer, then one per 5 s.
            guard takeCatalogBudget(peer, now: now) else { return throttled(peer, "CatalogDigest") }
            return count != catalog.count || digest != catalogDigest() ? [.send(.catalogRequest, to: peer)] : []
        case .catalogRequest:
            guard takeCatalogBudget(peer, now: now) else { return throttled(peer, "CatalogRequest") }
            let ids = catalog.keys.sorted()
            var actions: [Action] = []
            var start = 0
            repeat {
                let page = Array(ids[start..<min(ids.count, start + WireLimits.maxCatalogIDsPerFrame)])
                start += page.count
                actions.append(.send(.catalog(ids: page, more: start < ids.count), to: peer))
            } while start < ids.count
            return actions
        case .catalog(let ids, _):
            // Refused ones are not asked for again: a peer that trusts their key lists them in every catalog.
            let unknown = ids.filter { catalog[$0] == nil && !recentlyRefused.contains($0) }
            // The answer to the AnnounceRequest repeats the peer's availability: no need to ask again for it.
            if peers[peer]?.unknownHaves.isEmpty == false {
                for id in unknown { peers[peer]?.unknownHaves.remove(id) }
            }
            return stride(from: 0, to: unknown.count, by: WireLimits.maxAnnounceRequestIDs).map { start in
                let end = min(unknown.count, start + WireLimits.maxAnnounceRequestIDs)
                return .send(.announceRequest(ids: Array(unknown[start..<end])), to: peer)
            }
        case .announceRequest(let ids):
            let (rate, burst) = (configuration.announceRequestIDsPerSecond, configuration.announceRequestIDBurst)
            guard peers[peer]?.announceBudget.take(ids.count, rate: rate, burst: burst, now: now) == true else {
                return throttled(peer, "AnnounceRequest")
            }
            var actions: [Action] = []
            var seen = Set<Digest>()
            for id in ids where seen.insert(id).inserted {
                guard let signed = catalog[id] else { continue }
                actions.append(.send(.announce(signed), to: peer))
                // Availability sent before the peer knew the manifest was ignored there: say it again now.
                if let holding = local[id] { actions.append(.send(Self.availability(of: id, holding), to: peer)) }
                for address in liveHolders(id, now: now) where address.nodeID != peer {
                    actions.append(.send(.holder(Self.notice(id, address)), to: peer))
                }
            }
            return actions
        default:
            return []
        }
    }

    /// The trust gate passed (invariant 1): the snapshot joins the catalog and is relayed once to every other peer;
    /// a followed repository's snapshot is fetched at once.
    public mutating func announcementVerified(_ signed: SignedHeader, from peer: PublicKey?, now: Instant) -> [Action] {
        // Another verification of the same announcement may have finished first.
        guard catalog[signed.id] == nil else { return [] }
        let equivocation = insertIntoCatalog(signed)
        counters.accepted += 1
        let except: Set<PublicKey> = peer.map { [$0] } ?? []
        counters.relayed += peers.count - (peer.map { peers[$0] == nil ? 0 : 1 } ?? 0)
        // An equivocal manifest is relayed too: it is the evidence other nodes need to stop using the build.
        var actions: [Action] = [.accepted(signed), .broadcast(.announce(signed), except: except)]
        actions += askAgainForAvailability(signed.id)
        if let equivocation { return actions + equivocationFound(equivocation) }
        if configuration.follow.contains(where: { $0.matches(signed.header.repository) }) {
            actions += downloadRequested(signed.id, now: now)
        }
        return actions
    }

    /// The announcement did not verify. A forged signature (one that does not verify under the key the header
    /// names) is a lie and bans the sender. A key we do not trust, or no longer trust, is disagreement, not a lie:
    /// the peer may trust it, or not have heard of its revocation yet. Dropped quietly, and not asked for again.
    /// `transient`: refused for a reason that time may cure (created in the future), so not remembered.
    public mutating func announcementRejected(
        _ signed: SignedHeader, from peer: PublicKey?, forged: Bool, transient: Bool = false
    ) -> [Action] {
        counters.rejected += 1
        if !forged && !transient { rememberRefused(signed.id) }
        guard let peer, forged else { return [] }
        return [.ban(peer, reason: "forged announcement")]
    }
}
