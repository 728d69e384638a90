import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingStore
import KindlingWire
import Logging
import NIOPosix

/// Fetches one snapshot from many peers at once (Specs/wire.md, "Swarm transfer").
///
/// - a bounded window of requests per peer, grown on success and halved on timeout (AIMD), so fast peers end up
///   serving most chunks and a slow or overloaded one little;
/// - rarest first among the peers' holdings, ties broken by a per-download shuffle so downloaders spread out;
/// - a timed-out, refused or lost request goes back in the queue for someone else: a peer that timed out on a
///   chunk is not asked for it again while another holder has it, and its latency estimate takes the timeout, so
///   it sorts behind the peers that answer;
/// - endgame: once every missing chunk is requested, the last ones are also asked of a second peer;
/// - every chunk is verified before it is stored (a peer that sends bad bytes is banned, the download goes on);
/// - progress is committed to the store often, so a killed node resumes where it stopped.
struct SwarmDownload {
    let id: Digest
    let node: MeshNode

    private var configuration: MeshConfiguration { node.configuration }
    private var store: ChunkStore { node.store }

    enum Outcome: Sendable {
        case stored(PeerConnection, position: Int, wireBytes: Int, plainBytes: Int, new: Bool, latency: Duration)
        case failed(PeerConnection, position: Int, PeerRequestError, after: Duration)
        case corrupt(PeerConnection, position: Int, reason: String)
        case storeFailed(StoreError)
        /// A background commit of what was stored so far finished (nil) or failed.
        case committed(StoreError?)
    }

    /// Requests in flight per peer at most: below the 64 a server serves per peer, so a busy reply means the
    /// server is loaded overall, not that we asked too much.
    static let maxWindow = 48

    struct PeerState {
        var window = 4
        var inFlight = 0
        var lacks = Set<Int>()
        var pausedUntil = ContinuousClock.now
        var latency: Duration = .milliseconds(50)
        /// The fastest reply seen: the peer's latency without our own requests queued in front.
        var fastest: Duration = .seconds(3600)
    }

    func run() async throws -> FetchResult {
        let started = ContinuousClock.now
        guard let signed = await node.signedHeader(id) else { throw MeshError.unknownManifest(id) }
        // Wanted until it completes: a restarted node resumes it, and gc spares its chunks meanwhile.
        let wantedStore = store
        try await node.pool.runIfActive { try wantedStore.setWanted(id, wanted: true) }
        let manifest = try await obtainManifest(signed)
        let index = ChunkIndex(manifest: manifest)
        await node.setIndex(index, for: id)
        let store = self.store
        let ids = index.chunks.map(\.id)
        let present = try await node.pool.runIfActive { try store.presentChunks(among: ids) }
        var remaining = Set<Int>()
        var presentPositions: [Int] = []
        for (position, chunk) in index.chunks.enumerated() {
            if present.contains(chunk.id) { presentPositions.append(position) } else { remaining.insert(position) }
        }
        await node.noteChunksPresent(id, positions: presentPositions, total: index.count)
        var result = FetchResult(
            manifest: id, totalBytes: index.totalBytes,
            alreadyLocalBytes: presentPositions.reduce(0) { $0 + index.chunks[$1].length })
        if !remaining.isEmpty {
            try await transfer(index: index, remaining: &remaining, result: &result)
        }
        try await node.pool.runIfActive { try store.commit() }
        await node.markComplete(id)
        result.seconds = (ContinuousClock.now - started).seconds
        node.logger.info(
            "fetched snapshot",
            metadata: ["manifest": "\(id.short)", "bytes": "\(result.fetchedBytes)", "seconds": "\(result.seconds)"])
        return result
    }

    // MARK: The manifest body

    /// The complete manifest: from the store, or its body from a peer, checked against the signed digest.
    private func obtainManifest(_ signed: SignedHeader) async throws -> Manifest {
        let store = self.store
        if let manifest = try await node.pool.runIfActive({ try store.manifest(signed.id) }) { return manifest }
        let deadline = ContinuousClock.now + configuration.stallTimeout
        var tried = Set<PublicKey>()
        while ContinuousClock.now < deadline {
            try Task.checkCancellation()
            let (_, holders) = await node.holdersSnapshot(id)
            guard let (peer, _) = holders.first(where: { !tried.contains($0.0.nodeID) }) else {
                if !tried.isEmpty && holders.allSatisfy({ tried.contains($0.0.nodeID) }) { tried.removeAll() }
                try await Task.sleep(for: .milliseconds(100))
                continue
            }
            tried.insert(peer.nodeID)
            var body: [UInt8] = []
            body.reserveCapacity(signed.header.bodyByteCount)
            do {
                while body.count < signed.header.bodyByteCount {
                    let length = min(WireLimits.maxBodyPieceBytes, signed.header.bodyByteCount - body.count)
                    let piece = try await peer.requestBody(id, offset: body.count, length: length, timeout: configuration.requestTimeout)
                    guard !piece.isEmpty, piece.count <= length else { throw PeerRequestError.notHeld }
                    body += piece
                }
            } catch {
                continue
            }
            do {
                let manifest = try Manifest(signed: signed, bodyBytes: body)
                let trusted = try configuration.trust.verify(manifest)
                try await node.pool.runIfActive { try store.saveManifest(trusted) }
                return manifest
            } catch let error as FormatError {
                await node.ban(peer, reason: "sent a manifest body that does not match its signed header: \(error)")
            }
        }
        throw MeshError.noBodySource(id)
    }

    // MARK: Chunks

    private func transfer(index: ChunkIndex, remaining: inout Set<Int>, result: inout FetchResult) async throws {
        let total = index.count
        let shuffle = (0..<total).shuffled()
        var peers: [PublicKey: PeerState] = [:]
        var banned = Set<PublicKey>()
        var requested: [Int: Set<PublicKey>] = [:]
        var version = -1
        var lastRefresh = ContinuousClock.now - .seconds(1)
        var holders: [(PeerConnection, PeerHoldings)] = []
        var order: [Int] = []
        /// Where `order`'s live part begins: positions before it are stored. Picks scan from here, so the scan
        /// does not grow with the number of chunks already fetched (it did: quadratic in the chunk count).
        var orderStart = 0
        /// How many partial holders (other downloaders) have each position: a seed is not asked for those.
        var partialCounts = [Int](repeating: 0, count: total)
        /// The positions this node fetches from seeds while seeds are scarce; the other downloaders fetch the rest
        /// and pass them on (rendezvous hashing over the downloaders' node ids), so that a seed uploads each chunk
        /// about once however many fetch at the same time. Requests take time to be answered, and without this the
        /// downloaders kept asking a seed for the same chunks before anyone held them: with sixteen downloaders
        /// on 25 MB/s links the seed uploaded the snapshot 2.6 times.
        var owned = [Bool](repeating: true, count: total)
        var ownershipKey: Set<PublicKey> = []
        /// Positions whose first reply found the chunk already written (by a concurrent request, or a download of
        /// another snapshot sharing it).
        var storedByOther = Set<Int>()
        /// Peers that let a request for the position time out.
        var timedOutBy: [Int: Set<PublicKey>] = [:]
        /// Failed requests per position: after two, a seed may serve it after all (its other holders are failing).
        var failures = [UInt8](repeating: 0, count: total)
        var lastProgress = ContinuousClock.now
        var lastReport = ContinuousClock.now
        var lastCommit = ContinuousClock.now
        var uncommitted = 0
        var committing = false
        var storedSinceReport: [Int] = []
        var doneBytes = result.alreadyLocalBytes
        let store = self.store
        let pool = node.pool
        let decompressors = node.decompressors

        let requestTimeout = configuration.requestTimeout
        /// A request's timeout from the peer's latency: 8 × the estimate, within a quarter of and the full
        /// configured timeout.
        func timeoutUsed(_ state: PeerState) -> Duration {
            max(requestTimeout / 4, min(requestTimeout, state.latency * 8))
        }

        let transferStarted = ContinuousClock.now
        try await withThrowingTaskGroup(of: Outcome.self) { group in
            var inFlight = 0
            defer { group.cancelAll() }
            while !remaining.isEmpty {
                try Task.checkCancellation()
                // Refresh who holds what, and the rarest-first order, when the node learned something; at most
                // every 100 ms, since with many downloaders availability changes with nearly every chunk.
                // In the first second, every 10 ms: the other downloaders are still saying they have started, and
                // the seed split is only as good as the list of them.
                let refreshEvery: Duration = ContinuousClock.now - transferStarted < .seconds(1) ? .milliseconds(10) : .milliseconds(100)
                if node.holdingsVersion.value != version && (ContinuousClock.now - lastRefresh > refreshEvery || holders.isEmpty) {
                    lastRefresh = .now
                    let snapshot = await node.holdersSnapshot(id)
                    version = snapshot.version
                    holders = snapshot.holders.filter { !$0.0.isClosed }
                    var counts = [Int](repeating: 0, count: total)
                    partialCounts = [Int](repeating: 0, count: total)
                    for (_, holding) in holders {
                        switch holding {
                        case .complete:
                            for position in 0..<total { counts[position] += 1 }
                        case .partial(let bits):
                            for position in 0..<total where bits.contains(position) {
                                counts[position] += 1
                                partialCounts[position] += 1
                            }
                        }
                    }
                    order = shuffle.filter { remaining.contains($0) }.sorted { counts[$0] < counts[$1] }
                    orderStart = 0
                    let downloaders = Set(holders.compactMap { peer, holding in holding == .complete ? nil : peer.nodeID })
                    let seeds = holders.count - downloaders.count
                    let key = seeds < downloaders.count + 1 ? downloaders : []
                    if key != ownershipKey {
                        ownershipKey = key
                        owned = Self.ownership(total: total, me: node.nodeID, others: key)
                    }
                    for (peer, _) in holders where peers[peer.nodeID] == nil && !banned.contains(peer.nodeID) {
                        peers[peer.nodeID] = PeerState()
                    }
                }
                holders.removeAll { $0.0.isClosed }

                while orderStart < order.count && !remaining.contains(order[orderStart]) { orderStart += 1 }
                // Fill every peer's window, fastest peers first.
                let now = ContinuousClock.now
                // Endgame: every missing chunk has been asked for at least once.
                let endgame = requested.count >= remaining.count
                // Nothing in flight for a moment: waiting for the other downloaders' chunks would leave the links
                // idle, so any chunk may come from a seed.
                let idle = inFlight == 0 && ContinuousClock.now - lastProgress > .milliseconds(500)
                for (peer, holding) in holders.sorted(by: { (peers[$0.0.nodeID]?.latency ?? .zero) < (peers[$1.0.nodeID]?.latency ?? .zero) }) {
                    guard var state = peers[peer.nodeID], state.pausedUntil <= now, !peer.isClosed else { continue }
                    // Seeds are the scarce upload: ask them only for what no other downloader can give (field
                    // lesson 10: swarms scale flat when the origin serves each piece about once).
                    let isSeed = holding == .complete
                    while state.inFlight < state.window {
                        let pick = order[orderStart...].first { position in
                            guard remaining.contains(position), holding.has(position), !state.lacks.contains(position) else { return false }
                            // Not again of a peer that let it time out while a faster holder that has not is around.
                            if let slow = timedOutBy[position], slow.contains(peer.nodeID),
                                holders.contains(where: { other, holds in
                                    !slow.contains(other.nodeID) && holds.has(position) && !banned.contains(other.nodeID)
                                        && (peers[other.nodeID]?.latency ?? .zero) < state.latency
                                })
                            {
                                return false
                            }
                            if isSeed && failures[position] < 2 && (partialCounts[position] > 0 || (!owned[position] && !idle)) {
                                return false
                            }
                            let askedOf = requested[position] ?? []
                            return endgame ? (askedOf.count < 2 && !askedOf.contains(peer.nodeID)) : askedOf.isEmpty
                        }
                        guard let position = pick else { break }
                        requested[position, default: []].insert(peer.nodeID)
                        state.inFlight += 1
                        inFlight += 1
                        let chunk = index.chunks[position]
                        let timeout = timeoutUsed(state)
                        group.addTask {
                            await Self.request(
                                chunk, position: position, from: peer, timeout: timeout, store: store, pool: pool,
                                decompressors: decompressors)
                        }
                    }
                    peers[peer.nodeID] = state
                }

                if inFlight == 0 {
                    if ContinuousClock.now - lastProgress > configuration.stallTimeout {
                        throw MeshError.stalled(missingChunks: remaining.count, seconds: Int(configuration.stallTimeout.seconds))
                    }
                    try await Task.sleep(for: .milliseconds(50))
                    continue
                }
                guard let outcome = try await group.next() else { continue }
                inFlight -= 1
                switch outcome {
                case .stored(let peer, let position, let wireBytes, let plainBytes, let new, let latency):
                    peers[peer.nodeID]?.inFlight -= 1
                    if var state = peers[peer.nodeID] {
                        // Grow while replies come about as fast as the fastest one, shrink once they queue (delay
                        // based, as TCP Vegas and LEDBAT): a deep queue at a slow seed only makes requests time
                        // out, and the seed then uploads chunks whose requesters have given up on them.
                        state.fastest = min(state.fastest, latency)
                        let queued = latency > max(state.fastest * 3, state.fastest + .milliseconds(100))
                        state.window = queued ? max(2, state.window - 1) : min(Self.maxWindow, state.window + 1)
                        state.latency = (state.latency * 7 + latency) / 8
                        peers[peer.nodeID] = state
                    }
                    result.wireBytesByPeer[peer.nodeID.text, default: 0] += wireBytes
                    let first = remaining.remove(position) != nil
                    // Two requests for one chunk (the endgame) may finish in either order: the one that wrote it
                    // counts it as fetched even when the other, which found it written, came back first.
                    if new && (first || storedByOther.remove(position) != nil) {
                        result.fetchedBytes += plainBytes
                        result.chunksFetched += 1
                    }
                    guard first else { continue }
                    if !new { storedByOther.insert(position) }
                    // Its duplicates (the endgame asks two peers) are withdrawn, so no one uploads it again.
                    if let others = requested[position]?.subtracting([peer.nodeID]), !others.isEmpty {
                        for (other, _) in holders where others.contains(other.nodeID) {
                            other.cancelRequests(forChunk: index.chunks[position].id)
                        }
                    }
                    requested[position] = nil
                    timedOutBy[position] = nil
                    doneBytes += plainBytes
                    uncommitted += 1
                    lastProgress = .now
                    storedSinceReport.append(position)
                case .failed(let peer, _, .cancelled, _):
                    // A duplicate we withdrew (its chunk came from someone else): nothing failed.
                    peers[peer.nodeID]?.inFlight -= 1
                case .failed(let peer, let position, let error, let elapsed):
                    peers[peer.nodeID]?.inFlight -= 1
                    requested[position]?.remove(peer.nodeID)
                    if requested[position]?.isEmpty == true { requested[position] = nil }
                    failures[position] = failures[position] &+ 1
                    result.retries += 1
                    if var state = peers[peer.nodeID] {
                        switch error {
                        case .timeout:
                            state.window = max(1, state.window / 2)
                            // It took at least the timeout: its estimate says so, and this chunk goes elsewhere.
                            state.latency = max(state.latency, elapsed)
                            timedOutBy[position, default: []].insert(peer.nodeID)
                        case .notHeld: state.lacks.insert(position)
                        case .busy:
                            state.window = max(1, state.window - 1)
                            state.pausedUntil = .now + .milliseconds(20)
                        case .closed, .cancelled: break
                        }
                        peers[peer.nodeID] = error == .closed ? nil : state
                    }
                case .corrupt(let peer, let position, let reason):
                    peers[peer.nodeID] = nil
                    requested[position]?.remove(peer.nodeID)
                    if requested[position]?.isEmpty == true { requested[position] = nil }
                    // Its other requests in flight fail too; ban and count it once.
                    if banned.insert(peer.nodeID).inserted {
                        result.peersBanned += 1
                        await node.ban(peer, reason: reason)
                    }
                case .storeFailed(let error):
                    throw error
                case .committed(let error):
                    committing = false
                    if let error { throw error }
                }

                // Commit in the background: a commit waits for the disk, and requests go on meanwhile.
                if !committing && (uncommitted >= 256 || (uncommitted > 0 && ContinuousClock.now - lastCommit > .seconds(1))) {
                    committing = true
                    uncommitted = 0
                    lastCommit = .now
                    inFlight += 1
                    group.addTask {
                        do {
                            try await pool.runIfActive { try store.commit() }
                            return .committed(nil)
                        } catch let error as StoreError {
                            return .committed(error)
                        } catch {
                            return .committed(.database(operation: "committing downloaded chunks", message: "\(error)"))
                        }
                    }
                }
                // Tell the node (and through it our peers) what we hold, in batches rather than per chunk.
                if storedSinceReport.count >= 64 || ContinuousClock.now - lastReport > .milliseconds(50) || remaining.isEmpty {
                    lastReport = .now
                    await node.noteChunksStored(id, positions: storedSinceReport, total: total)
                    storedSinceReport.removeAll(keepingCapacity: true)
                    await node.reportProgress(FetchProgress(manifest: id, totalBytes: result.totalBytes, doneBytes: doneBytes, peers: holders.count))
                }
            }
        }
    }

    /// Which positions `me` fetches from seeds, when it shares a download with `others`: those for which its hash
    /// of (node id, position) is the smallest. Every downloader computes the same split from the same node ids.
    static func ownership(total: Int, me: PublicKey, others: Set<PublicKey>) -> [Bool] {
        guard !others.isEmpty else { return [Bool](repeating: true, count: total) }
        func seed(_ key: PublicKey) -> UInt64 { key.bytes.prefix(8).reduce(0) { $0 << 8 | UInt64($1) } }
        func rank(_ seed: UInt64, _ position: Int) -> UInt64 {
            var z = seed ^ (UInt64(position) &* 0x9E37_79B9_7F4A_7C15)
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        let mine = seed(me)
        let theirs = others.map(seed)
        return (0..<total).map { position in
            let own = rank(mine, position)
            return theirs.allSatisfy { rank($0, position) > own }
        }
    }

    /// One chunk request: ask, then verify and store off the cooperative pool.
    private static func request(
        _ chunk: ChunkReference, position: Int, from peer: PeerConnection, timeout: Duration, store: ChunkStore,
        pool: NIOThreadPool, decompressors: DecompressorPool
    ) async -> Outcome {
        let started = ContinuousClock.now
        let reply: ChunkReply
        do {
            reply = try await peer.requestChunk(chunk.id, timeout: timeout)
        } catch let error as PeerRequestError {
            return .failed(peer, position: position, error, after: ContinuousClock.now - started)
        } catch {
            return .failed(peer, position: position, .closed, after: ContinuousClock.now - started)
        }
        guard reply.plainLength == chunk.length else {
            return .corrupt(peer, position: position, reason: "sent a chunk of the wrong length")
        }
        do {
            // Verified and written on the I/O pool, off Swift's cooperative threads.
            let compressed = reply.compressed
            let new = try await pool.runIfActive {
                try decompressors.with { decompressor in
                    try store.storeCompressedChunk(compressed, id: chunk.id, expectedSize: chunk.length, decompressor: decompressor)
                }
            }
            return .stored(
                peer, position: position, wireBytes: reply.compressed.count, plainBytes: chunk.length, new: new,
                latency: ContinuousClock.now - started)
        } catch let error as StoreError {
            switch error {
            case .corruptChunk, .chunkTooLarge:
                return .corrupt(peer, position: position, reason: "sent a chunk that does not match its id")
            default:
                return .storeFailed(error)
            }
        } catch {
            return .failed(peer, position: position, .closed, after: ContinuousClock.now - started)
        }
    }
}
