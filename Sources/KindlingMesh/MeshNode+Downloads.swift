import Foundation
public import KindlingCrypto
import KindlingManifest
import KindlingStore
import KindlingWire
import Logging
import NIOPosix

/// Downloads: their waiters live here; whether one runs, and when a failed one is retried, is gossip's decision.
/// `SwarmDownload` reports what it stores through these functions.
extension MeshNode {
    /// Fetches a snapshot through the mesh into the store; returns once every chunk is stored and verified.
    /// Concurrent fetches of the same manifest share one download.
    public func fetch(_ id: Digest, progress: (@Sendable (FetchProgress) -> Void)? = nil) async throws -> FetchResult {
        guard !shuttingDown else { throw MeshError.shuttingDown }
        guard gossip.signedHeader(id) != nil else { throw MeshError.unknownManifest(id) }
        if let equivocation = gossip.equivocations.first(where: { $0.manifests.contains(id) }) {
            throw MeshError.equivocal(equivocation)
        }
        if case .complete? = gossip.localHolding(id), let index = indexes[id] {
            // The store may have lost chunks since (a gc by another process): check before saying so.
            let store = self.store
            if case .complete? = try await pool.runIfActive({ try Self.holding(of: index, in: store) }) {
                return FetchResult(manifest: id, totalBytes: index.totalBytes, alreadyLocalBytes: index.totalBytes)
            }
            gossip.localHoldingLost(id)
            logger.info(
                "snapshot lost chunks since it was complete; fetching again", metadata: ["manifest": "\(id.short)"])
        }
        guard !shuttingDown else { throw MeshError.shuttingDown }
        return try await withCheckedThrowingContinuation { continuation in
            applyGossip(gossip.downloadRequested(id, now: .now))
            guard gossip.isDownloading(id), downloads[id] != nil else {
                // Never leave a caller waiting on a download that will not run.
                return continuation.resume(throwing: MeshError.shuttingDown)
            }
            downloads[id]?.waiters.append(continuation)
            if let progress { downloads[id]?.progress.append(progress) }
        }
    }

    func reportProgress(_ progress: FetchProgress) {
        for callback in downloads[progress.manifest]?.progress ?? [] { callback(progress) }
    }

    /// A download ended: its waiters get the result; gossip schedules a retry of a failed one.
    func finishDownload(_ id: Digest, result: Result<FetchResult, any Error>) {
        let outcome: GossipState.DownloadOutcome
        switch result {
        case .success: outcome = .succeeded
        case .failure(let error): outcome = error is CancellationError ? .cancelled : .failed
        }
        downloadCancels[id] = nil
        applyGossip(gossip.downloadFinished(id, outcome: outcome, now: .now))
        guard let record = downloads.removeValue(forKey: id) else { return }
        for waiter in record.waiters { waiter.resume(with: result) }
    }

    /// What peers hold of a manifest, for the scheduler. Bumps when anything changes.
    /// `near`: found by LAN discovery.
    func holdersSnapshot(_ id: Digest) -> (version: Int, holders: [(PeerConnection, PeerHoldings, near: Bool)]) {
        let lan = book.lanNodes
        let list = gossip.holders(of: id).compactMap { key, value in
            peers[key].map { ($0, value, near: lan.contains(key)) }
        }
        return (availabilityVersion, list)
    }

    func setIndex(_ index: ChunkIndex, for id: Digest) {
        indexes[id] = index
        withheldChunks.release(index.chunks.map(\.id))
        gossip.chunkCountKnown(id, count: index.count)
    }

    /// Chunks of a download are stored and verified: others may now fetch them from us.
    func noteChunksStored(_ id: Digest, positions: [Int], total: Int) {
        applyGossip(gossip.chunksStored(id, positions: positions, total: total, now: .now))
    }

    /// A download starts, with the chunks we already had: peers learn at once that we are downloading.
    func noteChunksPresent(_ id: Digest, positions: [Int], total: Int) {
        applyGossip(gossip.chunksPresent(id, positions: positions, total: total))
    }

    /// Every chunk is stored: tell every peer (each of them relays a holder notice with our address).
    func markComplete(_ id: Digest) {
        applyGossip(gossip.snapshotComplete(id))
    }
}
