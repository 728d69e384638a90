import KindlingCrypto
import KindlingManifest
import KindlingMesh
import KindlingWire

/// One simulated node running the real mesh state machines: `GossipState` and `PeerBook` (and, for downloads,
/// the chunk scheduler). This type only translates: the machines' actions become simulator actions (messages on
/// virtual links, dials, timers), and simulator events become the machines' events. It makes no decision of its
/// own beyond what `MeshNode` (the real executor) does: verify announcements, route messages by type.
struct MeshSimulatedNode: SimulatedNode {
    let index: Int
    let role: NodeRole
    let world: SimulationWorld
    var gossip: GossipState
    var book: PeerBook
    /// Connected peers in the order they connected (broadcast order must not depend on hashing), and whether we
    /// dialled each.
    var peerOrder: [Int] = []
    var outbound: [Int: Bool] = [:]
    /// Admission actions of an inbound peer, decided in `accepts`, performed in `connected`.
    private var pendingAdmission: [Int: [PeerBook.Action]] = [:]
    /// The earliest pending timer per machine (stale engine timers are ignored).
    var gossipTimer: VirtualTime?
    var bookTimer: VirtualTime?
    var random: SimulationRandom
    /// Downloads by snapshot number, and chunk requests in flight (by request id) with their snapshot.
    var downloads: [Int: SimulatedDownload] = [:]
    var requests: [UInt32: SimulatedDownload.Request] = [:]
    var requestSnapshot: [UInt32: Int] = [:]
    var nextRequest: UInt32 = 0
    /// Chunk replies queued on our uplink, in all and per peer (MeshServer's serving limits).
    var servingTotal = 0
    var servingPerPeer: [Int: Int] = [:]

    enum TimerToken: Int {
        case gossip = 0
        case book = 1
        case lanBeacons = 2
    }

    init(index: Int, role: NodeRole, world: SimulationWorld, random: SimulationRandom) {
        self.index = index
        self.role = role
        self.world = world
        self.random = random
        (gossip, book) = Self.machines(index: index, role: role, world: world, random: &self.random)
    }

    private static func machines(
        index: Int, role: NodeRole, world: SimulationWorld, random: inout SimulationRandom
    ) -> (GossipState, PeerBook) {
        var mesh = world.meshConfiguration
        if role == .bors {
            mesh.bootstrapPeers = []
            mesh.maxPeers = world.scenario.seedMaxPeers
            mesh.follow = []
        }
        var gossipConfiguration = GossipState.Configuration(mesh)
        gossipConfiguration.localNodeID = world.keys[index]
        var bookConfiguration = PeerBook.Configuration(mesh)
        bookConfiguration.localNodeID = world.keys[index]
        var book = PeerBook(configuration: bookConfiguration, seed: random.next())
        book.listening(port: UInt16(world.addresses[index].port))
        return (GossipState(configuration: gossipConfiguration), book)
    }

    // MARK: SimulatedNode

    mutating func start(now: VirtualTime) -> [SimulatedAction] {
        // The origin is a web server, not a mesh node: it only answers the chunk scheduler's HTTP range requests.
        guard role != .origin else { return [] }
        var out: [SimulatedAction] = []
        if now > 0 {
            // Back from an outage: a restarted process. It keeps its store (what it knew and held), nothing else.
            let known = world.snapshots.compactMap { snapshot -> (SignedHeader, Availability?, Int?)? in
                guard gossip.signedHeader(snapshot.id) != nil else { return nil }
                return (snapshot.manifest.signed, gossip.localHolding(snapshot.id), snapshot.index.count)
            }
            (gossip, book) = Self.machines(index: index, role: role, world: world, random: &random)
            gossip.catalogLoaded(known.map { ($0.0, $0.1, $0.2) })
            peerOrder = []
            outbound = [:]
            pendingAdmission = [:]
            gossipTimer = nil
            bookTimer = nil
            requests = [:]
            requestSnapshot = [:]
            servingTotal = 0
            servingPerPeer = [:]
            for snapshot in downloads.keys {
                downloads[snapshot]?.phase = .body(from: nil)
                downloads[snapshot]?.timerAt = nil
            }
            // Downloads the outage interrupted resume (the store marks them wanted).
            let wanted = known.filter { $0.1?.isComplete != true }.map(\.0.id)
            handle(gossip.resumeDownloads(wanted, now: world.instant(now)), now: now, into: &out)
        }
        handle(book.timerFired(now: world.instant(now)), now: now, into: &out)
        handle(gossip.timerFired(now: world.instant(now)), now: now, into: &out)
        if world.offices[index] != nil, world.scenario.lanDiscovery {
            // The colleagues' multicast beacons (every 30 s each) are heard within one interval.
            out.append(.timer(after: .seconds(random.unit() * 30), token: TimerToken.lanBeacons.rawValue))
        }
        return out
    }

    mutating func accepts(_ peer: Int, now: VirtualTime) -> Bool {
        guard role != .origin else { return false }
        let candidate = PeerBook.Peer(
            nodeID: world.keys[peer], outbound: false, listenAddress: world.peerAddress(peer),
            remoteHost: world.remoteHost(of: peer, seenBy: index), connectedAt: world.instant(now))
        let gossip = self.gossip
        switch book.peerAuthenticated(candidate, now: world.instant(now), idle: { !gossip.holdsAnything($0) }) {
        case .admitted(let actions):
            pendingAdmission[peer] = actions
            return true
        case .refused:
            return false
        }
    }

    mutating func connected(_ peer: Int, outbound isOutbound: Bool, now: VirtualTime) -> [SimulatedAction] {
        var out: [SimulatedAction] = []
        if isOutbound {
            let candidate = PeerBook.Peer(
                nodeID: world.keys[peer], outbound: true, listenAddress: world.peerAddress(peer),
                remoteHost: world.addresses[peer].host, connectedAt: world.instant(now))
            let gossip = self.gossip
            switch book.peerAuthenticated(candidate, now: world.instant(now), idle: { !gossip.holdsAnything($0) }) {
            case .admitted(let actions):
                addPeer(peer, outbound: true)
                handle(actions, now: now, into: &out)
            case .refused:
                handle(
                    book.dialFinished(world.addresses[peer], admitted: false, now: world.instant(now)), now: now,
                    into: &out)
                return out + [.disconnect(peer)]
            }
        } else {
            addPeer(peer, outbound: false)
            handle(pendingAdmission.removeValue(forKey: peer) ?? [], now: now, into: &out)
        }
        handle(
            gossip.peerConnected(world.keys[peer], listenAddress: world.peerAddress(peer), now: world.instant(now)),
            now: now, into: &out)
        return out
    }

    mutating func dialFailed(_ peer: Int, now: VirtualTime) -> [SimulatedAction] {
        var out: [SimulatedAction] = []
        handle(book.dialFinished(world.addresses[peer], admitted: false, now: world.instant(now)), now: now, into: &out)
        return out
    }

    mutating func disconnected(_ peer: Int, now: VirtualTime) -> [SimulatedAction] {
        var out: [SimulatedAction] = []
        dropPeer(peer, now: now, into: &out)
        return out
    }

    mutating func received(_ message: SimulatedMessage, from peer: Int, now: VirtualTime) -> [SimulatedAction] {
        var out: [SimulatedAction] = []
        let id = world.keys[peer]
        switch message.message {
        case .getPeers:
            handle(book.peersRequested(by: id), now: now, into: &out)
        case .peers(let addresses):
            book.peersReceived(addresses, from: id, now: world.instant(now))
        case .getChunk(let request, let chunk):
            let configuration = world.meshConfiguration
            guard servingTotal < configuration.maxServingTotal,
                servingPerPeer[peer, default: 0] < configuration.maxServingPerPeer
            else {
                out.append(.send(to: peer, SimulatedMessage(.noChunk(request: request, chunk: chunk, reason: .busy))))
                world.transfer.busy += 1
                break
            }
            let reply = serveChunk(request, chunk: chunk, to: peer)
            if case .send(_, let message) = reply, message.message.type == .chunk {
                servingTotal += 1
                servingPerPeer[peer, default: 0] += 1
            }
            out.append(reply)
        case .chunk(let request, _, _, _):
            chunkReplied(request, from: peer, bytes: message.wireBytes, now: now, into: &out)
        case .noChunk(let request, _, let reason):
            requestEnded(request, reason == .busy ? .busy : .notHeld, now: now, into: &out)
        case .getBody(let manifest, let offset, let length):
            // MeshServer serves a body it has (ours: every snapshot we know and hold something of).
            let bytes = gossip.localHolding(manifest) != nil || role == .bors ? length : 0
            out.append(
                .send(
                    to: peer,
                    SimulatedMessage(
                        .body(manifest: manifest, offset: offset, bytes: []),
                        extraBytes: bytes)))
        case .body(let manifest, _, _):
            bodyArrived(manifest, from: peer, now: now, into: &out)
        case .cancel, .ping, .pong, .error:
            break
        default:
            handle(gossip.messageReceived(message.message, from: id, now: world.instant(now)), now: now, into: &out)
        }
        return out
    }

    mutating func timerFired(_ token: Int, now: VirtualTime) -> [SimulatedAction] {
        var out: [SimulatedAction] = []
        if token < 0 {
            let peer = -token - 1
            servingTotal = max(0, servingTotal - 1)
            if let count = servingPerPeer[peer] { servingPerPeer[peer] = count > 1 ? count - 1 : nil }
            return out
        }
        switch TimerToken(rawValue: token) {
        case .gossip?:
            guard let due = gossipTimer, due <= now else { return [] }
            gossipTimer = nil
            handle(gossip.timerFired(now: world.instant(now)), now: now, into: &out)
        case .book?:
            guard let due = bookTimer, due <= now else { return [] }
            bookTimer = nil
            handle(book.timerFired(now: world.instant(now)), now: now, into: &out)
        case .lanBeacons?:
            guard let office = world.offices[index] else { return [] }
            for colleague in world.officeMembers[office] where colleague != index {
                handle(
                    book.lanPeerSeen(world.keys[colleague], at: world.addresses[colleague], now: world.instant(now)),
                    now: now, into: &out)
            }
        case nil:
            let chunkToken = token - Self.chunkTimerBase
            guard chunkToken >= 0 else { break }
            if chunkToken % 2 == 1 {
                requestEnded(UInt32(truncatingIfNeeded: chunkToken / 2), .timeout, now: now, into: &out)
            } else {
                downloadTimer(chunkToken / 2, now: now, into: &out)
            }
        }
        return out
    }

    mutating func publish(snapshot number: Int, now: VirtualTime) -> [SimulatedAction] {
        let snapshot = world.makeSnapshot(number, at: now)
        var out: [SimulatedAction] = []
        handle(
            gossip.localSnapshotAdded(snapshot.manifest.signed, chunks: snapshot.index.count, complete: true),
            now: now, into: &out)
        return out
    }

    // MARK: Translation

    private mutating func addPeer(_ peer: Int, outbound isOutbound: Bool) {
        if outbound[peer] == nil { peerOrder.append(peer) }
        outbound[peer] = isOutbound
    }

    /// The connection to `peer` is gone (closed by either side): both machines forget it; a connection we dialled
    /// ends its dial.
    private mutating func dropPeer(_ peer: Int, now: VirtualTime, into out: inout [SimulatedAction]) {
        guard let wasOutbound = outbound.removeValue(forKey: peer) else { return }
        peerOrder.removeAll { $0 == peer }
        pendingAdmission[peer] = nil
        handle(book.peerDisconnected(world.keys[peer], now: world.instant(now)), now: now, into: &out)
        if wasOutbound {
            handle(
                book.dialFinished(world.addresses[peer], admitted: true, now: world.instant(now)), now: now, into: &out)
        }
        handle(gossip.peerDisconnected(world.keys[peer]), now: now, into: &out)
        sourceClosed(peer, now: now, into: &out)
    }

    private mutating func schedule(
        _ instant: ContinuousClock.Instant, token: TimerToken, now: VirtualTime,
        into out: inout [SimulatedAction]
    ) {
        let at = max(now, world.virtualTime(instant))
        switch token {
        case .gossip:
            if let current = gossipTimer, current <= at { return }
            gossipTimer = at
        case .book:
            if let current = bookTimer, current <= at { return }
            bookTimer = at
        case .lanBeacons:
            break
        }
        out.append(.timer(after: at - now, token: token.rawValue))
    }

    mutating func handle(_ actions: [GossipState.Action], now: VirtualTime, into out: inout [SimulatedAction]) {
        for action in actions {
            switch action {
            case .send(let message, let to):
                guard let peer = world.indexByKey[to] else { continue }
                out.append(.send(to: peer, SimulatedMessage(message)))
            case .broadcast(let message, let except):
                let encoded = SimulatedMessage(message)
                for peer in peerOrder where !except.contains(world.keys[peer]) {
                    out.append(.send(to: peer, encoded))
                }
            case .verifyAnnouncement(let signed, let from):
                // What MeshNode does: the trust gate, then the verdict back into gossip.
                do throws(TrustError) {
                    _ = try world.trust.verify(signed, now: world.date(now))
                    let verified = gossip.announcementVerified(signed, from: from, now: world.instant(now))
                    handle(verified, now: now, into: &out)
                } catch {
                    let forged = if case .badSignature = error { true } else { false }
                    handle(gossip.announcementRejected(signed, from: from, forged: forged), now: now, into: &out)
                }
            case .accepted(let signed):
                if let snapshot = world.snapshotIndex(signed.id) { out.append(.learned(snapshot: snapshot)) }
            case .strike(let peer, let reason):
                handle(book.offence(peer, reason: reason, now: world.instant(now)), now: now, into: &out)
            case .ban(let peer, let reason):
                handle(book.ban(peer, reason: reason, now: world.instant(now)), now: now, into: &out)
            case .dialHolder(let address):
                handle(book.holderWanted(address, now: world.instant(now)), now: now, into: &out)
            case .startDownload(let id):
                beginDownload(id, now: now, into: &out)
            case .availabilityChanged:
                availabilityMayHaveChanged(now: now, into: &out)
            case .retryScheduled, .throttled, .dropped, .cancelDownload, .equivocation, .equivocationSettled:
                break
            case .scheduleTimer(let at):
                schedule(at, token: .gossip, now: now, into: &out)
            }
        }
    }

    mutating func handle(_ actions: [PeerBook.Action], now: VirtualTime, into out: inout [SimulatedAction]) {
        for action in actions {
            switch action {
            case .send(let message, let to):
                guard let peer = world.indexByKey[to] else { continue }
                out.append(.send(to: peer, SimulatedMessage(message)))
            case .dial(let address):
                guard let peer = world.indexByAddress[address] else {
                    handle(book.dialFinished(address, admitted: false, now: world.instant(now)), now: now, into: &out)
                    continue
                }
                out.append(.dial(peer))
            case .disconnect(let id, _, _), .ban(let id, _, _, _):
                guard let peer = world.indexByKey[id] else { continue }
                out.append(.disconnect(peer))
                dropPeer(peer, now: now, into: &out)
            case .strike, .discoveredOnLAN:
                break
            case .scheduleTimer(let at):
                schedule(at, token: .book, now: now, into: &out)
            }
        }
    }
}
