public import KindlingCrypto
public import KindlingManifest
public import KindlingWire

/// Our own snapshots, downloads and their retries, and the periodic work of gossip.
extension GossipState {
    // MARK: Local snapshots and downloads

    /// The store's trusted manifests at startup, with what we hold of each and its unique chunk count (nil without
    /// its body).
    public mutating func catalogLoaded(_ entries: [(signed: SignedHeader, holding: Availability?, chunks: Int?)]) {
        for entry in entries {
            _ = insertIntoCatalog(entry.signed)
            if let holding = entry.holding { local[entry.signed.id] = holding }
            if let chunks = entry.chunks { chunkCounts[entry.signed.id] = chunks }
        }
    }

    /// Downloads that a restart interrupted (wanted in the store) start again, those still in the catalog.
    public mutating func resumeDownloads(_ wanted: [Digest], now: Instant) -> [Action] {
        wanted.filter { catalog[$0] != nil }.flatMap { downloadRequested($0, now: now) }
    }

    /// A snapshot published into our store by the local CLI (already verified): announced if new, and a Have
    /// complete if we hold all of it.
    public mutating func localSnapshotAdded(_ signed: SignedHeader, chunks: Int, complete: Bool) -> [Action] {
        chunkCounts[signed.id] = chunks
        if complete { local[signed.id] = .complete }
        var actions: [Action] = []
        if catalog[signed.id] == nil {
            let equivocation = insertIntoCatalog(signed)
            actions.append(.broadcast(.announce(signed), except: []))
            if let equivocation { actions += equivocationFound(equivocation) }
        }
        if local[signed.id]?.isComplete == true {
            actions.append(.broadcast(.have(manifest: signed.id, availability: .complete), except: []))
        }
        return actions
    }

    /// The store lost chunks of a snapshot we held completely (found by a fetch): it is no longer ours to offer.
    public mutating func localHoldingLost(_ id: Digest) {
        local[id] = nil
    }

    /// A download read the manifest body: its unique chunk count is now exact.
    public mutating func chunkCountKnown(_ id: Digest, count: Int) {
        chunkCounts[id] = count
    }

    /// Starts a download unless one runs (or the node is stopping). Holders we heard of but are not connected to
    /// are worth a connection now.
    public mutating func downloadRequested(_ id: Digest, now: Instant) -> [Action] {
        guard !shuttingDown, catalog[id] != nil, !isEquivocal(id), downloads.insert(id).inserted else { return [] }
        let wanted = liveHolders(id, now: now).filter { peers[$0.nodeID] == nil }
        return wanted.map { .dialHolder($0) } + [.startDownload(id)]
    }

    /// A download ended. A failed one stays wanted (in the store) and is retried: after `downloadRetryBaseDelay`,
    /// doubling up to `downloadRetryMaxDelay`, or sooner when a new holder of it appears.
    public mutating func downloadFinished(_ id: Digest, outcome: DownloadOutcome, now: Instant) -> [Action] {
        guard downloads.remove(id) != nil else { return [] }
        switch outcome {
        case .succeeded:
            retries[id] = nil
            return []
        case .cancelled:
            return []
        case .failed:
            guard !shuttingDown, catalog[id] != nil else { return [] }
            let failures = min((retries[id]?.failures ?? 0) + 1, 30)
            let delay = PeerBook.backoffDelay(
                failures: failures, base: configuration.downloadRetryBaseDelay,
                maximum: configuration.downloadRetryMaxDelay)
            retries[id] = Backoff(failures: failures, notBefore: now + delay)
            return [.retryScheduled(id, attempt: failures, after: delay), .scheduleTimer(at: now + delay)]
        }
    }

    /// A download starts, with the chunks we already had. Peers learn at once that we are downloading, even holding
    /// nothing yet (an empty HaveChunks), so that the seed split counts us from the first request: when downloaders
    /// only showed up once they held a chunk, each asked the seed for everything meanwhile, and four of them
    /// fetching 8 MB made it upload 1.5-1.7 times the snapshot.
    public mutating func chunksPresent(_ id: Digest, positions: [Int], total: Int) -> [Action] {
        var bits = Bitset(capacity: total)
        if case .partial(let existing)? = local[id] { bits = existing }
        for position in positions { bits.insert(position) }
        local[id] = .partial(bits)
        return [.broadcast(Self.availability(of: id, .partial(bits)), except: [])]
    }

    /// Chunks of a download are stored and verified: others may now fetch them from us (batched HaveChunks).
    public mutating func chunksStored(_ id: Digest, positions: [Int], total: Int, now: Instant) -> [Action] {
        var bits: Bitset
        switch local[id] {
        case .complete?: return []
        case .partial(let existing)?: bits = existing
        case nil: bits = Bitset(capacity: total)
        }
        for position in positions { bits.insert(position) }
        local[id] = .partial(bits)
        pendingHaves[id, default: []].append(contentsOf: positions.map(UInt32.init))
        return [.scheduleTimer(at: now + Self.flushInterval)]
    }

    /// Every chunk is stored: tell every peer (each of them relays a holder notice with our address).
    public mutating func snapshotComplete(_ id: Digest) -> [Action] {
        retries[id] = nil
        local[id] = .complete
        pendingHaves[id] = nil
        return [.broadcast(.have(manifest: id, availability: .complete), except: [])]
    }

    /// What the store holds now of manifests we held something of (after a gc): those that changed are advertised
    /// again (a Have with the new bitfield, empty if nothing is left). Manifests being downloaded report their own.
    public mutating func localHoldingsRefreshed(_ fresh: [(id: Digest, holding: Availability?)]) -> [Action] {
        var actions: [Action] = []
        for (id, holding) in fresh where !downloads.contains(id) {
            switch (local[id], holding) {
            case (.complete?, .complete?): continue
            case (.partial(let old)?, .partial(let new)?) where old == new: continue
            default: break
            }
            local[id] = holding
            pendingHaves[id] = nil
            let availability = holding ?? .partial(Bitset())
            actions.append(.broadcast(.have(manifest: id, availability: availability), except: []))
        }
        return actions
    }

    // MARK: Time

    /// Periodic work: pending HaveChunks and holder replays go out; failed downloads whose time has come are
    /// retried; expired holder notices are forgotten. Ends with the next `.scheduleTimer`.
    public mutating func timerFired(now: Instant) -> [Action] {
        var actions = replayHolders(now: now)
        actions += flushHaves()
        if nextRetryCheck.map({ $0 <= now }) ?? true {
            nextRetryCheck = now + Self.retryCheckInterval
            actions += retryDueDownloads(now: now)
        }
        if let due = nextPurge, due <= now {
            for (id, holders) in holderNotices {
                let live = holders.filter { $0.value.expires > now }
                holderNotices[id] = live.isEmpty ? nil : live
            }
        }
        if nextPurge.map({ $0 <= now }) ?? true { nextPurge = now + Self.purgeInterval }
        var next = nextPurge ?? now + Self.purgeInterval
        if let retry = retries.values.map(\.notBefore).min() { next = min(next, retry) }
        if !holderReplay.isEmpty || !pendingHaves.isEmpty { next = min(next, now + Self.flushInterval) }
        actions.append(.scheduleTimer(at: max(next, now + Self.flushInterval)))
        return actions
    }

    mutating func retryDueDownloads(now: Instant) -> [Action] {
        guard !shuttingDown else { return [] }
        var actions: [Action] = []
        for (id, state) in retries where state.notBefore <= now && !downloads.contains(id) {
            guard catalog[id] != nil else {
                retries[id] = nil
                continue
            }
            actions += downloadRequested(id, now: now)
        }
        return actions
    }

    /// Sends batched HaveChunks to peers that do not hold the manifest completely.
    mutating func flushHaves() -> [Action] {
        guard !pendingHaves.isEmpty else { return [] }
        let batches = pendingHaves
        pendingHaves.removeAll()
        var actions: [Action] = []
        let step = WireLimits.maxHaveIndicesPerFrame
        for (id, indices) in batches {
            let frames = stride(from: 0, to: indices.count, by: step).map { start in
                WireMessage.haveChunks(manifest: id, indices: Array(indices[start..<min(indices.count, start + step)]))
            }
            for peer in peers.keys where holdings[id]?[peer] != .complete {
                for frame in frames { actions.append(.send(frame, to: peer)) }
            }
        }
        return actions
    }

    /// Sends newly connected peers the next batch of holder notices.
    mutating func replayHolders(now: Instant) -> [Action] {
        var actions: [Action] = []
        for (peer, pending) in holderReplay {
            guard peers[peer] != nil else {
                holderReplay[peer] = nil
                continue
            }
            var sent = 0
            var remaining = pending
            while let manifest = remaining.last, sent < Self.holderReplayBatch {
                remaining.removeLast()
                for address in liveHolders(manifest, now: now) where address.nodeID != peer {
                    actions.append(.send(.holder(Self.notice(manifest, address)), to: peer))
                    sent += 1
                }
            }
            holderReplay[peer] = remaining.isEmpty ? nil : remaining
        }
        return actions
    }
}
