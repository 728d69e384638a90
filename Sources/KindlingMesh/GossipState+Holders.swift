import KindlingCrypto
import KindlingManifest
import KindlingWire

/// What peers hold and who holds what: the bookkeeping behind the messages.
extension GossipState {
    // MARK: Policy

    /// How many chunk positions manifest `id` has: exact with its body, else the header's count of chunk references
    /// (an upper bound, signed by the publisher). Nil when the manifest is not in the catalog.
    func chunkLimit(_ id: Digest) -> Int? {
        if let count = chunkCounts[id] { return count }
        return catalog[id]?.header.chunkReferenceCount
    }

    /// A peer's bitfield over `positions` chunks, without trailing zero bytes; nil when it names a position beyond
    /// them.
    static func validatedBitfield(_ bitfield: [UInt8], positions: Int) -> Bitset? {
        var bytes = bitfield
        while bytes.last == 0 { bytes.removeLast() }
        guard bytes.count <= (positions + 7) / 8 else { return nil }
        if let last = bytes.last, positions % 8 != 0, last >> UInt8(positions % 8) != 0 { return nil }
        return Bitset(bytes: bytes)
    }

    /// Records what a peer holds of a manifest (nil: nothing), within the peer's partial-availability budget.
    /// Partial availability beyond the budget is ignored (the peer then looks as if it held what it said before).
    mutating func setHolding(_ holding: Availability?, of id: Digest, by peer: PublicKey, now: Instant) -> [Action] {
        guard var record = peers[peer] else { return [] }
        let previous = holdings[id]?[peer]
        if case .partial(let old)? = previous {
            record.partialEntries -= 1
            record.partialBytes -= old.bytes.count
        }
        if case .partial(let bits)? = holding {
            guard record.partialEntries < configuration.maxPartialHoldingsPerPeer,
                record.partialBytes + bits.bytes.count <= configuration.maxPartialHoldingBytesPerPeer
            else { return [] }
            record.partialEntries += 1
            record.partialBytes += bits.bytes.count
        }
        if let holding {
            if previous == nil { noteNewHolder(of: id, now: now) }
            holdings[id, default: [:]][peer] = holding
            record.holds.insert(id)
        } else {
            holdings[id]?[peer] = nil
            if holdings[id]?.isEmpty == true { holdings[id] = nil }
            record.holds.remove(id)
        }
        peers[peer] = record
        return [.availabilityChanged]
    }

    /// Records and relays (once) that a node holds a manifest. Only for manifests in our catalog, at most
    /// `maxHoldersPerManifest` live notices each.
    ///
    /// A notice is a hint, never evidence: it may only make us dial an address, whose node then proves its id in
    /// the handshake and its holdings with its own Have. Nothing here strikes, bans or credits anyone, and a notice
    /// is relayed as a Holder notice (the claim it was), never as our own Have. A notice straight from the holder
    /// (its Have complete) is first-hand: it replaces a relayed one for that node, address included, and when the
    /// manifest's notices are full it displaces a relayed one, so relayed notices cannot keep the real holders out.
    mutating func noteHolder(_ notice: HolderNotice, from peer: PublicKey?, now: Instant) -> [Action] {
        guard notice.nodeID != configuration.localNodeID, catalog[notice.manifest] != nil else { return [] }
        let expires = now + configuration.holderNoticeLifetime
        let firstHand = peer == notice.nodeID
        let address = PeerAddress(nodeID: notice.nodeID, host: notice.host, port: notice.port)
        var holders = holderNotices[notice.manifest] ?? [:]
        // Rebuilt only when a notice expired: this runs for every notice heard.
        if holders.values.contains(where: { $0.expires <= now }) { holders = holders.filter { $0.value.expires > now } }
        if let existing = holders[notice.nodeID] {
            guard firstHand else { return [] }
            holders[notice.nodeID] = HolderRecord(address: address, expires: expires, firstHand: true)
            holderNotices[notice.manifest] = holders
            // Relayed once already, unless what was relayed had another address.
            guard existing.address != address else { return [] }
        } else {
            if holders.count >= configuration.maxHoldersPerManifest {
                guard firstHand, let relayed = holders.first(where: { !$0.value.firstHand })?.key else { return [] }
                holders[relayed] = nil
            }
            holders[notice.nodeID] = HolderRecord(address: address, expires: expires, firstHand: firstHand)
            holderNotices[notice.manifest] = holders
        }
        var except: Set<PublicKey> = [notice.nodeID]
        if let peer { except.insert(peer) }
        var actions: [Action] = [.broadcast(.holder(notice), except: except)]
        // Someone we are not connected to holds what we are downloading: worth a connection.
        noteNewHolder(of: notice.manifest, now: now)
        if downloads.contains(notice.manifest) || retries[notice.manifest] != nil, peers[notice.nodeID] == nil {
            actions.append(.dialHolder(address))
        }
        return actions
    }

    /// A Have or HaveChunks for a manifest not in our catalog. Ignored, but the manifest is remembered: a peer's Have
    /// goes out right after the handshake, and the announcement of that manifest may be on its way from another peer
    /// (verified meanwhile) while this peer's Catalog, which would make us ask it for the announcement and so for
    /// its availability again, arrives only after the manifest is known. Forgotten, the peer's holding would stay
    /// unknown for the life of the connection, and a download would never ask it for a chunk.
    mutating func rememberUnknownHave(_ id: Digest, from peer: PublicKey) -> [Action] {
        guard var record = peers[peer], record.unknownHaves.count < Self.maxUnknownHavesPerPeer else { return [] }
        record.unknownHaves.insert(id)
        peers[peer] = record
        return []
    }

    /// `id` joined the catalog: peers that said they held it before we knew it are asked for its announcement, whose
    /// answer repeats their availability.
    mutating func askAgainForAvailability(_ id: Digest) -> [Action] {
        let asked = peers.compactMap { $0.value.unknownHaves.contains(id) ? $0.key : nil }
        for peer in asked { peers[peer]?.unknownHaves.remove(id) }
        return asked.map { .send(.announceRequest(ids: [id]), to: $0) }
    }

    /// Someone new holds (some of) a manifest whose download failed: retry it within a second.
    mutating func noteNewHolder(of id: Digest, now: Instant) {
        guard let state = retries[id] else { return }
        let soon = now + .seconds(1)
        if state.notBefore > soon { retries[id]?.notBefore = soon }
    }

    mutating func takeCatalogBudget(_ peer: PublicKey, now: Instant) -> Bool {
        let (rate, burst) = (configuration.catalogRequestsPerSecond, configuration.catalogRequestBurst)
        return peers[peer]?.catalogBudget.take(1, rate: rate, burst: burst, now: now) == true
    }

    mutating func throttled(_ peer: PublicKey, _ request: String) -> [Action] {
        counters.throttled += 1
        return [.throttled(peer, request: request)]
    }

    /// BLAKE2b-256 over the sorted ids of the catalog: equal digests mean equal catalogs.
    mutating func catalogDigest() -> Digest {
        if let cached = cachedCatalogDigest, cached.count == catalog.count { return cached.digest }
        let digest = Blake2b.hash(catalog.keys.sorted().flatMap(\.bytes))
        cachedCatalogDigest = (catalog.count, digest)
        return digest
    }

    static func notice(_ manifest: Digest, _ address: PeerAddress) -> HolderNotice {
        HolderNotice(manifest: manifest, nodeID: address.nodeID, host: address.host, port: address.port)
    }
}
