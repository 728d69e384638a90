import Foundation
public import KindlingCrypto
public import KindlingManifest
public import KindlingStore
import KindlingWire
public import Logging
public import NIOPosix

/// Work that needs a task of its own: dialling a peer, or running a download.
enum NodeWork: Sendable {
    case dial(HostPort)
    case download(Digest)
}

/// A mesh node: the executor of its gossip (`GossipState`) and peer bookkeeping (`PeerBook`).
///
/// The actor owns the connections, the store and the download waiters; it feeds the state machines what happens
/// (a peer connected, a message arrived, a tick of the clock) and does what they return. Decisions live in the
/// state machines; bytes move outside the actor. Connections deliver gossip messages here in order; downloads and
/// dials run as tasks of `MeshServer`, which consumes `work`.
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
    var gossip: GossipState
    var book: PeerBook
    var trustDocuments: TrustDocumentState
    /// Head records (Specs/freshness.md): the newest per (repository, key).
    var headState: HeadRecordState
    /// The trust gate in force: `configuration.trust` at start, then whatever `applyTrust` was last given.
    public internal(set) var trust: TrustPolicy
    /// Bumped by `applyTrust`: a verification that suspended meanwhile checks again under the new policy.
    var trustGeneration = 0
    /// Why the trust policy in force is not the one configured now (a trust file that failed to reload), for status.
    var trustProblem: String?
    /// Chunks of manifests the trust policy dropped that no kept manifest has: not served (until gc removes them).
    nonisolated let withheldChunks = WithheldChunks()
    /// Cancels each running download's task (a manifest dropped by a trust change, or found equivocal).
    var downloadCancels: [Digest: @Sendable () -> Void] = [:]
    private(set) var peers: [PublicKey: PeerConnection] = [:]
    /// Unique chunks of the manifests whose body we have, for store reads.
    var indexes: [Digest: ChunkIndex] = [:]
    var downloads: [Digest: DownloadRecord] = [:]
    /// Bumped whenever what peers hold changes; readable without a hop onto the actor.
    nonisolated let holdingsVersion = VersionCounter()
    var availabilityVersion: Int { holdingsVersion.value }
    private(set) var slowConsumers = 0
    private(set) var throttledBodies = 0
    /// Bytes moved by connections that have closed (live ones are summed on demand).
    private(set) var closedUploaded = 0
    private(set) var closedDownloaded = 0
    private(set) var shuttingDown = false

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
        gossip = GossipState(configuration: GossipState.Configuration(configuration))
        trustDocuments = TrustDocumentState(configuration.trustRoots)
        headState = HeadRecordState(configuration.headRecords)
        trust = configuration.trust
        book = PeerBook(configuration: PeerBook.Configuration(configuration), seed: UInt64.random(in: 0...UInt64.max))
        (work, workQueue) = AsyncStream.makeStream(of: NodeWork.self)
    }

    // MARK: Startup and shutdown

    func setListenPort(_ port: UInt16) {
        listenPort = port
        book.listening(port: port)
    }

    func beginShutdown() {
        shuttingDown = true
        gossip.shutdown()
        book.shutdown()
        workQueue.finish()
        for peer in peers.values { peer.close() }
        for (_, record) in downloads {
            for waiter in record.waiters { waiter.resume(throwing: MeshError.shuttingDown) }
        }
        downloads.removeAll()
    }

    /// The maintenance tick (every 100 ms, from `MeshServer`): both state machines do what is due.
    func tick() {
        let now = ContinuousClock.now
        applyGossip(gossip.timerFired(now: now))
        perform(book.timerFired(now: now))
        trustTick()
    }

    // MARK: Peers

    /// Admits a newly authenticated connection, or says why not.
    func admit(_ peer: PeerConnection) -> WireError? {
        let now = ContinuousClock.now
        let entry = PeerBook.Peer(
            nodeID: peer.nodeID, outbound: peer.role == .initiator, listenAddress: peer.listenAddress,
            remoteHost: peer.remoteHost, connectedAt: peer.connectedAt)
        let admission = book.peerAuthenticated(entry, now: now) { id in
            guard let candidate = peers[id] else { return false }
            let stats = candidate.statistics
            return stats.uploaded == 0 && stats.downloaded == 0 && !gossip.holdsAnything(id)
        }
        guard case .admitted(let actions) = admission else {
            if case .refused(let code, let message) = admission { return .closedByPeer(code: code, message: message) }
            return nil
        }
        // An evicted peer leaves before the new one comes in; the new one hears our catalog before GetPeers.
        let evictions = actions.filter { if case .disconnect = $0 { true } else { false } }
        perform(evictions, for: peer)
        peers[peer.nodeID] = peer
        logger.info(
            "peer connected",
            metadata: [
                "peer": "\(peer)", "direction": "\(peer.role)", "agent": "\(escapedPeerText(peer.identity.agent))",
            ])
        applyGossip(gossip.peerConnected(peer.nodeID, listenAddress: peer.listenAddress, now: now))
        trustPeerConnected(peer.nodeID)
        headPeerConnected(peer.nodeID)
        perform(actions.filter { if case .disconnect = $0 { false } else { true } }, for: peer)
        return nil
    }

    /// A connection ended (or was closed by us): forget it if it is the registered one.
    func remove(_ peer: PeerConnection) {
        guard peers[peer.nodeID] === peer else { return }
        peers[peer.nodeID] = nil
        perform(book.peerDisconnected(peer.nodeID, now: .now))
        forget(peer)
    }

    /// Disconnects and bans a peer that lied (a corrupt chunk, a forged announcement, garbage). The Error frame
    /// carries `code` (banned, unless the offence has a code of its own) and says for how long.
    func ban(_ peer: PeerConnection, reason: String, code: RefusalCode = .banned) {
        perform(book.ban(peer.nodeID, reason: reason, code: code, now: .now), for: peer)
    }

    /// Counts a protocol offence against the peer's node id; the `maxStrikes`-th bans it.
    func strike(_ peer: PeerConnection, reason: String) {
        perform(book.offence(peer.nodeID, reason: reason, now: .now), for: peer)
    }

    func isBanned(_ nodeID: PublicKey) -> Bool {
        book.isBanned(nodeID, now: .now)
    }

    func noteSlowConsumer() {
        slowConsumers += 1
    }

    func noteThrottledBody(from peer: PeerConnection) {
        throttledBodies += 1
        logger.debug(
            "request over the peer's budget, not answered", metadata: ["peer": "\(peer)", "request": "GetBody"])
    }

    /// A dial ended: the connection could not be made or was refused (`admitted` false), or it ran and closed.
    func dialFinished(_ address: HostPort, admitted: Bool) {
        perform(book.dialFinished(address, admitted: admitted, now: .now))
    }

    public var connectedPeers: [PeerConnection] { Array(peers.values) }

    /// A node of our mesh announced itself on the LAN.
    func learnLANPeer(_ id: PublicKey, host: String, port: UInt16) {
        perform(book.lanPeerSeen(id, at: HostPort(host: host, port: Int(port)), now: .now))
    }

    /// Handles one gossip message from a peer (chunk and body traffic is handled by the connection itself).
    func handle(_ message: WireMessage, from peer: PeerConnection) async {
        switch message {
        case .getPeers: perform(book.peersRequested(by: peer.nodeID))
        case .peers(let addresses): book.peersReceived(addresses, from: peer.nodeID, now: .now)
        case .trustVersion, .getTrust, .trustDocument: await handleTrust(message, from: peer)
        case .headRecord(let bytes): await handleHeadRecord(bytes, from: peer)
        default: await perform(gossip.messageReceived(message, from: peer.nodeID, now: .now), for: peer)
        }
    }

    // MARK: Executing actions

    /// Does what peer bookkeeping decided. `connection` is the connection an action about its node id acts on when
    /// it is no longer (or not yet) the registered one.
    func perform(_ actions: [PeerBook.Action], for connection: PeerConnection? = nil) {
        for action in actions {
            switch action {
            case .send(let message, let id):
                peers[id]?.send(message)
            case .dial(let address):
                workQueue.yield(.dial(address))
            case .disconnect(let id, let code, let message):
                gate.noteEvictedPeer()
                let victim = peers.removeValue(forKey: id)
                logger.info(
                    "evicting an idle inbound peer to make room",
                    metadata: [
                        "evicted": "\(victim.map(\.description) ?? id.text)",
                        "for": "\(connection.map(\.description) ?? "")",
                    ])
                victim?.closeAfterSending(.error(code: code, message: message))
                if let victim { forget(victim) }
            case .ban(let id, let code, let reason, let message):
                let target = connection?.nodeID == id ? connection : peers[id]
                logger.warning(
                    "banning peer",
                    metadata: [
                        "peer": "\(target.map(\.description) ?? id.text)", "reason": "\(escapedPeerText(reason))",
                        "seconds": "\(Int(configuration.banDuration.seconds))",
                    ])
                target?.closeAfterSending(.error(code: code, message: message))
                if let registered = peers[id] {
                    if registered !== target { registered.closeAfterSending(.error(code: code, message: message)) }
                    peers[id] = nil
                    forget(registered)
                }
            case .strike(let id, let reason, let count):
                logger.notice(
                    "strike against peer",
                    metadata: [
                        "peer": "\(peers[id]?.description ?? connection?.description ?? id.text)",
                        "reason": "\(escapedPeerText(reason))", "strikes": "\(count)",
                    ])
            case .discoveredOnLAN(let address):
                logger.info("found a peer on the LAN", metadata: ["address": "\(address)"])
            case .scheduleTimer:
                // MeshServer ticks every 100 ms, the finest interval either state machine uses.
                break
            }
        }
    }

    /// A connection that left: its traffic is counted and gossip forgets it.
    private func forget(_ peer: PeerConnection) {
        let stats = peer.statistics
        closedUploaded += stats.uploaded
        closedDownloaded += stats.downloaded
        applyGossip(gossip.peerDisconnected(peer.nodeID))
        trustPeerDisconnected(peer.nodeID)
        headPeerDisconnected(peer.nodeID)
        logger.info("peer disconnected", metadata: ["peer": "\(peer)"])
    }

    /// Does what gossip decided; announcements to verify are checked (and stored) before the rest goes on.
    func perform(_ actions: [GossipState.Action], for connection: PeerConnection? = nil) async {
        for action in actions {
            if case .verifyAnnouncement(let signed, let from) = action {
                await verify(signed, from: from)
            } else {
                applyGossip([action], for: connection)
            }
        }
    }

    /// Does what gossip decided, but for announcements to verify (which need the store: see `perform`).
    func applyGossip(_ actions: [GossipState.Action], for connection: PeerConnection? = nil) {
        let now = ContinuousClock.now
        for action in actions {
            switch action {
            case .send(let message, let id):
                peers[id]?.send(message)
            case .broadcast(let message, let except):
                for (id, peer) in peers where !except.contains(id) { peer.send(message) }
            case .verifyAnnouncement(let signed, let from):
                // Only `perform` may suspend to verify; nothing that `applyGossip` is given asks for it.
                logger.error(
                    "announcement left unverified",
                    metadata: ["manifest": "\(signed.id.short)", "from": "\(from?.text ?? "local")"])
            case .accepted(let signed):
                logger.info(
                    "new snapshot",
                    metadata: [
                        "manifest": "\(signed.id.short)", "repository": "\(escapedPeerText(signed.header.repository))",
                        "commit": "\(escapedPeerText(signed.header.commit))",
                    ])
            case .strike(let id, let reason):
                perform(book.offence(id, reason: reason, now: now), for: connection)
            case .ban(let id, let reason):
                perform(book.ban(id, reason: reason, now: now), for: connection)
            case .dialHolder(let address):
                perform(book.holderWanted(address, now: now))
            case .startDownload(let id):
                if downloads[id] == nil { downloads[id] = DownloadRecord() }
                workQueue.yield(.download(id))
            case .retryScheduled(let id, let attempt, let delay):
                logger.info(
                    "will retry the fetch",
                    metadata: [
                        "manifest": "\(id.short)", "attempt": "\(attempt)", "in seconds": "\(Int(delay.seconds))",
                    ])
            case .availabilityChanged:
                holdingsVersion.bump()
            case .throttled(let id, let request):
                logger.debug(
                    "request over the peer's budget, not answered",
                    metadata: ["peer": "\(peers[id]?.description ?? id.text)", "request": "\(request)"])
            case .scheduleTimer:
                break
            case .dropped(let id, let reason):
                logger.notice(
                    "snapshot no longer trusted: dropped from the catalog, no longer served or announced",
                    metadata: ["manifest": "\(id.short)", "reason": "\(escapedPeerText(reason))"])
                indexes[id] = nil
                failDownloadWaiters(id, MeshError.refused(id, reason: reason))
            case .cancelDownload(let id):
                downloadCancels.removeValue(forKey: id)?()
                failDownloadWaiters(id, MeshError.cancelledByTrust(id))
            case .equivocation(let equivocation):
                logger.critical(
                    "equivocation: \(escapedPeerText(equivocation.description, limit: 4096))",
                    metadata: [
                        "key": "\(equivocation.build.publisher.text)",
                        "repository": "\(escapedPeerText(equivocation.build.repository))",
                        "commit": "\(escapedPeerText(equivocation.build.commit))",
                        "manifests": "\(equivocation.manifests.map(\.hex).joined(separator: " "))",
                    ])
            case .equivocationSettled(let build, let kept):
                logger.notice(
                    "equivocation settled by the trust policy: the one manifest left is usable again",
                    metadata: [
                        "key": "\(build.publisher.text)", "repository": "\(escapedPeerText(build.repository))",
                        "commit": "\(escapedPeerText(build.commit))", "manifest": "\(kept.hex)",
                    ])
            }
        }
    }
}
