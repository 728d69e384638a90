public import KindlingCrypto
import KindlingWire

extension ChunkScheduler {
    /// After every event: fill each source's window, fastest first; with nothing in flight, look again soon or
    /// give up once nothing arrived for the stall timeout.
    mutating func decide(now: Duration) -> [Action] {
        guard phase == .running else { return [] }
        guard remainingCount > 0 else { return finishOrDrain() }
        if orderDirty && (refreshDue(now: now) || holdersAtRefresh == 0) {
            lastRefresh = now
            rebuildOrder()
        }
        var actions: [Action] = []
        fill(now: now, into: &actions)
        if inFlight == 0 {
            if now - lastProgress > configuration.stallTimeout {
                phase = .done
                let seconds = Int(configuration.stallTimeout.components.seconds)
                actions.append(.failed(.stalled(missingChunks: remainingCount, seconds: seconds, sources: holderCount)))
            } else {
                actions.append(.scheduleTimer(at: now + Self.pollInterval))
            }
        }
        return actions
    }

    mutating func fill(now: Duration, into actions: inout [Action]) {
        while orderStart < order.count && !remaining[Int(order[orderStart])] { orderStart += 1 }
        // Endgame: every missing chunk has been asked for at least once.
        let endgame = requested.count >= remainingCount
        // Nothing in flight for a moment: waiting for the other downloaders' chunks would leave the links idle,
        // so any chunk may come from a seed.
        let idle = inFlight == 0 && now - lastProgress > Self.idleAfter
        var ready: [(SourceID, Duration)] = []
        for (source, state) in sources where state.holding != nil && state.inFlight < state.window {
            if let paused = state.pausedUntil, paused > now { continue }
            // A downloader that holds nothing yet has nothing to give: no scan of the order for it.
            if case .partial(let bits)? = state.holding, bits.count == 0 { continue }
            ready.append((source, state.latency))
        }
        ready.sort { $0.1 != $1.1 ? $0.1 < $1.1 : $0.0 < $1.0 }
        // The far window binds only while colleagues share the uplink: alone behind our own link, the per-source
        // windows are the old, faster behaviour (a 16-node loopback swarm took 1.2-1.5× the time and CPU with it).
        let farBounded = colleaguesShareUplink
        for (source, _) in ready {
            guard var state = sources[source], let holding = state.holding else { continue }
            let kind = Self.classIndex(near: state.near)
            let timeout = max(configuration.requestTimeout / 2, min(configuration.requestTimeout, state.latency * 8))
            // One request per source goes beyond a full class window: a source is measured only while it is asked,
            // and a queue at one slow source (a rate-limited seed) must not keep the others unasked.
            let bounded = state.near || farBounded
            while state.inFlight < state.window
                && (!bounded || classes[kind].inFlight < classes[kind].window || state.inFlight == 0)
            {
                guard let position = pick(for: source, state, holding, endgame: endgame, idle: idle) else { break }
                if !state.near { countFarRequest(position) }
                requested[position, default: []].append(source)
                state.inFlight += 1
                inFlight += 1
                classes[kind].inFlight += 1
                actions.append(.request(position: position, from: source, timeout: timeout))
            }
            sources[source] = state
        }
    }

    mutating func countFarRequest(_ position: Int) {
        if !colleaguesShareUplink {
            statistics.farAlone += 1
        } else if failures[position] >= Self.failuresBeforeSeed {
            statistics.farAfterFailures += 1
        } else if ownedFar[position] {
            statistics.farOwned += 1
        } else {
            statistics.farIdle += 1
        }
    }

    /// The first position in rarest-first order that `source` may be asked for now.
    func pick(for source: SourceID, _ state: SourceState, _ holding: PeerHoldings, endgame: Bool, idle: Bool) -> Int? {
        // Seeds are the scarce upload: ask them only for what no other downloader can give (field lesson 10:
        // swarms scale flat when the origin serves each piece about once).
        let isSeed = holding == .complete
        // A far source crosses the site's uplink, which the colleagues share: while one of them downloads too,
        // each asks far sources only for the positions it owns among them, and nothing a colleague holds.
        let farShared = !state.near && colleaguesShareUplink
        var index = orderStart
        while index < order.count {
            let position = Int(order[index])
            index += 1
            guard remaining[position], holding.has(position), !state.lacks.contains(position) else { continue }
            if let slow = timedOutBy[position], slow.contains(source),
                fasterHolder(of: position, than: state.latency, excluding: slow)
            {
                continue
            }
            if farShared && failures[position] < Self.failuresBeforeSeed
                && (nearCompleteCount > 0 || nearCounts[position] > 0 || (!ownedFar[position] && !idle))
            {
                continue
            }
            // The office split stands in for the seed split of a far seed: colleagues own disjoint positions.
            if isSeed && failures[position] < Self.failuresBeforeSeed
                && (partialCounts[position] > 0 || (!farShared && !owned[position] && !idle))
            {
                continue
            }
            let askedOf = requested[position] ?? []
            // An endgame copy over the shared uplink costs the colleagues more than the last chunk's wait.
            let copies = farShared ? 1 : Self.endgameCopies
            if endgame ? (askedOf.count < copies && !askedOf.contains(source)) : askedOf.isEmpty {
                return position
            }
        }
        return nil
    }

    /// Whether a holder of `position` that has neither let it time out nor refused it answers faster than
    /// `latency`: then a source that let it time out is not asked again.
    func fasterHolder(of position: Int, than latency: Duration, excluding slow: [SourceID]) -> Bool {
        sources.contains { other, state in
            guard let holding = state.holding else { return false }
            return !slow.contains(other) && holding.has(position) && !state.lacks.contains(position)
                && state.latency < latency
        }
    }

    /// Rarest first among the remaining positions, ties in this download's random order; and the seed split from
    /// the current downloaders.
    mutating func rebuildOrder() {
        orderDirty = false
        holdersAtRefresh = holderCount
        order.removeAll(keepingCapacity: true)
        for position in 0..<total where remaining[position] { order.append(Int32(position)) }
        let seed = seed
        let counts = partialCounts
        // Complete holders have every position: only the partial counts differ.
        order.sort { a, b in
            let (ca, cb) = (counts[Int(a)], counts[Int(b)])
            return ca != cb ? ca < cb : Self.rank(seed, Int(a)) < Self.rank(seed, Int(b))
        }
        orderStart = 0
        var downloaders: [UInt64] = []
        var colleagues: [UInt64] = []
        for state in sources.values {
            if case .partial? = state.holding {
                downloaders.append(state.key)
                if state.near { colleagues.append(state.key) }
            }
        }
        downloaders.sort()
        colleagues.sort()
        let key = completeCount < downloaders.count + 1 ? downloaders : []
        if key != ownershipKeys {
            ownershipKeys = key
            owned = Self.ownership(total: total, me: me, others: key)
        }
        if colleagues != farOwnershipKeys {
            farOwnershipKeys = colleagues
            ownedFar = Self.ownership(total: total, me: me, others: colleagues)
        }
    }

    // MARK: The seed split

    /// A node id's key in the seed split: its first eight bytes.
    public static func ownershipKey(of node: PublicKey) -> UInt64 {
        node.bytes.prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// Which positions `me` fetches from seeds, when it shares a download with `others`: those for which its hash
    /// of (key, position) is the smallest. Every downloader computes the same split from the same keys, so a seed
    /// uploads each chunk about once however many fetch at the same time. Requests take time to be answered, and
    /// without this the downloaders kept asking a seed for the same chunks before anyone held them: with sixteen
    /// downloaders on 25 MB/s links the seed uploaded the snapshot 2.6 times.
    public static func ownership(total: Int, me: UInt64, others: [UInt64]) -> [Bool] {
        guard !others.isEmpty else { return [Bool](repeating: true, count: total) }
        return (0..<total).map { position in
            let own = rank(me, position)
            return others.allSatisfy { rank($0, position) > own }
        }
    }

    /// A 64-bit mix (splitmix64's finaliser) of a key and a position.
    public static func rank(_ seed: UInt64, _ position: Int) -> UInt64 {
        var z = seed ^ (UInt64(position) &* 0x9E37_79B9_7F4A_7C15)
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
