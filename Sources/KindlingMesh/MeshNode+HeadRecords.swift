import Foundation
public import KindlingCrypto
public import KindlingManifest
import KindlingWire
import Logging
import NIOPosix

/// What became of a head record offered to the node (by `kindling publish` or by a peer).
public enum HeadRecordOutcome: Sendable, Equatable {
    /// Verified, kept on disk, and sent to every peer.
    case accepted(sequence: UInt64)
    /// The node holds this very record already.
    case alreadyHeld(sequence: UInt64)
    /// Refused, with the reason (untrusted key, rollback, expired, forged, not decodable, not persisted...).
    case refused(String)
}

/// One head record the node holds, for `kindling status` and `kindling cargo`.
public struct HeadRecordStatus: Sendable, Codable, Equatable {
    public struct Entry: Sendable, Codable, Equatable {
        public var branch: String
        public var profile: String
        public var commit: String
        public var manifest: String
    }

    public var repository: String
    public var publisher: String
    public var sequence: UInt64
    /// ISO 8601.
    public var issued: String
    public var expires: String
    public var expired: Bool
    public var entries: [Entry]
    /// Set when this is the newest record of its repository and it expired: what it means and what to do.
    public var warning: String?

    init(_ signed: SignedHeadRecord, now: Date) {
        let record = signed.record
        repository = record.repository.text
        publisher = record.publisher.text
        sequence = record.sequence
        issued = TrustFile.formatDate(record.issued)
        expires = TrustFile.formatDate(record.expires)
        expired = record.expires <= now
        entries = record.entries.map {
            Entry(
                branch: escapedPeerText($0.branch), profile: escapedPeerText($0.profile), commit: $0.commit,
                manifest: $0.manifest.hex)
        }
    }
}

struct HeadRecordID: Sendable, Hashable {
    var repository: RepositoryName
    var publisher: PublicKey
}

/// The node's head records: the newest per (repository, key), where they are kept, and each peer's budget.
struct HeadRecordState: Sendable {
    var keeper: HeadRecordKeeper?
    var held: [HeadRecordID: SignedHeadRecord] = [:]
    var budgets: [PublicKey: GossipState.Budget] = [:]
    var lastRefusal: String?

    init(_ keeper: HeadRecordKeeper?) {
        self.keeper = keeper
        for signed in keeper?.all() ?? [] {
            held[HeadRecordID(repository: signed.record.repository, publisher: signed.record.publisher)] = signed
        }
    }
}

extension MeshNode {
    /// Records sent to a peer when it connects, newest first.
    static let maxHeadRecordsAdvertised = 256
    /// Head records a peer may send at once, then `headRecordsPerSecond`; more are ignored (not an offence).
    static let headRecordBurst = 64
    static let headRecordsPerSecond = 1.0

    /// The head records held whose key the trust policy in force accepts for their repository (expired ones too:
    /// they are what `status` warns about), optionally of one repository, the newest issued first.
    public func headRecords(repository: RepositoryName? = nil) -> [SignedHeadRecord] {
        headState.held.values.filter { signed in
            let record = signed.record
            if let repository, record.repository != repository { return false }
            return (try? trust.headRecordKey(record.publisher, repository: record.repository, at: record.issued)) != nil
        }
        .sorted { a, b in
            if a.record.issued != b.record.issued { return a.record.issued > b.record.issued }
            return a.record.sequence > b.record.sequence
        }
    }

    /// Offers a head record (its bytes), as `kindling publish` does through the control socket or a peer does by
    /// gossip: checked against the trust policy in force and the record held (`now` fixed once), kept durably,
    /// then sent to every peer but the one it came from.
    public func offerHeadRecord(_ bytes: [UInt8], from peer: PublicKey? = nil) async -> HeadRecordOutcome {
        let candidate: SignedHeadRecord
        do throws(HeadRecordError) { candidate = try SignedHeadRecord.decode(bytes) } catch {
            return refusedHead(error.description, from: peer, debug: true)
        }
        let record = candidate.record
        let id = HeadRecordID(repository: record.repository, publisher: record.publisher)
        let now = Date()
        do throws(HeadRecordError) {
            if try HeadRecordUpdate.evaluate(candidate, held: headState.held[id], policy: trust, now: now)
                == .alreadyHeld
            {
                return .alreadyHeld(sequence: record.sequence)
            }
        } catch {
            if error.isProofOfLying, let peer, let connection = peers[peer] {
                strike(connection, reason: error.description)
            }
            // Disagreement (untrusted key, an older record, expired) is logged at debug level only.
            return refusedHead(error.description, from: peer, debug: !error.isProofOfLying)
        }
        if headState.held[id] == nil && headState.held.count >= HeadRecordKeeper.maxRecords {
            return refusedHead("this node keeps \(HeadRecordKeeper.maxRecords) head records already", from: peer)
        }
        if let keeper = headState.keeper {
            do {
                try await pool.runIfActive { try keeper.persist(candidate) }
            } catch {
                return refusedHead("could not keep it on disk: \(error)", from: peer)
            }
        }
        // Another update may have run while persisting: keep only the highest.
        if let held = headState.held[id], held.record.sequence >= record.sequence {
            return .alreadyHeld(sequence: held.record.sequence)
        }
        headState.held[id] = candidate
        logger.info(
            "head record accepted",
            metadata: [
                "repository": "\(record.repository)", "sequence": "\(record.sequence)",
                "entries": "\(record.entries.count)", "expires": "\(TrustFile.formatDate(record.expires))",
                "from": "\(peer.map { peers[$0]?.description ?? $0.text } ?? "local publish")",
            ])
        let encoded = candidate.encoded()
        for (other, connection) in peers where other != peer { connection.send(.headRecord(encoded)) }
        // The builds it names that we have not heard of: ask the sender for their announcements (they pass the
        // trust gate like any other), so that a record never arrives without the way to its snapshots.
        let unknown = record.entries.map(\.manifest).filter {
            gossip.signedHeader($0) == nil && !gossip.recentlyRefused.contains($0)
        }
        if let peer, !unknown.isEmpty { peers[peer]?.send(.announceRequest(ids: Array(Set(unknown)).sorted())) }
        return .accepted(sequence: record.sequence)
    }

    private func refusedHead(_ reason: String, from peer: PublicKey?, debug: Bool = false) -> HeadRecordOutcome {
        let source = peer.map { "from peer \(peers[$0]?.description ?? $0.text)" } ?? "published locally"
        headState.lastRefusal = "\(source): \(reason)"
        logger.log(
            level: debug ? .debug : .notice, "head record refused",
            metadata: ["from": "\(source)", "reason": "\(escapedPeerText(reason))"])
        return .refused(reason)
    }

    // MARK: Gossip

    /// A peer connected: it hears the records we hold that are still in force (it keeps the highest).
    func headPeerConnected(_ peer: PublicKey) {
        headState.budgets[peer] = GossipState.Budget(tokens: Double(Self.headRecordBurst), updated: .now)
        let now = Date()
        for signed in headRecords().filter({ $0.record.expires > now }).prefix(Self.maxHeadRecordsAdvertised) {
            peers[peer]?.send(.headRecord(signed.encoded()))
        }
    }

    func headPeerDisconnected(_ peer: PublicKey) {
        headState.budgets[peer] = nil
    }

    /// A HeadRecord message from a peer, within its budget.
    func handleHeadRecord(_ bytes: [UInt8], from peer: PeerConnection) async {
        guard var budget = headState.budgets[peer.nodeID] else { return }
        let granted = budget.take(1, rate: Self.headRecordsPerSecond, burst: Self.headRecordBurst, now: .now)
        headState.budgets[peer.nodeID] = budget
        guard granted else {
            logger.debug("head record over the peer's budget, ignored", metadata: ["peer": "\(peer)"])
            return
        }
        _ = await offerHeadRecord(bytes, from: peer.nodeID)
    }

    // MARK: Status

    /// Every trusted record held, with a warning on the newest of a repository when it expired.
    func headStatus(now: Date = Date()) -> [HeadRecordStatus] {
        var seen = Set<RepositoryName>()
        return headRecords().map { signed in
            var status = HeadRecordStatus(signed, now: now)
            // headRecords() is newest first: the first of each repository is its newest.
            if seen.insert(signed.record.repository).inserted, status.expired {
                status.warning = Self.staleHeadWarning(signed.record)
            }
            return status
        }
    }

    static func staleHeadWarning(_ record: HeadRecord) -> String {
        "no head record for \(record.repository.text) newer than \(TrustFile.formatDate(record.issued)) (it expired "
            + "at \(TrustFile.formatDate(record.expires))): this node may be cut off from bors, or a peer is hiding "
            + "newer builds. Check 'kindling peers' for a connection to the mesh (add a --peer you trust), and ask "
            + "whoever runs bors whether it still publishes; snapshots restored meanwhile may be older than the newest"
    }
}
