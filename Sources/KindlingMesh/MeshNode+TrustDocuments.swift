import Foundation
import KindlingCrypto
public import KindlingManifest
import KindlingWire
import Logging
import NIOPosix

/// A node's trust roots (node.json `roots` and `threshold`, or `--root`) and where it keeps its documents.
public struct TrustRootsSetting: Sendable {
    public var roots: TrustRoots
    public var keeper: TrustDocumentKeeper

    public init(roots: TrustRoots, keeper: TrustDocumentKeeper) {
        self.roots = roots
        self.keeper = keeper
    }
}

/// What became of a trust document offered to the node (by `kindling trust publish` or by a peer).
public enum TrustOfferOutcome: Sendable, Equatable {
    /// Verified, persisted, applied and announced to every peer.
    case accepted(version: UInt64)
    /// The node holds this very document already.
    case alreadyCurrent(version: UInt64)
    /// The roots changed since the node's document: it needs `version` first.
    case needsIntermediate(version: UInt64)
    /// Refused, with the reason (rollback, expired, below threshold, not decodable, not persisted...).
    case refused(String)
}

/// The trust document a node holds, for `kindling status`.
public struct TrustDocumentStatus: Sendable, Codable, Equatable {
    public var version: UInt64?
    /// ISO 8601.
    public var expires: String?
    public var expired: Bool
    public var roots: String
    /// The last document the node refused and why (published locally or offered by a peer).
    public var lastRefusal: String?
    /// One line for `kindling status` when something needs doing.
    public var warning: String?
}

/// The node's root-signed trust: its roots, its current document, the gossip of versions, and one update at a time.
struct TrustDocumentState: Sendable {
    var setting: TrustRootsSetting?
    var current: SignedTrustDocument?
    var gossip: TrustGossip
    var lastRefusal: String?
    /// One trust update at a time (evaluate against the current document, persist, apply): the others wait here.
    var busy = false
    var waiters: [CheckedContinuation<Void, Never>] = []

    init(_ setting: TrustRootsSetting?) {
        self.setting = setting
        current = try? setting?.keeper.current()
        gossip = TrustGossip(current: current?.document.version ?? 0)
    }
}

extension MeshNode {
    /// The document the node holds, if it has roots and accepted one.
    public var currentTrustDocument: SignedTrustDocument? { trustDocuments.current }

    /// Offers a trust document (the file's bytes) as `kindling trust publish` does: evaluated against the roots and
    /// the current document with `now` fixed once, persisted, applied at once, announced to every peer.
    public func publishTrustDocument(_ bytes: [UInt8]) async -> TrustOfferOutcome {
        let outcome = await offerTrustDocument(bytes, from: nil, requested: nil)
        if case .needsIntermediate(let version) = outcome {
            let held = trustDocuments.current?.document.version ?? 0
            return .refused(
                "the document changes the roots, and this node holds version \(held): it needs version \(version) "
                    + "first (publish the versions in between, in order)")
        }
        return outcome
    }

    func offerTrustDocument(_ bytes: [UInt8], from peer: PublicKey?, requested: UInt64?) async -> TrustOfferOutcome {
        guard let setting = trustDocuments.setting else {
            return .refused(
                "this node has no trust roots (node.json \"roots\" and \"threshold\", or --root and --threshold): it "
                    + "uses its trust file and takes no trust documents")
        }
        await beginTrustUpdate()
        defer { endTrustUpdate() }
        let candidate: SignedTrustDocument
        do throws(TrustDocumentError) { candidate = try SignedTrustDocument.decode(bytes) } catch {
            return refused(error.description, from: peer)
        }
        let version = candidate.document.version
        if let requested, requested != 0, requested != version {
            return refused("sent version \(version) when asked for version \(requested)", from: peer)
        }
        // "Now" is fixed once per update (a rule real TUF clients broke).
        let now = Date()
        let outcome: TrustUpdate.Outcome
        do throws(TrustDocumentError) {
            outcome = try TrustUpdate.evaluate(
                candidate: candidate, current: trustDocuments.current, configuredRoots: setting.roots, now: now)
        } catch {
            return refused(error.description, from: peer)
        }
        switch outcome {
        case .alreadyCurrent:
            return .alreadyCurrent(version: version)
        case .needsIntermediate(let needed):
            return .needsIntermediate(version: needed)
        case .accepted(let accepted):
            // Durable before use: a crash after this point finds it on disk, and a lower version is refused.
            let keeper = setting.keeper
            do {
                try await pool.runIfActive { try keeper.persist(accepted) }
            } catch {
                return refused("could not keep it on disk, so it was not applied: \(error)", from: peer)
            }
            trustDocuments.current = accepted
            logger.notice(
                "trust document applied",
                metadata: [
                    "version": "\(version)", "expires": "\(TrustFile.formatDate(accepted.document.expires))",
                    "keys": "\(accepted.document.keys.count)", "withdrawn": "\(accepted.document.withdrawn.count)",
                    "from": "\(peer.map { peers[$0]?.description ?? $0.text } ?? "local publish")",
                ])
            await applyTrust(accepted.document.policy)
            await performTrust(trustDocuments.gossip.documentAccepted(version: version, now: .now))
            return .accepted(version: version)
        }
    }

    private func refused(_ reason: String, from peer: PublicKey?) -> TrustOfferOutcome {
        let source = peer.map { "from peer \(peers[$0]?.description ?? $0.text)" } ?? "published locally"
        trustDocuments.lastRefusal = "\(source): \(reason)"
        // Disagreement about trust, not a lie: logged, never struck or banned.
        logger.notice(
            "trust document refused",
            metadata: [
                "from": "\(peer.map { peers[$0]?.description ?? $0.text } ?? "local publish")",
                "reason": "\(escapedPeerText(reason))",
            ])
        return .refused(reason)
    }

    private func beginTrustUpdate() async {
        while trustDocuments.busy {
            await withCheckedContinuation { trustDocuments.waiters.append($0) }
        }
        trustDocuments.busy = true
    }

    private func endTrustUpdate() {
        trustDocuments.busy = false
        if !trustDocuments.waiters.isEmpty { trustDocuments.waiters.removeFirst().resume() }
    }

    // MARK: Gossip

    // Events other than a message only ever send (TrustGossip's contract), so they need no suspension.

    func trustPeerConnected(_ peer: PublicKey) {
        guard trustDocuments.setting != nil else { return }
        sendTrust(trustDocuments.gossip.peerConnected(peer, now: .now))
    }

    func trustPeerDisconnected(_ peer: PublicKey) {
        guard trustDocuments.setting != nil else { return }
        sendTrust(trustDocuments.gossip.peerDisconnected(peer, now: .now))
    }

    func trustTick() {
        guard trustDocuments.setting != nil else { return }
        sendTrust(trustDocuments.gossip.timerFired(now: .now))
    }

    private func sendTrust(_ actions: [TrustGossip.Action]) {
        for case .send(let message, let id) in actions { peers[id]?.send(message) }
    }

    /// A TrustVersion, GetTrust or TrustDocument from a peer. A node without roots ignores them, as a node that
    /// predates them does.
    func handleTrust(_ message: WireMessage, from peer: PeerConnection) async {
        guard trustDocuments.setting != nil else { return }
        await performTrust(trustDocuments.gossip.messageReceived(message, from: peer.nodeID, now: .now))
    }

    func performTrust(_ actions: [TrustGossip.Action]) async {
        for action in actions {
            switch action {
            case .send(let message, let id):
                peers[id]?.send(message)
            case .serve(let version, let id):
                await serveTrust(version: version, to: id)
            case .evaluate(let bytes, let version, let id):
                let outcome = await offerTrustDocument(bytes, from: id, requested: version)
                let now = ContinuousClock.now
                switch outcome {
                case .accepted:
                    // documentAccepted has run inside the update.
                    break
                case .alreadyCurrent:
                    await performTrust(
                        trustDocuments.gossip.documentAccepted(version: trustDocuments.gossip.current, now: now))
                case .needsIntermediate(let needed):
                    await performTrust(
                        trustDocuments.gossip.intermediateNeeded(needed, for: version, from: id, now: now))
                case .refused:
                    await performTrust(trustDocuments.gossip.documentRefused(version: version, from: id, now: now))
                }
            case .throttled(let id):
                logger.debug(
                    "request over the peer's budget, not answered",
                    metadata: ["peer": "\(peers[id]?.description ?? id.text)", "request": "GetTrust"])
            }
        }
    }

    /// Answers GetTrust: the current document from memory, another kept one from disk, or no bytes.
    private func serveTrust(version: UInt64, to id: PublicKey) async {
        var bytes: [UInt8] = []
        if let current = trustDocuments.current, version == 0 || version == current.document.version {
            bytes = current.encoded()
        } else if let keeper = trustDocuments.setting?.keeper, version != 0 {
            bytes = (try? await pool.runIfActive { keeper.bytes(version: version) ?? [] }) ?? []
        }
        peers[id]?.send(.trustDocument(version: version, bytes: bytes))
    }

    // MARK: Status

    func trustStatus(now: Date = Date()) -> TrustDocumentStatus? {
        guard let setting = trustDocuments.setting else { return nil }
        let roots = setting.roots.keys.map(\.text).joined(separator: ", ")
        var status = TrustDocumentStatus(
            version: nil, expires: nil, expired: false,
            roots: "\(setting.roots.threshold) of \(setting.roots.keys.count): \(roots)",
            lastRefusal: trustDocuments.lastRefusal, warning: nil)
        guard let current = trustDocuments.current else {
            status.warning =
                "no trust document yet: nothing is trusted until one arrives from a peer or is published here "
                + "('kindling trust publish DOC')"
            return status
        }
        status.version = current.document.version
        status.expires = TrustFile.formatDate(current.document.expires)
        if current.document.expires <= now {
            status.expired = true
            status.warning =
                "trust document version \(current.document.version) expired at "
                + "\(TrustFile.formatDate(current.document.expires)) and no newer one has reached this node: the "
                + "roots must sign a fresh one ('kindling trust edit DOC --expires 90d', 'kindling trust sign', "
                + "'kindling trust publish'); until then this node keeps using it"
        }
        return status
    }
}
