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
    }

    public let configuration: Configuration
    private(set) var peers: [PublicKey: PeerRecord] = [:]
    private(set) var catalog: [Digest: SignedHeader] = [:]
    private(set) var holdings: [Digest: [PublicKey: Availability]] = [:]
    private(set) var local: [Digest: Availability] = [:]
    /// Unique chunks of manifests whose body we have (else the header's count of chunk references bounds them).
    private(set) var chunkCounts: [Digest: Int] = [:]
    /// Who holds which manifest, heard from peers: at most `maxHoldersPerManifest` per manifest, each forgotten
    /// after `holderNoticeLifetime`.
    private(set) var holderNotices: [Digest: [PublicKey: HolderRecord]] = [:]
    /// Manifests whose holder notices a newly connected peer has yet to be sent (in batches, by `timerFired`).
    private(set) var holderReplay: [PublicKey: [Digest]] = [:]
    private(set) var pendingHaves: [Digest: [UInt32]] = [:]
    private(set) var downloads: Set<Digest> = []
    /// Failed downloads (still wanted) and when to try again; only manifests in the catalog.
    private(set) var retries: [Digest: Backoff] = [:]
    private(set) var shuttingDown = false
    public private(set) var counters = GossipCounters()
    /// The catalog only grows while the node runs (ids are never removed), so its size identifies its digest.
    private var cachedCatalogDigest: (count: Int, digest: Digest)?
    private var nextRetryCheck: Instant?
    private var nextPurge: Instant?

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
    /// completely and how many connected peers hold some of it.
    public func knownSnapshots(repository: String?) -> [(signed: SignedHeader, local: Bool, holders: Int)] {
        catalog.values
            .filter { repository == nil || $0.header.repository == repository }
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
            if catalog[signed.id] != nil {
                counters.duplicates += 1
                return []
            }
            return [.verifyAnnouncement(signed, from: peer)]
        case .have(let id, let availability):
            // Availability of a manifest that is not in our catalog (another publisher's) is of no use: ignored.
            guard let limit = chunkLimit(id) else { return [] }
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
            guard let limit = chunkLimit(id) else { return [] }
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
            let unknown = ids.filter { catalog[$0] == nil }
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
        catalog[signed.id] = signed
        counters.accepted += 1
        let except: Set<PublicKey> = peer.map { [$0] } ?? []
        counters.relayed += peers.count - (peer.map { peers[$0] == nil ? 0 : 1 } ?? 0)
        var actions: [Action] = [.accepted(signed), .broadcast(.announce(signed), except: except)]
        if configuration.follow.contains(where: { $0.matches(signed.header.repository) }) {
            actions += downloadRequested(signed.id, now: now)
        }
        return actions
    }

    /// The announcement did not verify. A forged signature is a lie; an unknown key may just be another team's bors,
    /// so only a strike.
    public mutating func announcementRejected(_ signed: SignedHeader, from peer: PublicKey?, forged: Bool) -> [Action] {
        counters.rejected += 1
        guard let peer else { return [] }
        return forged ? [.ban(peer, reason: "forged announcement")] : [.strike(peer, reason: "untrusted announcement")]
    }

    // MARK: Local snapshots and downloads

    /// The store's trusted manifests at startup, with what we hold of each and its unique chunk count (nil without
    /// its body).
    public mutating func catalogLoaded(_ entries: [(signed: SignedHeader, holding: Availability?, chunks: Int?)]) {
        for entry in entries {
            catalog[entry.signed.id] = entry.signed
            if let holding = entry.holding { local[entry.signed.id] = holding }
            if let chunks = entry.chunks { chunkCounts[entry.signed.id] = chunks }
        }
    }

    /// Downloads that a restart interrupted (wanted in the store) start again, those still in the catalog.
    public mutating func resumeDownloads(_ wanted: [Digest], now: Instant) -> [Action] {
        wanted.filter { catalog[$0] != nil }.flatMap { downloadRequested($0, now: now) }
    }

    /// A snapshot published into our store by the local CLI (already verified): announced if new, and a Have
    /// complete if we hold all of it.
    public mutating func localSnapshotAdded(_ signed: SignedHeader, chunks: Int, complete: Bool) -> [Action] {
        chunkCounts[signed.id] = chunks
        if complete { local[signed.id] = .complete }
        var actions: [Action] = []
        if catalog[signed.id] == nil {
            catalog[signed.id] = signed
            actions.append(.broadcast(.announce(signed), except: []))
        }
        if local[signed.id]?.isComplete == true {
            actions.append(.broadcast(.have(manifest: signed.id, availability: .complete), except: []))
        }
        return actions
    }

    /// The store lost chunks of a snapshot we held completely (found by a fetch): it is no longer ours to offer.
    public mutating func localHoldingLost(_ id: Digest) {
        local[id] = nil
    }

    /// A download read the manifest body: its unique chunk count is now exact.
    public mutating func chunkCountKnown(_ id: Digest, count: Int) {
        chunkCounts[id] = count
    }

    /// Starts a download unless one runs (or the node is stopping). Holders we heard of but are not connected to
    /// are worth a connection now.
    public mutating func downloadRequested(_ id: Digest, now: Instant) -> [Action] {
        guard !shuttingDown, catalog[id] != nil, downloads.insert(id).inserted else { return [] }
        let wanted = liveHolders(id, now: now).filter { peers[$0.nodeID] == nil }
        return wanted.map { .dialHolder($0) } + [.startDownload(id)]
    }

    /// A download ended. A failed one stays wanted (in the store) and is retried: after `downloadRetryBaseDelay`,
    /// doubling up to `downloadRetryMaxDelay`, or sooner when a new holder of it appears.
    public mutating func downloadFinished(_ id: Digest, outcome: DownloadOutcome, now: Instant) -> [Action] {
        guard downloads.remove(id) != nil else { return [] }
        switch outcome {
        case .succeeded:
            retries[id] = nil
            return []
        case .cancelled:
            return []
        case .failed:
            guard !shuttingDown, catalog[id] != nil else { return [] }
            let failures = min((retries[id]?.failures ?? 0) + 1, 30)
            let delay = PeerBook.backoffDelay(
                failures: failures, base: configuration.downloadRetryBaseDelay,
                maximum: configuration.downloadRetryMaxDelay)
            retries[id] = Backoff(failures: failures, notBefore: now + delay)
            return [.retryScheduled(id, attempt: failures, after: delay), .scheduleTimer(at: now + delay)]
        }
    }

    /// A download starts, with the chunks we already had. Peers learn at once that we are downloading, even holding
    /// nothing yet (an empty HaveChunks), so that the seed split counts us from the first request: when downloaders
    /// only showed up once they held a chunk, each asked the seed for everything meanwhile, and four of them
    /// fetching 8 MB made it upload 1.5-1.7 times the snapshot.
    public mutating func chunksPresent(_ id: Digest, positions: [Int], total: Int) -> [Action] {
        var bits = Bitset(capacity: total)
        if case .partial(let existing)? = local[id] { bits = existing }
        for position in positions { bits.insert(position) }
        local[id] = .partial(bits)
        return [.broadcast(Self.availability(of: id, .partial(bits)), except: [])]
    }

    /// Chunks of a download are stored and verified: others may now fetch them from us (batched HaveChunks).
    public mutating func chunksStored(_ id: Digest, positions: [Int], total: Int, now: Instant) -> [Action] {
        var bits: Bitset
        switch local[id] {
        case .complete?: return []
        case .partial(let existing)?: bits = existing
        case nil: bits = Bitset(capacity: total)
        }
        for position in positions { bits.insert(position) }
        local[id] = .partial(bits)
        pendingHaves[id, default: []].append(contentsOf: positions.map(UInt32.init))
        return [.scheduleTimer(at: now + Self.flushInterval)]
    }

    /// Every chunk is stored: tell every peer (each of them relays a holder notice with our address).
    public mutating func snapshotComplete(_ id: Digest) -> [Action] {
        retries[id] = nil
        local[id] = .complete
        pendingHaves[id] = nil
        return [.broadcast(.have(manifest: id, availability: .complete), except: [])]
    }

    /// What the store holds now of manifests we held something of (after a gc): those that changed are advertised
    /// again (a Have with the new bitfield, empty if nothing is left). Manifests being downloaded report their own.
    public mutating func localHoldingsRefreshed(_ fresh: [(id: Digest, holding: Availability?)]) -> [Action] {
        var actions: [Action] = []
        for (id, holding) in fresh where !downloads.contains(id) {
            switch (local[id], holding) {
            case (.complete?, .complete?): continue
            case (.partial(let old)?, .partial(let new)?) where old == new: continue
            default: break
            }
            local[id] = holding
            pendingHaves[id] = nil
            let availability = holding ?? .partial(Bitset())
            actions.append(.broadcast(.have(manifest: id, availability: availability), except: []))
        }
        return actions
    }

    // MARK: Time

    /// Periodic work: pending HaveChunks and holder replays go out; failed downloads whose time has come are
    /// retried; expired holder notices are forgotten. Ends with the next `.scheduleTimer`.
    public mutating func timerFired(now: Instant) -> [Action] {
        var actions = replayHolders(now: now)
        actions += flushHaves()
        if nextRetryCheck.map({ $0 <= now }) ?? true {
            nextRetryCheck = now + Self.retryCheckInterval
            actions += retryDueDownloads(now: now)
        }
        if let due = nextPurge, due <= now {
            for (id, holders) in holderNotices {
                let live = holders.filter { $0.value.expires > now }
                holderNotices[id] = live.isEmpty ? nil : live
            }
        }
        if nextPurge.map({ $0 <= now }) ?? true { nextPurge = now + Self.purgeInterval }
        var next = nextPurge ?? now + Self.purgeInterval
        if let retry = retries.values.map(\.notBefore).min() { next = min(next, retry) }
        if !holderReplay.isEmpty || !pendingHaves.isEmpty { next = min(next, now + Self.flushInterval) }
        actions.append(.scheduleTimer(at: max(next, now + Self.flushInterval)))
        return actions
    }

    private mutating func retryDueDownloads(now: Instant) -> [Action] {
        guard !shuttingDown else { return [] }
        var actions: [Action] = []
        for (id, state) in retries where state.notBefore <= now && !downloads.contains(id) {
            guard catalog[id] != nil else {
                retries[id] = nil
                continue
            }
            actions += downloadRequested(id, now: now)
        }
        return actions
    }

    /// Sends batched HaveChunks to peers that do not hold the manifest completely.
    private mutating func flushHaves() -> [Action] {
        guard !pendingHaves.isEmpty else { return [] }
        let batches = pendingHaves
        pendingHaves.removeAll()
        var actions: [Action] = []
        let step = WireLimits.maxHaveIndicesPerFrame
        for (id, indices) in batches {
            let frames = stride(from: 0, to: indices.count, by: step).map { start in
                WireMessage.haveChunks(manifest: id, indices: Array(indices[start..<min(indices.count, start + step)]))
            }
            for peer in peers.keys where holdings[id]?[peer] != .complete {
                for frame in frames { actions.append(.send(frame, to: peer)) }
            }
        }
        return actions
    }

    /// Sends newly connected peers the next batch of holder notices.
    private mutating func replayHolders(now: Instant) -> [Action] {
        var actions: [Action] = []
        for (peer, pending) in holderReplay {
            guard peers[peer] != nil else {
                holderReplay[peer] = nil
                continue
            }
            var sent = 0
            var remaining = pending
            while let manifest = remaining.last, sent < Self.holderReplayBatch {
                remaining.removeLast()
                for address in liveHolders(manifest, now: now) where address.nodeID != peer {
                    actions.append(.send(.holder(Self.notice(manifest, address)), to: peer))
                    sent += 1
                }
            }
            holderReplay[peer] = remaining.isEmpty ? nil : remaining
        }
        return actions
    }

    // MARK: Policy

    /// How many chunk positions manifest `id` has: exact with its body, else the header's count of chunk references
    /// (an upper bound, signed by the publisher). Nil when the manifest is not in the catalog.
    func chunkLimit(_ id: Digest) -> Int? {
        if let count = chunkCounts[id] { return count }
        return catalog[id]?.header.chunkReferenceCount
    }

    /// A peer's bitfield over `positions` chunks, without trailing zero bytes; nil when it names a position beyond
    /// them.
    static func validatedBitfield(_ bitfield: [UInt8], positions: Int) -> Bitset? {
        var bytes = bitfield
        while bytes.last == 0 { bytes.removeLast() }
        guard bytes.count <= (positions + 7) / 8 else { return nil }
        if let last = bytes.last, positions % 8 != 0, last >> UInt8(positions % 8) != 0 { return nil }
        return Bitset(bytes: bytes)
    }

    /// Records what a peer holds of a manifest (nil: nothing), within the peer's partial-availability budget.
    /// Partial availability beyond the budget is ignored (the peer then looks as if it held what it said before).
    private mutating func setHolding(_ holding: Availability?, of id: Digest, by peer: PublicKey, now: Instant) -> [Action] {
        guard var record = peers[peer] else { return [] }
        let previous = holdings[id]?[peer]
        if case .partial(let old)? = previous {
            record.partialEntries -= 1
            record.partialBytes -= old.bytes.count
        }
        if case .partial(let bits)? = holding {
            guard record.partialEntries < configuration.maxPartialHoldingsPerPeer,
                record.partialBytes + bits.bytes.count <= configuration.maxPartialHoldingBytesPerPeer
            else { return [] }
            record.partialEntries += 1
            record.partialBytes += bits.bytes.count
        }
        if let holding {
            if previous == nil { noteNewHolder(of: id, now: now) }
            holdings[id, default: [:]][peer] = holding
            record.holds.insert(id)
        } else {
            holdings[id]?[peer] = nil
            if holdings[id]?.isEmpty == true { holdings[id] = nil }
            record.holds.remove(id)
        }
        peers[peer] = record
        return [.availabilityChanged]
    }

    /// Records and relays (once) that a node holds a manifest. Only for manifests in our catalog, at most
    /// `maxHoldersPerManifest` live notices each.
    ///
    /// A notice is a hint, never evidence: it may only make us dial an address, whose node then proves its id in
    /// the handshake and its holdings with its own Have. Nothing here strikes, bans or credits anyone, and a notice
    /// is relayed as a Holder notice (the claim it was), never as our own Have. A notice straight from the holder
    /// (its Have complete) is first-hand: it replaces a relayed one for that node, address included, and when the
    /// manifest's notices are full it displaces a relayed one, so relayed notices cannot keep the real holders out.
    private mutating func noteHolder(_ notice: HolderNotice, from peer: PublicKey?, now: Instant) -> [Action] {
        guard notice.nodeID != configuration.localNodeID, catalog[notice.manifest] != nil else { return [] }
        let expires = now + configuration.holderNoticeLifetime
        let firstHand = peer == notice.nodeID
        let address = PeerAddress(nodeID: notice.nodeID, host: notice.host, port: notice.port)
        var holders = (holderNotices[notice.manifest] ?? [:]).filter { $0.value.expires > now }
        if let existing = holders[notice.nodeID] {
            guard firstHand else { return [] }
            holders[notice.nodeID] = HolderRecord(address: address, expires: expires, firstHand: true)
            holderNotices[notice.manifest] = holders
            // Relayed once already, unless what was relayed had another address.
            guard existing.address != address else { return [] }
        } else {
            if holders.count >= configuration.maxHoldersPerManifest {
                guard firstHand, let relayed = holders.first(where: { !$0.value.firstHand })?.key else { return [] }
                holders[relayed] = nil
            }
            holders[notice.nodeID] = HolderRecord(address: address, expires: expires, firstHand: firstHand)
            holderNotices[notice.manifest] = holders
        }
        var except: Set<PublicKey> = [notice.nodeID]
        if let peer { except.insert(peer) }
        var actions: [Action] = [.broadcast(.holder(notice), except: except)]
        // Someone we are not connected to holds what we are downloading: worth a connection.
        noteNewHolder(of: notice.manifest, now: now)
        if downloads.contains(notice.manifest) || retries[notice.manifest] != nil, peers[notice.nodeID] == nil {
            actions.append(.dialHolder(address))
        }
        return actions
    }

    /// Someone new holds (some of) a manifest whose download failed: retry it within a second.
    private mutating func noteNewHolder(of id: Digest, now: Instant) {
        guard let state = retries[id] else { return }
        let soon = now + .seconds(1)
        if state.notBefore > soon { retries[id]?.notBefore = soon }
    }

    private mutating func takeCatalogBudget(_ peer: PublicKey, now: Instant) -> Bool {
        let (rate, burst) = (configuration.catalogRequestsPerSecond, configuration.catalogRequestBurst)
        return peers[peer]?.catalogBudget.take(1, rate: rate, burst: burst, now: now) == true
    }

    private mutating func throttled(_ peer: PublicKey, _ request: String) -> [Action] {
        counters.throttled += 1
        return [.throttled(peer, request: request)]
    }

    /// BLAKE2b-256 over the sorted ids of the catalog: equal digests mean equal catalogs.
    mutating func catalogDigest() -> Digest {
        if let cached = cachedCatalogDigest, cached.count == catalog.count { return cached.digest }
        let digest = Blake2b.hash(catalog.keys.sorted().flatMap(\.bytes))
        cachedCatalogDigest = (catalog.count, digest)
        return digest
    }

    static func notice(_ manifest: Digest, _ address: PeerAddress) -> HolderNotice {
        HolderNotice(manifest: manifest, nodeID: address.nodeID, host: address.host, port: address.port)
    }
}
