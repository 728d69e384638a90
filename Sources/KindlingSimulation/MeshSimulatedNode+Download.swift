import KindlingCrypto
import KindlingManifest
import KindlingMesh
import KindlingWire

/// One download as `SwarmDownload` runs it, on virtual links: the manifest body from one holder, then the real
/// `ChunkScheduler` deciding which chunk to ask of whom; this side only executes its requests and reports their
/// outcomes (a reply, a refusal, a timeout, a closed connection).
struct SimulatedDownload {
    enum Phase {
        /// Waiting for the manifest body (GetBody) from `from`, or for a holder to ask.
        case body(from: Int?)
        case chunks(ChunkScheduler)
        case done
    }

    struct Request {
        var position: Int
        var source: Int
        var askedAt: VirtualTime
        var chunk: Digest
    }

    let snapshot: Int
    var phase: Phase = .body(from: nil)
    /// What the scheduler was last told each source holds (by node index, which is also its `SourceID`).
    var told: [Int: Availability] = [:]
    var availabilityDirty = true
    /// Positions in our (simulated) store.
    var stored: Bitset
    var timerAt: VirtualTime?

    init(snapshot: Int, chunks: Int) {
        self.snapshot = snapshot
        stored = Bitset(capacity: chunks)
    }
}

/// Scheduler events the driver owes after performing an action list (a `.cancel` is answered with
/// `requestFailed(.cancelled)`), handled after the list so that the scheduler is never re-entered.
enum SchedulerEvent {
    case failed(request: UInt32, PeerRequestError)
}

extension MeshSimulatedNode {
    static let chunkTimerBase = 16

    // MARK: Starting

    mutating func beginDownload(_ id: Digest, now: VirtualTime, into out: inout [SimulatedAction]) {
        guard let snapshot = world.snapshotIndex(id) else {
            handle(gossip.downloadFinished(id, outcome: .failed, now: world.instant(now)), now: now, into: &out)
            return
        }
        if downloads[snapshot] == nil {
            downloads[snapshot] = SimulatedDownload(snapshot: snapshot, chunks: world.snapshots[snapshot].index.count)
        }
        guard var download = downloads[snapshot] else { return }
        // Restarted after a failure or a churn outage: what is stored stays, the rest starts over.
        if case .chunks(let scheduler) = download.phase {
            world.transfer.add(scheduler.statistics)
            download.phase = .body(from: nil)
        }
        if case .done = download.phase { download.phase = .body(from: nil) }
        download.told = [:]
        download.availabilityDirty = true
        downloads[snapshot] = download
        // Peers learn at once that we are downloading (the seed split counts us from the first request).
        let positions = (0..<world.snapshots[snapshot].index.count).filter { download.stored.contains($0) }
        handle(
            gossip.chunksPresent(id, positions: positions, total: world.snapshots[snapshot].index.count),
            now: now, into: &out)
        advance(snapshot, now: now, into: &out)
    }

    /// Moves a download on: ask for the body if nobody is asked, pass on availability when the scheduler wants it.
    mutating func advance(_ snapshot: Int, now: VirtualTime, into out: inout [SimulatedAction]) {
        guard var download = downloads[snapshot] else { return }
        let id = world.snapshots[snapshot].id
        switch download.phase {
        case .body(let from):
            guard from == nil else { return }
            // The first connected holder of the snapshot, in connection order.
            let holders = gossip.holders(of: id)
            guard let holder = peerOrder.first(where: { holders[world.keys[$0]] != nil }) else { return }
            download.phase = .body(from: holder)
            downloads[snapshot] = download
            let length = world.snapshots[snapshot].manifest.bodyBytes.count
            out.append(.send(to: holder, SimulatedMessage(.getBody(manifest: id, offset: 0, length: length))))
        case .chunks(var scheduler):
            guard download.availabilityDirty, scheduler.wantsAvailability(now: .nanoseconds(now)) else { return }
            download.availabilityDirty = false
            let changes = availabilityChanges(of: id, told: &download.told)
            guard !changes.isEmpty else {
                downloads[snapshot] = download
                return
            }
            download.phase = .done
            downloads[snapshot] = download
            let actions = scheduler.availabilityChanged(changes, now: .nanoseconds(now))
            perform(actions, scheduler: scheduler, snapshot: snapshot, now: now, into: &out)
        case .done:
            return
        }
    }

    /// The difference between what connected peers hold (gossip's view) and what the scheduler was told, in
    /// connection order (never in hashing order, which changes between runs).
    func availabilityChanges(of id: Digest, told: inout [Int: Availability]) -> [ChunkScheduler.AvailabilityChange] {
        let holders = gossip.holders(of: id)
        var changes: [ChunkScheduler.AvailabilityChange] = []
        var seen = Set<Int>()
        for peer in peerOrder {
            guard let holding = holders[world.keys[peer]] else { continue }
            seen.insert(peer)
            switch told[peer] {
            case nil:
                let key = ChunkScheduler.ownershipKey(of: world.keys[peer])
                // Office colleagues are the peers LAN discovery finds (MeshNode marks them near the same way).
                let near = world.sameOffice(index, peer)
                changes.append(.added(.init(peer), ownershipKey: key, holding, near: near))
            case let old? where old != holding:
                changes.append(.changed(.init(peer), holding))
            default:
                continue
            }
            told[peer] = holding
        }
        for peer in told.keys.sorted() where !seen.contains(peer) {
            told[peer] = nil
            changes.append(.removed(.init(peer)))
        }
        return changes
    }

    /// The manifest body arrived: the chunk phase starts with what is stored already.
    mutating func bodyArrived(_ id: Digest, from peer: Int, now: VirtualTime, into out: inout [SimulatedAction]) {
        guard let snapshot = world.snapshotIndex(id), var download = downloads[snapshot],
            case .body(let from) = download.phase, from == peer
        else { return }
        let index = world.snapshots[snapshot].index
        gossip.chunkCountKnown(id, count: index.count)
        let missing = (0..<index.count).filter { !download.stored.contains($0) }
        var scheduler = ChunkScheduler(
            chunkCount: index.count, missing: missing, me: ChunkScheduler.ownershipKey(of: world.keys[self.index]),
            seed: random.next(),
            configuration: .init(
                requestTimeout: world.meshConfiguration.requestTimeout,
                stallTimeout: world.meshConfiguration.stallTimeout),
            now: .nanoseconds(now))
        download.told = [:]
        download.availabilityDirty = false
        let changes = availabilityChanges(of: id, told: &download.told)
        download.phase = .done
        downloads[snapshot] = download
        var actions = scheduler.timerFired(now: .nanoseconds(now))
        actions += scheduler.availabilityChanged(changes, now: .nanoseconds(now))
        perform(actions, scheduler: scheduler, snapshot: snapshot, now: now, into: &out)
        if missing.isEmpty { finish(snapshot, now: now, into: &out) }
    }

    // MARK: Executing the scheduler's actions

    /// Performs the scheduler's actions, then the events they owe it, until none is left; leaves the scheduler in
    /// the download (it is taken out while it runs, so that it is not copied on write).
    mutating func perform(
        _ actions: [ChunkScheduler.Action], scheduler: ChunkScheduler, snapshot: Int, now: VirtualTime,
        into out: inout [SimulatedAction]
    ) {
        var scheduler = scheduler
        var pending = actions
        var finished = false
        var failed = false
        while !pending.isEmpty {
            var owed: [SchedulerEvent] = []
            for action in pending {
                switch action {
                case .request(let position, let source, let timeout):
                    let peer = source.rawValue
                    guard outbound[peer] != nil else {
                        owed.append(
                            .failed(
                                request: issueRequest(position, peer: peer, snapshot: snapshot, now: now),
                                .closed))
                        continue
                    }
                    let requestID = issueRequest(position, peer: peer, snapshot: snapshot, now: now)
                    world.transfer.requests += 1
                    let chunk = world.snapshots[snapshot].index.chunks[position].id
                    out.append(.send(to: peer, SimulatedMessage(.getChunk(request: requestID, chunk: chunk))))
                    let timeoutToken = Self.chunkTimerBase + Int(requestID) * 2 + 1
                    out.append(
                        .timer(
                            after: Int64(timeout.components.seconds) * 1_000_000_000
                                + timeout.components.attoseconds / 1_000_000_000, token: timeoutToken))
                case .cancel(let position, let source):
                    guard
                        let (requestID, _) = requests.first(where: {
                            $0.value.position == position && $0.value.source == source.rawValue
                                && requestSnapshot[$0.key] == snapshot
                        })
                    else { continue }
                    out.append(.send(to: source.rawValue, SimulatedMessage(.cancel(request: requestID))))
                    world.transfer.cancels += 1
                    owed.append(.failed(request: requestID, .cancelled))
                case .held(let position):
                    downloads[snapshot]?.stored.insert(position)
                    let id = world.snapshots[snapshot].id
                    let total = world.snapshots[snapshot].index.count
                    handle(
                        gossip.chunksStored(id, positions: [position], total: total, now: world.instant(now)),
                        now: now, into: &out)
                case .fetched:
                    break
                case .ban(let source, let reason):
                    handle(
                        book.ban(world.keys[source.rawValue], reason: reason, now: world.instant(now)),
                        now: now, into: &out)
                case .scheduleTimer(let at):
                    let time = max(
                        now,
                        Int64(at.components.seconds) * 1_000_000_000
                            + at.components.attoseconds / 1_000_000_000)
                    if let current = downloads[snapshot]?.timerAt, current <= time, current >= now { continue }
                    downloads[snapshot]?.timerAt = time
                    out.append(.timer(after: time - now, token: Self.chunkTimerBase + snapshot * 2))
                case .finished:
                    finished = true
                case .failed:
                    failed = true
                }
            }
            pending = []
            for event in owed {
                guard case .failed(let requestID, let error) = event,
                    let request = requests.removeValue(forKey: requestID)
                else { continue }
                requestSnapshot[requestID] = nil
                pending += scheduler.requestFailed(
                    request.position, from: .init(request.source), error,
                    elapsed: .nanoseconds(now - request.askedAt), now: .nanoseconds(now))
            }
        }
        if finished || failed { world.transfer.add(scheduler.statistics) }
        if finished {
            finish(snapshot, now: now, into: &out)
        } else if failed {
            world.transfer.downloadsFailed += 1
            downloads[snapshot]?.phase = .body(from: nil)
            dropRequests(of: snapshot)
            let id = world.snapshots[snapshot].id
            handle(gossip.downloadFinished(id, outcome: .failed, now: world.instant(now)), now: now, into: &out)
        } else {
            downloads[snapshot]?.phase = .chunks(scheduler)
        }
    }

    private mutating func issueRequest(_ position: Int, peer: Int, snapshot: Int, now: VirtualTime) -> UInt32 {
        nextRequest &+= 1
        let chunk = world.snapshots[snapshot].index.chunks[position].id
        requests[nextRequest] = SimulatedDownload.Request(position: position, source: peer, askedAt: now, chunk: chunk)
        requestSnapshot[nextRequest] = snapshot
        return nextRequest
    }

    private mutating func dropRequests(of snapshot: Int) {
        for (requestID, owner) in requestSnapshot where owner == snapshot {
            requests[requestID] = nil
            requestSnapshot[requestID] = nil
        }
    }

    private mutating func finish(_ snapshot: Int, now: VirtualTime, into out: inout [SimulatedAction]) {
        downloads[snapshot]?.phase = .done
        dropRequests(of: snapshot)
        let id = world.snapshots[snapshot].id
        out.append(.completed(snapshot: snapshot))
        handle(gossip.snapshotComplete(id), now: now, into: &out)
        handle(gossip.downloadFinished(id, outcome: .succeeded, now: world.instant(now)), now: now, into: &out)
    }

    // MARK: Events for the scheduler

    /// Runs one scheduler event of a download in its chunk phase.
    mutating func withScheduler(
        _ snapshot: Int, now: VirtualTime, into out: inout [SimulatedAction],
        _ event: (inout ChunkScheduler) -> [ChunkScheduler.Action]
    ) {
        guard var download = downloads[snapshot], case .chunks(var scheduler) = download.phase else { return }
        download.phase = .done
        downloads[snapshot] = download
        let actions = event(&scheduler)
        perform(actions, scheduler: scheduler, snapshot: snapshot, now: now, into: &out)
        advance(snapshot, now: now, into: &out)
    }

    /// A Chunk reply: stored (it is verified by construction: the simulated peers do not lie).
    mutating func chunkReplied(
        _ requestID: UInt32, from peer: Int, bytes: Int, now: VirtualTime, into out: inout [SimulatedAction]
    ) {
        // Into our office from outside it (an office member's reply from bors or another office).
        let crossed = world.offices[index] != nil && !world.sameOffice(index, peer)
        let request = requests.removeValue(forKey: requestID)
        guard let request, let snapshot = requestSnapshot.removeValue(forKey: requestID) else {
            world.transfer.lateReplies += 1
            world.transfer.lateReplyBytes += bytes
            if crossed { world.transfer.officeInboundLateBytes += bytes }
            return
        }
        let new = downloads[snapshot]?.stored.contains(request.position) == false
        if crossed {
            if new {
                world.transfer.officeInboundFirstBytes += bytes
            } else {
                world.transfer.officeInboundDuplicateBytes += bytes
            }
        }
        withScheduler(snapshot, now: now, into: &out) {
            $0.chunkArrived(
                request.position, from: .init(request.source), .stored(new: new),
                latency: .nanoseconds(now - request.askedAt), now: .nanoseconds(now))
        }
    }

    mutating func requestEnded(
        _ requestID: UInt32, _ error: PeerRequestError, now: VirtualTime, into out: inout [SimulatedAction]
    ) {
        guard let request = requests.removeValue(forKey: requestID),
            let snapshot = requestSnapshot.removeValue(forKey: requestID)
        else { return }
        switch error {
        case .timeout:
            // What PeerConnection does on a timeout: tell the server, which drops the reply if not yet queued
            // (here it always is: the uplink queue holds it, so it is sent anyway, as a socket would).
            world.transfer.timeouts += 1
            out.append(.send(to: request.source, SimulatedMessage(.cancel(request: requestID))))
        case .notHeld: world.transfer.notHeld += 1
        case .closed: world.transfer.closed += 1
        case .busy, .cancelled: break
        }
        withScheduler(snapshot, now: now, into: &out) {
            $0.requestFailed(
                request.position, from: .init(request.source), error, elapsed: .nanoseconds(now - request.askedAt),
                now: .nanoseconds(now))
        }
    }

    /// A connection closed: its requests fail as closed, and the next availability pass drops the source.
    mutating func sourceClosed(_ peer: Int, now: VirtualTime, into out: inout [SimulatedAction]) {
        for requestID in requests.filter({ $0.value.source == peer }).keys.sorted() {
            requestEnded(requestID, .closed, now: now, into: &out)
        }
        for snapshot in downloads.keys.sorted() {
            if case .body(let from) = downloads[snapshot]?.phase, from == peer {
                downloads[snapshot]?.phase = .body(from: nil)
            }
            downloads[snapshot]?.availabilityDirty = true
            advance(snapshot, now: now, into: &out)
        }
    }

    mutating func availabilityMayHaveChanged(now: VirtualTime, into out: inout [SimulatedAction]) {
        for snapshot in downloads.keys.sorted() {
            downloads[snapshot]?.availabilityDirty = true
            advance(snapshot, now: now, into: &out)
        }
    }

    mutating func downloadTimer(_ snapshot: Int, now: VirtualTime, into out: inout [SimulatedAction]) {
        guard let due = downloads[snapshot]?.timerAt, due <= now else { return }
        downloads[snapshot]?.timerAt = nil
        withScheduler(snapshot, now: now, into: &out) { $0.timerFired(now: .nanoseconds(now)) }
    }

    // MARK: Serving

    /// What `MeshServer` does with a GetChunk: the chunk if we hold it (its bytes counted, compression 1:1), else
    /// NoChunk. Serving limits are the uplink's queue.
    func serveChunk(_ requestID: UInt32, chunk: Digest, to peer: Int) -> SimulatedAction {
        for snapshot in world.snapshots.indices.reversed() {
            let index = world.snapshots[snapshot].index
            guard let position = index.position(of: chunk) else { continue }
            let held: Bool
            switch gossip.localHolding(world.snapshots[snapshot].id) {
            case .complete?: held = true
            case .partial(let bits)?: held = bits.contains(position)
            case nil: held = role == .bors
            }
            if held {
                let length = index.chunks[position].length
                let reply = WireMessage.chunk(request: requestID, chunk: chunk, plainLength: length, compressed: [])
                return .send(to: peer, SimulatedMessage(reply, extraBytes: length))
            }
            break
        }
        return .send(to: peer, SimulatedMessage(.noChunk(request: requestID, chunk: chunk, reason: .notHeld)))
    }
}
