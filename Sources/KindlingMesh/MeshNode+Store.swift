import Foundation
public import KindlingCrypto
public import KindlingManifest
public import KindlingStore
import KindlingWire
import Logging
import NIOPosix

/// The store side of the node: what it loads, verifies, publishes and collects, on the I/O pool; gossip decides
/// what to tell peers about it.
extension MeshNode {
    /// Loads the catalog (every stored manifest that the trust file accepts now) and what we hold of each.
    func loadFromStore() async throws {
        let store = self.store
        let policy = trust
        let loaded = try await pool.runIfActive { () throws -> [(SignedHeader, Availability?, ChunkIndex?)] in
            var result: [(SignedHeader, Availability?, ChunkIndex?)] = []
            for summary in try store.manifestSummaries() where policy.isTrusted(summary.signed) {
                guard summary.hasBody, let manifest = try? store.manifest(summary.id) else {
                    result.append((summary.signed, nil, nil))
                    continue
                }
                let index = ChunkIndex(manifest: manifest)
                result.append((summary.signed, try Self.holding(of: index, in: store), index))
            }
            return result
        }
        for (signed, _, index) in loaded { if let index { indexes[signed.id] = index } }
        gossip.catalogLoaded(loaded.map { (signed: $0.0, holding: $0.1, chunks: $0.2?.count) })
        // Resume downloads that a restart interrupted.
        let wanted = try await pool.runIfActive { try store.wantedManifests() }
        applyGossip(gossip.resumeDownloads(wanted, now: .now))
        logger.info(
            "catalog loaded",
            metadata: ["manifests": "\(gossip.catalogCount)", "held": "\(gossip.heldManifests.count)"])
        for equivocation in gossip.equivocations { applyGossip([.equivocation(equivocation)]) }
    }

    /// The trust gate for gossip (invariant 1): an announcement that verifies is stored, then gossip records and
    /// relays it once.
    func verify(_ signed: SignedHeader, from peer: PublicKey?) async {
        var trusted: TrustedHeader
        do throws(TrustError) {
            trusted = try trust.verify(signed)
        } catch {
            rejected(signed, from: peer, error)
            return
        }
        let store = self.store
        let generation = trustGeneration
        let header = trusted
        do {
            try await pool.runIfActive { try store.saveHeader(header) }
        } catch {
            logger.error(
                "could not store announcement", metadata: ["manifest": "\(signed.id.short)", "error": "\(error)"])
            return
        }
        // The trust policy changed while the header was being stored: judged again under the new one.
        if generation != trustGeneration {
            do throws(TrustError) { trusted = try trust.verify(signed) } catch {
                rejected(signed, from: peer, error)
                return
            }
        }
        applyGossip(gossip.announcementVerified(signed, from: peer, now: .now))
    }

    /// An announcement the trust gate refused. Only a signature that does not verify under the key the header names
    /// is a lie (a ban); a key we do not trust, or no longer trust, is disagreement: dropped quietly (Specs/trust.md).
    private func rejected(_ signed: SignedHeader, from peer: PublicKey?, _ error: TrustError) {
        let forged: Bool
        if case .badSignature = error { forged = true } else { forged = false }
        let transient: Bool
        if case .createdInFuture = error { transient = true } else { transient = false }
        logger.log(
            level: forged ? .warning : .debug, "dropped untrusted announcement",
            metadata: [
                "manifest": "\(signed.id.short)",
                "from": "\(peer.map { peers[$0]?.description ?? $0.text } ?? "local")",
                "reason": "\(escapedPeerText("\(error)"))",
            ])
        let connection = peer.flatMap { peers[$0] }
        applyGossip(
            gossip.announcementRejected(signed, from: peer, forged: forged, transient: transient), for: connection)
    }

    /// Announces a manifest that was published into our store by the local CLI.
    public func announceLocal(_ id: Digest) async throws {
        let store = self.store
        let policy = trust
        // Store reads and writes on the I/O pool, not on the actor.
        let (manifest, index, complete) = try await pool.runIfActive { () throws -> (Manifest, ChunkIndex, Bool) in
            guard let manifest = try store.manifest(id) else { throw MeshError.unknownManifest(id) }
            let trusted = try policy.verify(manifest)
            try store.saveHeader(trusted.header)
            return (manifest, ChunkIndex(manifest: manifest), try store.missingChunks(of: manifest).isEmpty)
        }
        indexes[id] = index
        withheldChunks.release(index.chunks.map(\.id))
        applyGossip(gossip.localSnapshotAdded(manifest.signed, chunks: index.count, complete: complete))
    }

    /// Runs the store's gc (off the actor) and, when it evicted chunks, recomputes what we hold and tells peers:
    /// a snapshot that lost chunks is advertised as partial (or withdrawn), not as complete.
    public func collectGarbage(maxStoredBytes: Int?) async throws -> GarbageReport {
        let store = self.store
        let report = try await pool.runIfActive {
            try store.collectGarbage(maxStoredBytes: maxStoredBytes, waitForLeases: false)
        }
        if report.evictedChunks > 0 { await refreshLocalHoldings() }
        return report
    }

    /// Recomputes from the store what we hold of every manifest we hold something of; gossip re-advertises those
    /// that changed.
    func refreshLocalHoldings() async {
        let store = self.store
        let held = gossip.heldManifests.compactMap { id in indexes[id].map { (id, $0) } }
        let fresh: [(id: Digest, holding: Availability?)]
        do {
            fresh = try await pool.runIfActive {
                try held.map { id, index in (id: id, holding: try Self.holding(of: index, in: store)) }
            }
        } catch {
            logger.error("could not recompute what the store holds", metadata: ["error": "\(error)"])
            return
        }
        applyGossip(gossip.localHoldingsRefreshed(fresh))
    }

    /// What the store holds of a manifest's chunks.
    static func holding(of index: ChunkIndex, in store: ChunkStore) throws(StoreError) -> Availability? {
        let present = try store.presentChunks(among: index.chunks.map(\.id))
        if present.count == index.count { return .complete }
        var bits = Bitset(capacity: index.count)
        for (position, chunk) in index.chunks.enumerated() where present.contains(chunk.id) { bits.insert(position) }
        return bits.count > 0 ? .partial(bits) : nil
    }

    /// Headers of trusted snapshots this node knows, newest first, optionally for one repository.
    public func knownSnapshots(repository: String? = nil) -> [(signed: SignedHeader, local: Bool, holders: Int)] {
        gossip.knownSnapshots(repository: repository)
    }

    public func signedHeader(_ id: Digest) -> SignedHeader? { gossip.signedHeader(id) }

    /// Live holder notices of a manifest.
    func liveHolders(_ id: Digest) -> [PeerAddress] {
        gossip.liveHolders(id, now: .now)
    }
}
