public import KindlingCrypto
public import KindlingManifest
public import KindlingWire

/// The trust policy changed, and equivocation: what the catalog may hold.
extension GossipState {
    // MARK: Trust changes

    /// The trust policy changed (a reloaded trust file, a newer trust document). `refused` are the manifests the new
    /// policy refuses, with why (the driver evaluates the catalog and the store against it); `admitted` are stored
    /// manifests it accepts that the catalog lacks (with what we hold of each and its unique chunk count).
    ///
    /// A refused manifest leaves the catalog at once: it is no longer listed, offered, announced or downloaded, and
    /// peers that we told we hold it are told we hold nothing of it. Nobody is struck or banned for it: peers that
    /// still trust the key disagree with us, they do not lie. Peers are asked for their catalog again, so that
    /// snapshots of a key trusted from now on arrive by anti-entropy.
    public mutating func trustChanged(
        refused: [Digest: String], admitted: [(signed: SignedHeader, holding: Availability?, chunks: Int?)],
        now: Instant
    ) -> [Action] {
        var actions: [Action] = []
        var resolved: [BuildIdentity] = []
        // Whatever we refused under the old policy may be welcome under the new one.
        recentlyRefused.removeAll()
        for (id, reason) in refused.sorted(by: { $0.key < $1.key }) {
            guard let signed = catalog.removeValue(forKey: id) else {
                rememberRefused(id)
                continue
            }
            rememberRefused(id)
            if removeFromBuilds(signed) { resolved.append(BuildIdentity(signed.header)) }
            actions.append(.dropped(id, reason: reason))
            if downloads.remove(id) != nil { actions.append(.cancelDownload(id)) }
            retries[id] = nil
            pendingHaves[id] = nil
            chunkCounts[id] = nil
            holderNotices[id] = nil
            if local.removeValue(forKey: id) != nil {
                // "Nothing": an empty bitfield (Specs/wire.md, "Have").
                actions.append(.broadcast(.have(manifest: id, availability: .partial(Bitset())), except: []))
            }
            if let byPeer = holdings.removeValue(forKey: id) {
                for peer in byPeer.keys { forgetHolding(id, of: peer, was: byPeer[peer]) }
            }
        }
        for entry in admitted where catalog[entry.signed.id] == nil {
            let equivocation = insertIntoCatalog(entry.signed)
            if let holding = entry.holding { local[entry.signed.id] = holding }
            if let chunks = entry.chunks { chunkCounts[entry.signed.id] = chunks }
            actions.append(.accepted(entry.signed))
            actions.append(.broadcast(.announce(entry.signed), except: []))
            if let holding = entry.holding {
                actions.append(.broadcast(Self.availability(of: entry.signed.id, holding), except: []))
            }
            if let equivocation { actions += equivocationFound(equivocation) }
        }
        // An equivocation that the new policy settles (it withdrew all manifests of the build but one): the one left
        // is usable again, and fetched if followed.
        for build in resolved {
            guard let ids = builds[build], distinctBodies(ids) == 1, let id = ids.min(), let signed = catalog[id] else {
                continue
            }
            actions.append(.equivocationSettled(build, kept: id))
            if configuration.follow.contains(where: { $0.matches(signed.header.repository) }) {
                actions += downloadRequested(id, now: now)
            }
        }
        cachedCatalogDigest = nil
        if !peers.isEmpty { actions.append(.broadcast(.catalogRequest, except: [])) }
        actions.append(.availabilityChanged)
        return actions
    }

    /// A peer's availability of a manifest that left the catalog: its partial budget is given back.
    private mutating func forgetHolding(_ id: Digest, of peer: PublicKey, was holding: Availability?) {
        guard var record = peers[peer] else { return }
        record.holds.remove(id)
        if case .partial(let bits)? = holding {
            record.partialEntries -= 1
            record.partialBytes -= bits.bytes.count
        }
        peers[peer] = record
    }

    /// Every header of the catalog (for judging it against a new trust policy).
    public var catalogHeaders: [SignedHeader] { Array(catalog.values) }

    // MARK: Refused announcements

    /// A manifest the trust policy refused: its id is not asked for again in catalog exchanges (a peer that trusts
    /// its key lists it in every catalog) until the policy changes. At most `maxRecentlyRefused` are remembered.
    mutating func rememberRefused(_ id: Digest) {
        if recentlyRefused.count >= Self.maxRecentlyRefused { recentlyRefused.removeAll() }
        recentlyRefused.insert(id)
    }

    // MARK: Equivocation

    /// Manifests that are part of an equivocation: in the catalog as evidence, never listed, offered or fetched.
    public func isEquivocal(_ id: Digest) -> Bool {
        // The common case, no equivocation at all, costs no hashing of a build identity.
        guard !equivocalBuilds.isEmpty, let signed = catalog[id] else { return false }
        return distinctBodies(builds[BuildIdentity(signed.header)] ?? []) > 1
    }

    /// How many different builds the manifests `ids` hold: a publish run again over the same tree signs a new
    /// manifest (another creation time) with the same body, which is the same build, not an equivocation.
    func distinctBodies(_ ids: Set<Digest>) -> Int {
        guard ids.count > 1 else { return ids.count }
        return Set(ids.compactMap { catalog[$0]?.header.bodyDigest }).count
    }

    /// Every equivocation in the catalog, sorted by repository, commit, then key.
    public var equivocations: [Equivocation] {
        equivocalBuilds.compactMap { build in
            builds[build].map { Equivocation(build: build, manifests: $0.sorted()) }
        }.sorted(by: Equivocation.order)
    }

    /// Adds a trusted header to the catalog; returns the equivocation it completes, if its build already has
    /// another manifest.
    mutating func insertIntoCatalog(_ signed: SignedHeader) -> Equivocation? {
        catalog[signed.id] = signed
        let build = BuildIdentity(signed.header)
        var ids = builds[build] ?? []
        ids.insert(signed.id)
        builds[build] = ids
        guard distinctBodies(ids) > 1 else { return nil }
        equivocalBuilds.insert(build)
        return Equivocation(build: build, manifests: ids.sorted())
    }

    /// Removes a header that left the catalog from its build; true when that settled an equivocation.
    mutating func removeFromBuilds(_ signed: SignedHeader) -> Bool {
        let build = BuildIdentity(signed.header)
        guard var ids = builds[build] else { return false }
        ids.remove(signed.id)
        builds[build] = ids.isEmpty ? nil : ids
        guard distinctBodies(ids) <= 1 else { return false }
        return equivocalBuilds.remove(build) != nil && !ids.isEmpty
    }

    /// An equivocation was found: its manifests' downloads stop and none of them is fetched from now on.
    mutating func equivocationFound(_ equivocation: Equivocation) -> [Action] {
        var actions: [Action] = [.equivocation(equivocation)]
        for id in equivocation.manifests {
            retries[id] = nil
            if downloads.remove(id) != nil { actions.append(.cancelDownload(id)) }
        }
        return actions
    }
}
