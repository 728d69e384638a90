public import KindlingCrypto
public import KindlingWire

/// The gossip of the root-signed trust document as a plain value, with no I/O and no clock of its own
/// (Specs/wire.md, "Trust documents"): the version we hold, the versions peers advertise, and the one request we
/// have out for a newer document.
///
/// A driver (`MeshNode`) feeds it events and performs the actions returned, in order. Only `messageReceived`
/// returns anything but `.send`. It never judges a document:
/// `.evaluate` hands the bytes to the driver, which runs the trust update against its roots and answers with
/// `documentAccepted`, `documentRefused` or `intermediateNeeded`. Nothing here strikes or bans: a peer that holds
/// an older document, or one we refuse, disagrees about trust, which is not lying (invariant 6). A refused peer is
/// only not asked for that version again.
public struct TrustGossip: Sendable {
    public typealias Instant = ContinuousClock.Instant

    public struct Configuration: Sendable, Hashable {
        /// How long a GetTrust may go unanswered before another holder is asked.
        public var requestTimeout: Duration = .seconds(5)
        /// GetTrust requests answered per peer at once, then `servesPerSecond` (a document may be 1 MiB). A node
        /// that walks a root chain asks for a few versions, some twice.
        public var serveBurst = 16
        public var servesPerSecond = 1.0
        /// A peer that let a request time out (or a document whose intermediate version nobody gave us) is asked
        /// again after this, or as soon as it advertises again.
        public var retryAfter: Duration = .seconds(30)
        /// (version, peer) pairs remembered as not worth asking again; beyond it the oldest versions go first.
        public var maxRememberedFailures = 4096

        public init() {}
    }

    public enum Action: Sendable, Hashable {
        case send(WireMessage, to: PublicKey)
        /// Answer the peer's GetTrust: the document of `version` (0: our newest), or a TrustDocument without bytes
        /// when we do not hold it.
        case serve(version: UInt64, to: PublicKey)
        /// Run the trust update on these bytes (the peer's answer for `version`); report the outcome with
        /// `documentAccepted`, `documentRefused` or `intermediateNeeded`.
        case evaluate([UInt8], version: UInt64, from: PublicKey)
        /// A GetTrust over the peer's budget was not answered.
        case throttled(PublicKey)
    }

    struct Ask: Sendable, Hashable {
        var version: UInt64
        var peer: PublicKey
    }

    struct Request: Sendable, Hashable {
        var ask: Ask
        var deadline: Instant
    }

    /// A newer document that needs `version` first (its roots changed since ours): while set, we ask for `version`.
    struct Intermediate: Sendable, Hashable {
        var version: UInt64
        var blocked: Ask
    }

    public let configuration: Configuration
    /// The version of the document we hold (0: none).
    public private(set) var current: UInt64
    /// Connected peers and the version each advertised (0 until it does).
    var advertised: [PublicKey: UInt64] = [:]
    var serveBudgets: [PublicKey: GossipState.Budget] = [:]
    var inFlight: Request?
    /// Bytes handed to the driver and not yet judged: no other request meanwhile.
    var evaluating: Ask?
    var intermediate: Intermediate?
    /// Not asked again: refused documents, or "not held" answers.
    var failed: Set<Ask> = []
    /// Not asked again until the peer advertises again or `retryAfter` passed (the instant it was set aside).
    var timedOut: [Ask: Instant] = [:]

    public init(current: UInt64, configuration: Configuration = Configuration()) {
        self.current = current
        self.configuration = configuration
    }

    /// The request out, if any (for status and tests).
    public var pendingRequest: (version: UInt64, peer: PublicKey)? {
        inFlight.map { ($0.ask.version, $0.ask.peer) }
    }

    public func advertisedVersion(of peer: PublicKey) -> UInt64? { advertised[peer] }

    // MARK: Peers

    /// A peer completed the handshake: tell it what we hold.
    public mutating func peerConnected(_ peer: PublicKey, now: Instant) -> [Action] {
        advertised[peer] = 0
        serveBudgets[peer] = GossipState.Budget(tokens: Double(max(1, configuration.serveBurst)), updated: now)
        return current > 0 ? [.send(.trustVersion(current), to: peer)] : []
    }

    public mutating func peerDisconnected(_ peer: PublicKey, now: Instant) -> [Action] {
        advertised[peer] = nil
        serveBudgets[peer] = nil
        timedOut = timedOut.filter { $0.key.peer != peer }
        if inFlight?.ask.peer == peer { inFlight = nil }
        return nextRequest(now: now)
    }

    // MARK: Messages

    /// A trust message from a connected peer (others are ignored).
    public mutating func messageReceived(_ message: WireMessage, from peer: PublicKey, now: Instant) -> [Action] {
        guard advertised[peer] != nil else { return [] }
        switch message {
        case .trustVersion(let version):
            advertised[peer] = version
            // A fresh advertisement is a fresh chance for what timed out (not for what we refused).
            timedOut = timedOut.filter { $0.key.peer != peer }
            return nextRequest(now: now)
        case .getTrust(let version):
            guard var budget = serveBudgets[peer] else { return [] }
            let granted = budget.take(
                1, rate: configuration.servesPerSecond, burst: configuration.serveBurst, now: now)
            serveBudgets[peer] = budget
            return granted ? [.serve(version: version, to: peer)] : [.throttled(peer)]
        case .trustDocument(let version, let bytes):
            // Only the answer to our request counts; anything else is ignored (never evaluated unasked).
            guard let request = inFlight, request.ask == Ask(version: version, peer: peer) else { return [] }
            inFlight = nil
            guard !bytes.isEmpty else {
                remember(request.ask)
                return nextRequest(now: now)
            }
            evaluating = request.ask
            return [.evaluate(bytes, version: version, from: peer)]
        default:
            return []
        }
    }

    // MARK: Outcomes and time

    /// We hold a new document: published locally, or a peer's that the trust update accepted. Every peer hears it.
    public mutating func documentAccepted(version: UInt64, now: Instant) -> [Action] {
        evaluating = nil
        let changed = version != current
        current = max(current, version)
        if let pending = intermediate, current >= pending.version { intermediate = nil }
        failed = failed.filter { $0.version > current }
        timedOut = timedOut.filter { $0.key.version > current }
        var actions: [Action] = []
        if changed {
            for peer in advertised.keys.sorted(by: { $0.bytes.lexicographicallyPrecedes($1.bytes) }) {
                actions.append(.send(.trustVersion(current), to: peer))
            }
        }
        return actions + nextRequest(now: now)
    }

    /// The document a peer sent for `version` did not pass the trust update (or was what we hold already): that
    /// peer is not asked for it again. Not an offence.
    public mutating func documentRefused(version: UInt64, from peer: PublicKey, now: Instant) -> [Action] {
        evaluating = nil
        remember(Ask(version: version, peer: peer))
        if let pending = intermediate, pending.version == version, candidates(for: pending.version).isEmpty {
            giveUpIntermediate(now: now)
        }
        return nextRequest(now: now)
    }

    /// The document a peer sent for `version` changes the roots and needs `needed` first: ask for that.
    public mutating func intermediateNeeded(
        _ needed: UInt64, for version: UInt64, from peer: PublicKey, now: Instant
    ) -> [Action] {
        evaluating = nil
        intermediate = Intermediate(version: needed, blocked: Ask(version: version, peer: peer))
        return nextRequest(now: now)
    }

    /// Call about every 100 ms: a request out too long is given up and another holder asked; what was set aside
    /// `retryAfter` ago is worth asking again.
    public mutating func timerFired(now: Instant) -> [Action] {
        var changed = false
        if let request = inFlight, now >= request.deadline {
            inFlight = nil
            timedOut[request.ask] = now
            changed = true
        }
        let before = timedOut.count
        timedOut = timedOut.filter { now - $0.value < configuration.retryAfter }
        changed = changed || timedOut.count != before
        return changed ? nextRequest(now: now) : []
    }

    // MARK: Choosing whom to ask

    /// Peers that advertised at least `version` and are still worth asking for it, the sender of the newest first.
    func candidates(for version: UInt64) -> [PublicKey] {
        advertised.filter { peer, advertised in
            let ask = Ask(version: version, peer: peer)
            return advertised >= version && !failed.contains(ask) && timedOut[ask] == nil
        }
        .sorted { a, b in a.value != b.value ? a.value > b.value : a.key.bytes.lexicographicallyPrecedes(b.key.bytes) }
        .map(\.key)
    }

    private mutating func nextRequest(now: Instant) -> [Action] {
        guard inFlight == nil, evaluating == nil else { return [] }
        if let pending = intermediate {
            if let peer = candidates(for: pending.version).first { return request(pending.version, from: peer, now) }
            giveUpIntermediate(now: now)
        }
        // The newest version a peer advertised that is still worth asking that peer for.
        let best = advertised.compactMap { peer, version -> Ask? in
            let ask = Ask(version: version, peer: peer)
            return version > current && !failed.contains(ask) && timedOut[ask] == nil ? ask : nil
        }
        .max { a, b in
            a.version != b.version ? a.version < b.version : b.peer.bytes.lexicographicallyPrecedes(a.peer.bytes)
        }
        guard let best else { return [] }
        return request(best.version, from: best.peer, now)
    }

    private mutating func request(_ version: UInt64, from peer: PublicKey, _ now: Instant) -> [Action] {
        inFlight = Request(ask: Ask(version: version, peer: peer), deadline: now + configuration.requestTimeout)
        return [.send(.getTrust(version: version), to: peer)]
    }

    /// Nobody can give us the version in between now: the document that needed it is set aside like a timeout
    /// (asked again later, not in a loop).
    private mutating func giveUpIntermediate(now: Instant) {
        guard let pending = intermediate else { return }
        intermediate = nil
        timedOut[pending.blocked] = now
    }

    private mutating func remember(_ ask: Ask) {
        if timedOut.count >= configuration.maxRememberedFailures { timedOut.removeAll() }
        if failed.count >= configuration.maxRememberedFailures {
            // Keep the newest versions: an old failure matters least (we will not go back to it).
            let keep = failed.sorted { $0.version > $1.version }.prefix(configuration.maxRememberedFailures / 2)
            failed = Set(keep)
        }
        failed.insert(ask)
    }
}
