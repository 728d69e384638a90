public import KindlingWire

/// Which chunk of a snapshot to ask of which source, and when (Specs/wire.md, "Swarm transfer"): the policy of a
/// swarm download as a value type without I/O or clock, in the style of postgres-nio's `ConnectionStateMachine`.
///
/// - a bounded window of requests per source, grown while replies come about as fast as the fastest one and
///   shrunk once they queue, halved on a timeout, so fast sources end up serving most chunks; and one such window
///   over all far sources and one over all near (LAN) ones, which bounds the queue at the links they share;
/// - while colleagues on the LAN download the same snapshot, far sources are asked only for the positions this
///   node owns among them by rendezvous hashing, and never for what a colleague holds, so that the site's uplink
///   carries each chunk about once; no endgame copy crosses it;
/// - rarest first among the sources' holdings, ties broken by a per-download random order so downloaders spread;
/// - a timed-out, refused or lost request goes back in the queue for someone else: a source that timed out on a
///   chunk is not asked for it again while a faster holder that did not is around;
/// - endgame: once every missing chunk is requested, the last ones are also asked of a second source, and the
///   duplicate is withdrawn when the first copy arrives;
/// - seeds (complete holders) are the scarce upload: while they are fewer than the downloaders, each downloader
///   asks a seed only for the positions it owns by rendezvous hashing, and never for what a downloader holds;
/// - a source that sends a bad chunk is banned and never asked again; nothing in flight and no progress for
///   `stallTimeout` fails the download.
///
/// How a driver uses it (`SwarmDownload` over sockets, the simulator on virtual time):
/// 1. `var scheduler = ChunkScheduler(chunkCount:missing:me:seed:configuration:now:)`. Time is a `Duration`
///    since any origin the driver picks, passed with every event and never decreasing; the scheduler never
///    reads a clock.
/// 2. Feed events and perform the returned actions in order. Availability: `availabilityChanged` with a batch
///    of `AvailabilityChange`s (add, change, remove sources together, so that one decision sees them all), when
///    `wantsAvailability(now:)` says so or whenever the driver likes. Requests: every `.request` gets exactly
///    one `chunkArrived` (verified and stored, or bad) or `requestFailed` (`.timeout` once its timeout passed
///    without a reply; `.cancelled` after a `.cancel` when no reply came; `.closed` when the source went away).
///    Timers: call `timerFired(now:)` at (or after) the instant of the latest `.scheduleTimer`. The first event
///    (the first availability, or `timerFired`) makes the first decision.
/// 3. Stop at `.finished` or `.failed`; later events return no actions.
///
/// Per event the work is bounded by the sources and the positions scanned for a pick, not by the manifest: the
/// rarest-first order is rebuilt at most every 10 ms (first second) or 100 ms, and only when availability changed.
public struct ChunkScheduler: Sendable {
    /// A source of chunks (a peer). The driver numbers them; the same peer keeps its number across reconnects.
    public struct SourceID: Hashable, Comparable, Sendable, CustomStringConvertible {
        public let rawValue: Int
        public init(_ rawValue: Int) { self.rawValue = rawValue }
        public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
        public var description: String { "source \(rawValue)" }
    }

    public struct Configuration: Sendable {
        /// The longest a request may take (a source's own timeout is 8 × its latency, within a quarter of this).
        public var requestTimeout: Duration
        /// Nothing in flight and nothing stored for this long: the download fails.
        public var stallTimeout: Duration

        public init(requestTimeout: Duration, stallTimeout: Duration) {
            self.requestTimeout = requestTimeout
            self.stallTimeout = stallTimeout
        }
    }

    /// What the driver learned about who holds what.
    public enum AvailabilityChange: Sendable, Equatable {
        /// A source holds (some of) the snapshot. `ownershipKey` places it in the seed split (see `ownershipKey(of:)`);
        /// `near` says it shares our LAN (found by LAN discovery), so its bytes do not cross the site's uplink.
        case added(SourceID, ownershipKey: UInt64, PeerHoldings, near: Bool = false)
        /// A known source's whole holding, replacing the previous one.
        case changed(SourceID, PeerHoldings)
        /// A known source gained these positions (a HaveChunks).
        case gained(SourceID, positions: [Int])
        /// The source is gone (disconnected, or no longer holds it). Its requests in flight still get an outcome.
        case removed(SourceID)
    }

    /// The fate of a reply to a request.
    public enum Arrival: Sendable, Equatable {
        /// Verified and stored; `new` is false when the store held it already (a concurrent request wrote it).
        case stored(new: Bool)
        /// The bytes do not match the chunk (wrong length or hash): the source lies.
        case bad(reason: String)
    }

    public enum Failure: Sendable, Equatable, Error {
        /// Nothing was in flight and nothing arrived for `seconds`; `sources` could be asked at the end.
        case stalled(missingChunks: Int, seconds: Int, sources: Int)
    }

    public enum Action: Sendable, Equatable {
        /// Ask `source` for the chunk at `position`, giving up after `timeout`.
        case request(position: Int, from: SourceID, timeout: Duration)
        /// Withdraw a request in flight: its chunk came from someone else.
        case cancel(position: Int, from: SourceID)
        /// The first copy of `position` is stored: count it as done and tell peers we hold it.
        case held(position: Int)
        /// Count the bytes of `position` as fetched over the network (at most once per position).
        case fetched(position: Int)
        /// The source sent a bad chunk: drop and ban it (the scheduler asks it nothing more).
        case ban(SourceID, reason: String)
        /// Call `timerFired` at this instant.
        case scheduleTimer(at: Duration)
        /// Every chunk is stored.
        case finished
        case failed(Failure)
    }

    /// Counters for the fetch result.
    public struct Statistics: Sendable, Equatable {
        public var chunksFetched = 0
        /// Requests that failed (timeout, refusal, lost connection) and went back in the queue.
        public var retries = 0
        public var sourcesBanned = 0
        /// Requests to far sources while near colleagues download too, by why they were allowed: the position is
        /// ours in the office split, nothing was in flight for `idleAfter`, or its requests failed elsewhere.
        public var farOwned = 0
        public var farIdle = 0
        public var farAfterFailures = 0
        /// Requests to far sources with no near downloader around.
        public var farAlone = 0
    }

    // MARK: Tunables (the values of the fused download loop they came from)

    /// Requests in flight per source at most: below the 64 a server serves per peer, so a busy reply means the
    /// server is loaded overall, not that we asked too much.
    public static let maxWindow = 48
    static let initialWindow = 4
    /// Requests in flight over all near, or all far, sources at most, and at first. A source's window bounds the
    /// queue at that source; this one bounds the queue at the links all of them share (our downlink, the site's
    /// uplink), which per-source windows cannot see: fifty colleagues times thirty sources times a floor of one
    /// request each is a minute of queue behind a 100 Mbit/s office uplink, and then every request times out.
    public static let maxClassWindow = 128
    static let initialClassWindow = 4
    /// Queueing above a source's fastest reply that counts as a queue: the window then shrinks (LEDBAT's target).
    static let queueTarget: Duration = .milliseconds(100)
    static let initialLatency: Duration = .milliseconds(50)
    /// How long a source that answered busy is left alone.
    static let busyPause: Duration = .milliseconds(20)
    /// Nothing in flight this long: any chunk may come from a seed, rather than leave the links idle.
    static let idleAfter: Duration = .milliseconds(500)
    /// How often to look again while nothing is in flight.
    static let pollInterval: Duration = .milliseconds(50)
    /// Failed requests for a position after which a seed may serve it after all (its other holders fail).
    static let failuresBeforeSeed: UInt8 = 2
    /// Copies of one chunk asked for in the endgame.
    static let endgameCopies = 2

    // MARK: State

    struct SourceState: Sendable {
        var key: UInt64
        /// Nil while the source is not (or no longer) a holder.
        var holding: PeerHoldings?
        var window = ChunkScheduler.initialWindow
        var inFlight = 0
        var lacks = Set<Int>()
        var pausedUntil: Duration?
        var latency = ChunkScheduler.initialLatency
        /// The fastest reply seen: the source's latency without our own requests queued in front.
        var fastest: Duration = .seconds(3600)
        var near: Bool

        init(key: UInt64, holding: PeerHoldings?, near: Bool) {
            self.key = key
            self.holding = holding
            self.near = near
        }
    }

    /// The shared window of the near (LAN) sources, or of the far ones: the two cross different links.
    struct ClassWindow: Sendable {
        var window = ChunkScheduler.initialClassWindow
        var inFlight = 0
    }

    /// `draining`: every chunk is held, but one was found already written by a duplicate request whose own reply
    /// (the one that wrote it, and counts it as fetched) is still on its way; `finished` waits for it.
    enum Phase: Sendable { case running, draining, done }

    let configuration: Configuration
    let total: Int
    /// The per-download random tie-break of rarest first.
    let seed: UInt64
    let me: UInt64
    let started: Duration
    var phase = Phase.running
    public internal(set) var statistics = Statistics()

    var sources: [SourceID: SourceState] = [:]
    /// Index 0 the far sources, 1 the near ones (`classIndex`).
    var classes = [ClassWindow(), ClassWindow()]
    /// The sources added as near, kept after they go (a banned or lost source's requests still end), so that a
    /// request gives its class's slot back whatever became of its source.
    var nearSources = Set<SourceID>()
    var banned = Set<SourceID>()
    /// Sources with a holding, and how many of them are complete.
    var holderCount = 0
    var completeCount = 0
    /// Partial holders (other downloaders) per position: a seed is not asked for those.
    var partialCounts: [Int32]
    /// Near holders per position (partial or complete), and near complete holders: a far source is not asked for
    /// what a colleague can give.
    var nearCounts: [Int32]
    var nearCompleteCount = 0
    /// Near downloaders: while there are any, this node fetches from far sources only the positions it owns among
    /// them (`ownedFar`), so that the site's uplink carries each chunk about once.
    var nearDownloaderCount = 0

    /// Positions not stored yet.
    var remaining: [Bool]
    public private(set) var remainingCount: Int
    /// Who is asked for each position now, in the order asked (at most `endgameCopies`).
    var requested: [Int: [SourceID]] = [:]
    var inFlight = 0
    /// Positions whose first reply found the chunk already written (by a concurrent request, or a download of
    /// another snapshot sharing it).
    var storedByOther = Set<Int>()
    /// Sources that let a request for the position time out.
    var timedOutBy: [Int: [SourceID]] = [:]
    var failures: [UInt8]
    var lastProgress: Duration

    /// Rarest first, ties in the random order. Only remaining positions, as of the last rebuild.
    var order: [Int32] = []
    /// Where `order`'s live part begins: positions before it are stored, so a pick's scan does not grow with the
    /// number of chunks already fetched.
    var orderStart = 0
    var orderDirty = false
    var lastRefresh: Duration
    var holdersAtRefresh = 0
    /// The positions this node fetches from seeds while seeds are scarce (see `ownership`).
    var owned: [Bool]
    var ownershipKeys: [UInt64] = []
    var ownedFar: [Bool]
    var farOwnershipKeys: [UInt64] = []

    /// - Parameters:
    ///   - missing: the positions to fetch (the others are stored already).
    ///   - me: this node's ownership key (`ownershipKey(of:)` of its node id).
    ///   - seed: the random tie-break of rarest first; the same events with the same seed give the same actions.
    public init(
        chunkCount: Int, missing: some Sequence<Int>, me: UInt64, seed: UInt64, configuration: Configuration,
        now: Duration
    ) {
        self.configuration = configuration
        total = chunkCount
        self.seed = seed
        self.me = me
        started = now
        lastProgress = now
        lastRefresh = now - .seconds(1)
        partialCounts = [Int32](repeating: 0, count: chunkCount)
        nearCounts = [Int32](repeating: 0, count: chunkCount)
        ownedFar = [Bool](repeating: true, count: chunkCount)
        failures = [UInt8](repeating: 0, count: chunkCount)
        owned = [Bool](repeating: true, count: chunkCount)
        remaining = [Bool](repeating: false, count: chunkCount)
        var count = 0
        for position in missing where position >= 0 && position < chunkCount && !remaining[position] {
            remaining[position] = true
            count += 1
        }
        remainingCount = count
        rebuildOrder()
    }

    /// Whether the driver should pass on what changed in availability now: at most every 10 ms in the first
    /// second (the other downloaders are still saying they have started, and the seed split is only as good as
    /// the list of them), every 100 ms after, since with many downloaders availability changes with nearly every
    /// chunk; at once while no source is known.
    public func wantsAvailability(now: Duration) -> Bool {
        refreshDue(now: now) || holderCount == 0
    }

    func refreshDue(now: Duration) -> Bool {
        let every: Duration = now - started < .seconds(1) ? .milliseconds(10) : .milliseconds(100)
        return now - lastRefresh > every
    }

    /// The requests in flight now.
    public var requestsInFlight: Int { inFlight }

    // MARK: Events

    public mutating func availabilityChanged(_ changes: [AvailabilityChange], now: Duration) -> [Action] {
        guard phase == .running else { return [] }
        for change in changes { apply(change) }
        return decide(now: now)
    }

    public mutating func sourceAdded(
        _ source: SourceID, ownershipKey: UInt64, holding: PeerHoldings, now: Duration
    ) -> [Action] {
        availabilityChanged([.added(source, ownershipKey: ownershipKey, holding)], now: now)
    }

    public mutating func sourceRemoved(_ source: SourceID, now: Duration) -> [Action] {
        availabilityChanged([.removed(source)], now: now)
    }

    public mutating func timerFired(now: Duration) -> [Action] {
        guard phase == .running else { return [] }
        return decide(now: now)
    }

    /// A reply to a request from `source` for `position`, `latency` after it was asked.
    public mutating func chunkArrived(
        _ position: Int, from source: SourceID, _ arrival: Arrival, latency: Duration, now: Duration
    ) -> [Action] {
        guard phase != .done, position >= 0, position < total else { return [] }
        inFlight = max(0, inFlight - 1)
        releaseClassSlot(of: source)
        if phase == .draining {
            guard case .stored(new: true) = arrival, storedByOther.remove(position) != nil else {
                return finishOrDrain()
            }
            statistics.chunksFetched += 1
            return [.fetched(position: position)] + finishOrDrain()
        }
        var actions: [Action] = []
        switch arrival {
        case .stored(let new):
            if var state = sources[source] {
                state.inFlight = max(0, state.inFlight - 1)
                // Grow while replies come about as fast as the fastest one, shrink once they queue (delay based,
                // as TCP Vegas and LEDBAT): a deep queue at a slow seed only makes requests time out, and the
                // seed then uploads chunks whose requesters have given up on them.
                state.fastest = min(state.fastest, latency)
                let queued = latency > max(state.fastest * 3, state.fastest + Self.queueTarget)
                state.window = queued ? max(1, state.window - 1) : min(Self.maxWindow, state.window + 1)
                state.latency = (state.latency * 7 + latency) / 8
                sources[source] = state
                let kind = Self.classIndex(near: state.near)
                classes[kind].window =
                    queued
                    ? max(1, classes[kind].window - 1) : min(Self.maxClassWindow, classes[kind].window + 1)
            }
            let first = remaining[position]
            // Two requests for one chunk (the endgame) may finish in either order: the one that wrote it counts
            // it as fetched even when the other, which found it written, came back first.
            if new && (first || storedByOther.remove(position) != nil) {
                statistics.chunksFetched += 1
                actions.append(.fetched(position: position))
            }
            if first {
                remaining[position] = false
                remainingCount -= 1
                if !new { storedByOther.insert(position) }
                // Its duplicates are withdrawn, so no one uploads it again.
                for other in requested[position] ?? [] where other != source {
                    actions.append(.cancel(position: position, from: other))
                }
                requested[position] = nil
                timedOutBy[position] = nil
                lastProgress = now
                actions.append(.held(position: position))
                if remainingCount == 0 {
                    actions += finishOrDrain()
                    return actions
                }
            }
        case .bad(let reason):
            forgetRequest(position, of: source)
            // Its other requests in flight fail too; ban and count it once.
            if banned.insert(source).inserted {
                statistics.sourcesBanned += 1
                dropHolding(of: source)
                sources[source] = nil
                actions.append(.ban(source, reason: reason))
            }
        }
        actions += decide(now: now)
        return actions
    }

    /// A request failed: `elapsed` after it was asked, with `error`.
    public mutating func requestFailed(
        _ position: Int, from source: SourceID, _ error: PeerRequestError, elapsed: Duration, now: Duration
    ) -> [Action] {
        guard phase != .done, position >= 0, position < total else { return [] }
        inFlight = max(0, inFlight - 1)
        releaseClassSlot(of: source)
        if phase == .draining { return finishOrDrain() }
        if var state = sources[source] {
            state.inFlight = max(0, state.inFlight - 1)
            sources[source] = state
        }
        // A duplicate we withdrew (its chunk came from someone else): nothing failed.
        guard error != .cancelled else { return decide(now: now) }
        forgetRequest(position, of: source)
        failures[position] = failures[position] &+ 1
        statistics.retries += 1
        if var state = sources[source] {
            switch error {
            case .timeout:
                state.window = max(1, state.window / 2)
                let kind = Self.classIndex(near: state.near)
                classes[kind].window = max(1, classes[kind].window / 2)
                // It took at least the timeout: its estimate says so, and this chunk goes elsewhere.
                state.latency = max(state.latency, elapsed)
                if !(timedOutBy[position] ?? []).contains(source) { timedOutBy[position, default: []].append(source) }
            case .notHeld: state.lacks.insert(position)
            case .busy:
                state.window = max(1, state.window - 1)
                state.pausedUntil = now + Self.busyPause
            case .closed, .cancelled: break
            }
            if error == .closed {
                // Lost: forgotten until the driver adds it again, then with a fresh estimate.
                dropHolding(of: source)
                sources[source] = nil
            } else {
                sources[source] = state
            }
        }
        return decide(now: now)
    }

    // MARK: Bookkeeping

    /// All chunks are held: finished, unless a chunk's writer may still report (see `Phase.draining`). Requests in
    /// flight end by reply, failure or their timeout, so draining is bounded by the longest request timeout.
    mutating func finishOrDrain() -> [Action] {
        guard storedByOther.isEmpty || inFlight == 0 else {
            phase = .draining
            return []
        }
        phase = .done
        return [.finished]
    }

    static func classIndex(near: Bool) -> Int { near ? 1 : 0 }

    /// A colleague on the LAN downloads the snapshot or holds it: the site's uplink is shared.
    var colleaguesShareUplink: Bool { nearDownloaderCount > 0 || nearCompleteCount > 0 }

    mutating func releaseClassSlot(of source: SourceID) {
        let kind = Self.classIndex(near: nearSources.contains(source))
        classes[kind].inFlight = max(0, classes[kind].inFlight - 1)
    }

    mutating func forgetRequest(_ position: Int, of source: SourceID) {
        guard var askedOf = requested[position] else { return }
        askedOf.removeAll { $0 == source }
        requested[position] = askedOf.isEmpty ? nil : askedOf
    }

    mutating func apply(_ change: AvailabilityChange) {
        switch change {
        case .added(let source, let key, let holding, let near):
            guard !banned.contains(source) else { return }
            if near { nearSources.insert(source) } else { nearSources.remove(source) }
            if var state = sources[source] {
                // Re-added (a reconnect): its counts leave with the old class and come back with the new one.
                setHolding(nil, of: source)
                state = sources[source] ?? state
                state.key = key
                state.near = near
                sources[source] = state
                setHolding(holding, of: source)
            } else {
                sources[source] = SourceState(key: key, holding: nil, near: near)
                setHolding(holding, of: source)
            }
        case .changed(let source, let holding):
            guard sources[source] != nil else { return }
            setHolding(holding, of: source)
        case .gained(let source, let positions):
            guard case .partial(var bits)? = sources[source]?.holding else { return }
            let near = sources[source]?.near ?? false
            // Cleared first so that the bitset is not copied on write.
            sources[source]?.holding = nil
            for position in positions where position >= 0 && position < total && !bits.contains(position) {
                bits.insert(position)
                partialCounts[position] += 1
                if near { nearCounts[position] += 1 }
            }
            sources[source]?.holding = .partial(bits)
            orderDirty = true
        case .removed(let source):
            dropHolding(of: source)
        }
    }

    mutating func dropHolding(of source: SourceID) { setHolding(nil, of: source) }

    /// Replaces a source's holding and keeps the availability counts in step.
    mutating func setHolding(_ holding: PeerHoldings?, of source: SourceID) {
        guard var state = sources[source] else { return }
        let old = state.holding
        guard old != holding else { return }
        state.holding = holding
        sources[source] = state
        orderDirty = true
        let near = state.near
        switch (old, holding) {
        case (.partial(let before)?, .partial(let after)?):
            let count = max(before.bytes.count, after.bytes.count)
            for byte in 0..<count {
                let was = byte < before.bytes.count ? before.bytes[byte] : 0
                let now = byte < after.bytes.count ? after.bytes[byte] : 0
                countBits(now & ~was, at: byte, by: 1, near: near)
                countBits(was & ~now, at: byte, by: -1, near: near)
            }
        default:
            contribute(old, by: -1, near: near)
            contribute(holding, by: 1, near: near)
        }
    }

    mutating func contribute(_ holding: PeerHoldings?, by delta: Int32, near: Bool) {
        switch holding {
        case nil: return
        case .complete?:
            completeCount += Int(delta)
            if near { nearCompleteCount += Int(delta) }
        case .partial(let bits)?:
            for (byte, value) in bits.bytes.enumerated() where value != 0 {
                countBits(value, at: byte, by: delta, near: near)
            }
            if near { nearDownloaderCount += Int(delta) }
        }
        holderCount += Int(delta)
    }

    mutating func countBits(_ bits: UInt8, at byte: Int, by delta: Int32, near: Bool) {
        var rest = bits
        while rest != 0 {
            let position = byte * 8 + rest.trailingZeroBitCount
            if position < total {
                partialCounts[position] += delta
                if near { nearCounts[position] += delta }
            }
            rest &= rest - 1
        }
    }
}
