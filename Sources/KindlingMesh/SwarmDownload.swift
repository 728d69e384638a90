import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingStore
import KindlingWire
import Logging
import NIOPosix

/// Fetches one snapshot from many peers at once (Specs/wire.md, "Swarm transfer"): the executor of a
/// `ChunkScheduler`, which decides which chunk to ask of which peer and when. This type owns the sockets, the
/// timers and the store: it feeds the scheduler what happens and does what it says.
///
/// - every chunk is verified before it is stored (a peer that sends bad bytes is banned, the download goes on);
/// - progress is committed to the store often, so a killed node resumes where it stopped.
struct SwarmDownload {
    let id: Digest
    let node: MeshNode

    private var configuration: MeshConfiguration { node.configuration }
    private var store: ChunkStore { node.store }
    typealias SourceID = ChunkScheduler.SourceID

    enum Outcome: Sendable {
        case stored(SourceID, position: Int, wireBytes: Int, new: Bool, latency: Duration)
        case failed(SourceID, position: Int, PeerRequestError, after: Duration)
        case corrupt(SourceID, position: Int, reason: String)
        case storeFailed(StoreError)
        /// A background commit of what was stored so far finished (nil) or failed.
        case committed(StoreError?)
        /// A timer the scheduler asked for, set for this instant, went off.
        case timer(Duration)
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
        var missing: [Int] = []
        var presentPositions: [Int] = []
        for (position, chunk) in index.chunks.enumerated() {
            if present.contains(chunk.id) { presentPositions.append(position) } else { missing.append(position) }
        }
        await node.noteChunksPresent(id, positions: presentPositions, total: index.count)
        var result = FetchResult(
            manifest: id, totalBytes: index.totalBytes,
            alreadyLocalBytes: presentPositions.reduce(0) { $0 + index.chunks[$1].length })
        if !missing.isEmpty {
            try await transfer(index: index, missing: missing, result: &result)
        }
        try await node.pool.runIfActive { try store.commit() }
        await node.markComplete(id)
        result.seconds = (ContinuousClock.now - started).seconds
        node.logger.info(
            "fetched snapshot",
            metadata: [
                "manifest": "\(id.short)", "bytes": "\(result.fetchedBytes)", "seconds": "\(result.seconds)",
                "from peers": "\(result.wireBytesByPeer.count)",
            ])
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
            guard let (peer, _, _) = holders.first(where: { !tried.contains($0.0.nodeID) }) else {
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
                    let piece = try await peer.requestBody(
                        id, offset: body.count, length: length, timeout: configuration.requestTimeout)
                    guard !piece.isEmpty, piece.count <= length else { throw PeerRequestError.notHeld }
                    body += piece
                }
            } catch {
                continue
            }
            do {
                let manifest = try Manifest(signed: signed, bodyBytes: body)
                // The policy in force now: it may have changed since the announcement was accepted.
                let trusted = try await node.trust.verify(manifest)
                try await node.pool.runIfActive { try store.saveManifest(trusted) }
                return manifest
            } catch let error as FormatError {
                await node.ban(peer, reason: "sent a manifest body that does not match its signed header: \(error)")
            }
        }
        throw MeshError.noBodySource(id)
    }

    // MARK: Chunks

    /// Runs the scheduler until every missing chunk is stored: observes the peers and the store, feeds the
    /// scheduler, and performs its actions. It decides nothing about which chunk comes from whom.
    private func transfer(index: ChunkIndex, missing: [Int], result: inout FetchResult) async throws {
        let origin = ContinuousClock.now
        func now() -> Duration { ContinuousClock.now - origin }
        var scheduler = ChunkScheduler(
            chunkCount: index.count, missing: missing, me: ChunkScheduler.ownershipKey(of: node.nodeID),
            seed: UInt64.random(in: .min ... .max),
            configuration: .init(
                requestTimeout: configuration.requestTimeout, stallTimeout: configuration.stallTimeout),
            now: now())
        var links = SourceLinks()
        var progress = StoreProgress(doneBytes: result.alreadyLocalBytes)
        var timerSetFor: Duration?
        let store = self.store
        let pool = node.pool
        let decompressors = node.decompressors

        try await withThrowingTaskGroup(of: Outcome.self) { group in
            defer { group.cancelAll() }
            let first = await node.holdersSnapshot(id)
            var version = first.version
            node.logger.debug(
                "fetching chunks",
                metadata: [
                    "manifest": "\(id.short)", "chunks": "\(missing.count)", "holders": "\(first.holders.count)",
                    "complete": "\(first.holders.filter { $0.1 == .complete }.count)",
                ])
            var actions = scheduler.availabilityChanged(links.changes(to: first.holders), now: now())
            var finished = false
            while true {
                // Do what the scheduler said.
                for action in actions {
                    switch action {
                    case .request(let position, let source, let timeout):
                        let chunk = index.chunks[position]
                        guard let peer = links.peer(source) else {
                            group.addTask { .failed(source, position: position, .closed, after: .zero) }
                            continue
                        }
                        group.addTask {
                            await Self.request(
                                chunk, position: position, from: peer, source: source, timeout: timeout, store: store,
                                pool: pool, decompressors: decompressors)
                        }
                    case .cancel(let position, let source):
                        links.peer(source)?.cancelRequests(forChunk: index.chunks[position].id)
                    case .held(let position):
                        progress.stored(position, bytes: index.chunks[position].length)
                    case .fetched(let position):
                        result.fetchedBytes += index.chunks[position].length
                        result.chunksFetched += 1
                    case .ban(let source, let reason):
                        result.peersBanned += 1
                        if let peer = links.peer(source) { await node.ban(peer, reason: reason) }
                    case .scheduleTimer(let instant):
                        guard timerSetFor.map({ instant < $0 }) ?? true else { continue }
                        timerSetFor = instant
                        group.addTask {
                            try? await Task.sleep(until: origin + instant, clock: .continuous)
                            return .timer(instant)
                        }
                    case .finished:
                        finished = true
                    case .failed(.stalled(let missingChunks, let seconds, _)):
                        throw MeshError.stalled(missingChunks: missingChunks, seconds: seconds)
                    }
                }
                result.retries = scheduler.statistics.retries
                if finished || progress.reportDue {
                    await node.noteChunksStored(id, positions: progress.takeReport(), total: index.count)
                    await node.reportProgress(
                        FetchProgress(
                            manifest: id, totalBytes: result.totalBytes, doneBytes: progress.doneBytes,
                            peers: links.count))
                }
                if finished { return }
                // Commit in the background: a commit waits for the disk, and requests go on meanwhile.
                if progress.commitDue() {
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

                // Wait for what happens next, and tell the scheduler.
                try Task.checkCancellation()
                let outcome = try await group.next()
                switch outcome {
                case .stored(let source, let position, let wireBytes, let new, let latency)?:
                    if let peer = links.nodeID(source) { result.wireBytesByPeer[peer.text, default: 0] += wireBytes }
                    actions = scheduler.chunkArrived(
                        position, from: source, .stored(new: new), latency: latency, now: now())
                case .failed(let source, let position, let error, let elapsed)?:
                    // A lost peer is forgotten by the scheduler: told again if it is still a holder.
                    if error == .closed { links.forget(source) }
                    actions = scheduler.requestFailed(position, from: source, error, elapsed: elapsed, now: now())
                case .corrupt(let source, let position, let reason)?:
                    actions = scheduler.chunkArrived(
                        position, from: source, .bad(reason: reason), latency: .zero, now: now())
                case .storeFailed(let error)?:
                    throw error
                case .committed(let error)?:
                    progress.committing = false
                    if let error { throw error }
                    actions = []
                case .timer(let instant)?:
                    if timerSetFor == instant { timerSetFor = nil }
                    actions = scheduler.timerFired(now: now())
                case nil:
                    actions = scheduler.timerFired(now: now())
                }

                // Who holds what: closed connections at once, the rest when the node learned something and the
                // scheduler wants it.
                var changes = links.closed()
                if node.holdingsVersion.value != version && scheduler.wantsAvailability(now: now()) {
                    let snapshot = await node.holdersSnapshot(id)
                    version = snapshot.version
                    changes += links.changes(to: snapshot.holders)
                }
                if !changes.isEmpty { actions += scheduler.availabilityChanged(changes, now: now()) }
            }
        }
    }

    /// Which positions `me` fetches from seeds when it shares a download with `others` (`ChunkScheduler.ownership`).
    static func ownership(total: Int, me: PublicKey, others: Set<PublicKey>) -> [Bool] {
        ChunkScheduler.ownership(
            total: total, me: ChunkScheduler.ownershipKey(of: me), others: others.map(ChunkScheduler.ownershipKey(of:)))
    }

    /// One chunk request: ask, then verify and store off the cooperative pool.
    private static func request(
        _ chunk: ChunkReference, position: Int, from peer: PeerConnection, source: SourceID, timeout: Duration,
        store: ChunkStore, pool: NIOThreadPool, decompressors: DecompressorPool
    ) async -> Outcome {
        let started = ContinuousClock.now
        let reply: ChunkReply
        do {
            reply = try await peer.requestChunk(chunk.id, timeout: timeout)
        } catch let error as PeerRequestError {
            return .failed(source, position: position, error, after: ContinuousClock.now - started)
        } catch {
            return .failed(source, position: position, .closed, after: ContinuousClock.now - started)
        }
        guard reply.plainLength == chunk.length else {
            return .corrupt(source, position: position, reason: "sent a chunk of the wrong length")
        }
        do {
            // Verified and written on the I/O pool, off Swift's cooperative threads.
            let compressed = reply.compressed
            let new = try await pool.runIfActive {
                try decompressors.with { decompressor in
                    try store.storeCompressedChunk(
                        compressed, id: chunk.id, expectedSize: chunk.length, decompressor: decompressor)
                }
            }
            return .stored(
                source, position: position, wireBytes: reply.compressed.count, new: new,
                latency: ContinuousClock.now - started)
        } catch let error as StoreError {
            switch error {
            case .corruptChunk, .chunkTooLarge:
                return .corrupt(source, position: position, reason: "sent a chunk that does not match its id")
            default:
                return .storeFailed(error)
            }
        } catch {
            return .failed(source, position: position, .closed, after: ContinuousClock.now - started)
        }
    }
}

/// The peers behind the scheduler's source numbers, and what the scheduler was last told they hold.
struct SourceLinks {
    private var ids: [PublicKey: ChunkScheduler.SourceID] = [:]
    private var peers: [ChunkScheduler.SourceID: PeerConnection] = [:]
    private var told: [ChunkScheduler.SourceID: PeerHoldings] = [:]

    /// The sources the scheduler knows as holders.
    var count: Int { told.count }

    func peer(_ source: ChunkScheduler.SourceID) -> PeerConnection? { peers[source] }
    func nodeID(_ source: ChunkScheduler.SourceID) -> PublicKey? { peers[source]?.nodeID }

    /// What changed between what the scheduler was told and `holders` (the node's view). A peer keeps its number
    /// across reconnects, so the scheduler keeps what it learned of it.
    mutating func changes(
        to holders: [(PeerConnection, PeerHoldings, near: Bool)]
    ) -> [ChunkScheduler.AvailabilityChange] {
        var changes: [ChunkScheduler.AvailabilityChange] = []
        var seen = Set<ChunkScheduler.SourceID>()
        for (peer, holding, near) in holders where !peer.isClosed {
            let source = ids[peer.nodeID] ?? ChunkScheduler.SourceID(ids.count)
            ids[peer.nodeID] = source
            peers[source] = peer
            seen.insert(source)
            switch told[source] {
            case nil:
                let key = ChunkScheduler.ownershipKey(of: peer.nodeID)
                changes.append(.added(source, ownershipKey: key, holding, near: near))
            case let old? where old != holding: changes.append(.changed(source, holding))
            default: continue
            }
            told[source] = holding
        }
        for source in told.keys where !seen.contains(source) {
            told[source] = nil
            changes.append(.removed(source))
        }
        return changes
    }

    /// Sources whose connection closed: removed at once.
    mutating func closed() -> [ChunkScheduler.AvailabilityChange] {
        var changes: [ChunkScheduler.AvailabilityChange] = []
        for source in told.keys where peers[source]?.isClosed ?? true {
            told[source] = nil
            changes.append(.removed(source))
        }
        return changes
    }

    /// The scheduler dropped the source (its connection was lost): told afresh when it holds again.
    mutating func forget(_ source: ChunkScheduler.SourceID) { told[source] = nil }
}

/// The download's own bookkeeping of the store: when to commit, and which stored positions to report.
struct StoreProgress {
    var doneBytes: Int
    var committing = false
    private var uncommitted = 0
    private var lastCommit = ContinuousClock.now
    private var lastReport = ContinuousClock.now
    private var storedSinceReport: [Int] = []

    init(doneBytes: Int) {
        self.doneBytes = doneBytes
    }

    mutating func stored(_ position: Int, bytes: Int) {
        doneBytes += bytes
        uncommitted += 1
        storedSinceReport.append(position)
    }

    /// Every 64 chunks or 50 ms.
    var reportDue: Bool { storedSinceReport.count >= 64 || ContinuousClock.now - lastReport > .milliseconds(50) }

    mutating func takeReport() -> [Int] {
        lastReport = .now
        defer { storedSinceReport.removeAll(keepingCapacity: true) }
        return storedSinceReport
    }

    /// Every 256 chunks or each second, one commit at a time; true when one starts now.
    mutating func commitDue() -> Bool {
        guard !committing && (uncommitted >= 256 || (uncommitted > 0 && ContinuousClock.now - lastCommit > .seconds(1)))
        else { return false }
        committing = true
        uncommitted = 0
        lastCommit = .now
        return true
    }
}
