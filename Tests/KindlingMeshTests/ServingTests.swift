import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingSnapshot
import KindlingStore
import KindlingTesting
import KindlingWire
import NIOCore
import Synchronization
import Testing

@testable import KindlingMesh

@Suite("Mesh: serving limits", .serialized)
struct ServingTests {
    @Test("A peer that never reads is disconnected as a slow consumer once the queued bytes pass the cap")
    func slowReaderDisconnected() async throws {
        let target = try await TestNode(name: "target") { $0.maxQueuedBytesPerPeer = 256 << 10 }
        let data = TemporaryDirectory("data")
        // A large header (a 60 KB cache key): each AnnounceRequest for it costs the node 60 KB of queue.
        var cacheKey: [String: String] = [:]
        for index in 0..<60 { cacheKey["key\(index)"] = String(repeating: "v", count: 1000) }
        let (manifest, _) = try Publisher(store: target.store, key: TestTrust.bors).publish(
            PublishRequest(
                repository: "demo/ws", commit: "c1", directory: try makeTree(data, files: 1, bytesPerFile: 1000),
                cacheKey: cacheKey))
        try await target.node.announceLocal(manifest.id)
        #expect(manifest.signed.headerBytes.count > 50_000)
        try await withRunningNodes([target]) {
            let rogue = try await RogueClient.connect(to: target.port)
            try await rogue.run { _, outbound in
                try await eventually("the node admits the reader") { await target.node.connectedPeers.count == 1 }
                // Up to 2000 requests: 120 MB of answers, 4000 frames (far below the frame cap). We never read.
                for _ in 0..<2000 {
                    do {
                        try await outbound.write(WireMessage.announceRequest(ids: [manifest.id]).encoded())
                    } catch {
                        break
                    }
                    if await target.node.status().gossip.slowConsumers > 0 { break }
                }
                try await eventually("the node drops the slow reader") {
                    await target.node.status().gossip.slowConsumers == 1
                }
                try await eventually("and forgets it") { await target.node.connectedPeers.isEmpty }
            }
            try await HostilePeerTests.assertStillServing(target)
        }
    }

    @Test("The pieces of a manifest body are served from one read of it")
    func bodyServedFromOneRead() async throws {
        let seed = try await TestNode(name: "seed")
        // A body of about 1.4 MB (three pieces): 400 files of 100 chunk references each.
        var entries: [ManifestEntry] = []
        for file in 0..<400 {
            let chunks = (0..<100).map { ChunkReference(id: Blake2b.hash(Array("\(file)-\($0)".utf8)), length: 1000) }
            entries.append(.file(path: String(format: "f%05d", file), mode: 0o644, modificationTime: 0, chunks: chunks))
        }
        let manifest = try Manifest.sign(
            repository: "demo/ws", commit: "big-body", createdAt: 1, cacheKey: [:],
            body: ManifestBody(entries: entries), with: TestTrust.bors)
        #expect(manifest.bodyBytes.count > 2 * WireLimits.maxBodyPieceBytes)
        try seed.store.saveManifest(try TestTrust.policy.verify(manifest))
        try await seed.node.announceLocal(manifest.id)
        try await withRunningNodes([seed]) {
            let rogue = try await RogueClient.connect(to: seed.port)
            let body = try await rogue.run { frames, outbound in
                var body: [UInt8] = []
                while body.count < manifest.bodyBytes.count {
                    try await outbound.write(
                        WireMessage.getBody(
                            manifest: manifest.id, offset: body.count, length: WireLimits.maxBodyPieceBytes
                        ).encoded())
                    var piece: [UInt8]?
                    while piece == nil, let frame = try await frames.next(isolation: #isolation) {
                        if case .body(_, let offset, let bytes)? = try WireMessage.decode(frame), offset == body.count {
                            piece = bytes
                        }
                    }
                    guard let piece, !piece.isEmpty else { break }
                    body += piece
                }
                return body
            }
            #expect(body == manifest.bodyBytes)
            #expect(seed.node.bodyCache.loads.load(ordering: .relaxed) == 1, "every piece re-read the whole body")
        }
    }
}

@Suite("Mesh: private meshes, refusals", .serialized)
struct PrivateRefusalTests {
    @Test("In a private mesh, an Error frame that ends a failed handshake after the stream headers is sealed")
    func errorAfterStreamHeaderIsSealed() async throws {
        let secret = [UInt8](repeating: 7, count: 32)
        let mesh = MeshIdentity.private(secret: secret)
        let key = SigningKey.generate()
        let target = try await TestNode(name: "target", mesh: mesh, key: key)
        try await withRunningNodes([target]) {
            // A client with the secret but the target's own node key: the target refuses it as itself (code 7)
            // after the stream headers, so the refusal must come sealed.
            let client = try await RogueClient.connect(to: target.port, key: key)
            let outcome = try await client.run(handshake: false) {
                frames, outbound -> (opened: [WireMessage], clear: [WireMessage]) in
                var session = HandshakeSession(
                    role: .initiator,
                    configuration: HandshakeConfiguration(nodeKey: key, mesh: mesh, listenPort: 0, agent: "test"))
                try await outbound.write(session.helloFrame())
                guard let hello = try await frames.next(isolation: #isolation) else { throw WireError.connectionClosed }
                guard let header = try session.receiveHello(frame: hello) else {
                    throw WireError.unexpectedMessage("no stream header")
                }
                try await outbound.write(header)
                guard let theirs = try await frames.next(isolation: #isolation) else {
                    throw WireError.connectionClosed
                }
                let framing = try session.receiveStreamHeader(frame: theirs)
                try await outbound.write(framing.sealer.seal(session.authFrame()))
                var opened: [WireMessage] = []
                var clear: [WireMessage] = []
                while let frame = try? await frames.next(isolation: #isolation) {
                    if let plain = try? framing.opener.open(frame), let message = try? WireMessage.decode(plain) {
                        opened.append(message)
                    } else if let message = try? WireMessage.decode(frame) {
                        clear.append(message)
                    }
                }
                return (opened, clear)
            }
            #expect(
                outcome.opened.contains { if case .error(.alreadyConnected, _) = $0 { true } else { false } },
                "\(outcome)")
            #expect(outcome.clear.isEmpty, "frames in the clear after the stream headers: \(outcome.clear)")
        }
    }
}

@Suite("Mesh: timeouts and retries", .serialized)
struct RetryTests {
    @Test(
        "A peer that stops answering chunk requests is not asked them again; the fetch completes from another in time"
    )
    func reRequestAfterTimeout() async throws {
        // The seed is fast enough never to time out itself (its queue drains well within a request timeout), and
        // the snapshot large enough that the fetch outlasts a few timeouts of the stalling peer.
        let seed = try await TestNode(name: "seed", uploadLimit: 8 << 20)
        let downloader = try await TestNode(name: "dev", peers: [seed.address], peerExchange: false)
        let data = TemporaryDirectory("data")
        let manifest = try await seed.publish(try makeTree(data, files: 6, bytesPerFile: 4_000_000), commit: "c1")
        let answered = Counter()
        let silentRequests = DigestLog()
        try await withRunningNodes([seed, downloader]) {
            try await eventually("the downloader knows the snapshot") { await downloader.catalogContains(manifest.id) }
            let stalling = try await RogueClient.connect(to: downloader.port)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    // Fast for its first 8 chunks (so the downloader prefers it), then silent: it reads every request
                    // and answers none.
                    await stalling.actAsSeed(of: manifest) { request, chunk in
                        guard answered.value < 8 else {
                            silentRequests.append(chunk)
                            return nil
                        }
                        answered.increment()
                        let (compressed, plainSize) = try seed.store.readVerifiedCompressedChunk(
                            chunk, decompressor: ZstdDecompressor())
                        return .chunk(request: request, chunk: chunk, plainLength: plainSize, compressed: compressed)
                    }
                }
                group.addTask {
                    try await eventually("the stalling peer is known to hold the snapshot") {
                        await downloader.node.holdersSnapshot(manifest.id).holders.contains {
                            $0.0.nodeID == stalling.key.publicKey
                        }
                    }
                    let started = ContinuousClock.now
                    let result = try await downloader.node.fetch(manifest.id)
                    #expect(result.fetchedBytes == manifest.header.fileByteCount)
                    #expect(ContinuousClock.now - started < .seconds(30))
                    #expect(result.retries > 0)
                    // Done: hang up on the stalling peer so that its task ends.
                    for peer in await downloader.node.connectedPeers where peer.nodeID == stalling.key.publicKey {
                        peer.close()
                    }
                }
                try await group.next()
                try await group.next()
            }
            let asked = silentRequests.all
            #expect(answered.value == 8)
            #expect(!asked.isEmpty, "the peer was never asked while silent, so the test proved nothing")
            #expect(
                Set(asked).count == asked.count,
                "a chunk that timed out was asked of the same peer again: \(asked.count) requests, \(Set(asked).count)"
            )
        }
    }
}

extension RetryTests {
    @Test("A follow prefetch that failed (no holder) is retried by itself once a holder appears")
    func failedPrefetchRetried() async throws {
        let data = TemporaryDirectory("data")
        let tree = try makeTree(data, files: 2, bytesPerFile: 500_000)
        // One node holds the manifest and its body but none of its chunks.
        let bodyOnly = try await TestNode(name: "body-only")
        let follower = try await TestNode(
            name: "follower", peers: [bodyOnly.address], follow: ["demo/*"], stallTimeout: .seconds(2)
        ) {
            $0.downloadRetryBaseDelay = .seconds(60)
        }
        // The seed that will come late holds everything.
        let late = try await TestNode(name: "late-seed", peers: [follower.address])
        let manifest = try TransferTests.seed([late], tree: tree)
        try bodyOnly.store.saveManifest(try TestTrust.policy.verify(manifest))
        try await withRunningNodes([bodyOnly, follower]) {
            try await eventually("the follower hears of the snapshot") { await follower.catalogContains(manifest.id) }
            // Nobody holds a chunk: the prefetch stalls, fails, and waits for a retry (60 s away).
            try await eventually("the prefetch fails and is scheduled again") {
                let retrying = await follower.node.stateSizes().downloadRetries == 1
                let running = await follower.node.status().downloads.isEmpty == false
                return retrying && !running
            }
            // A holder appears: the retry comes within seconds, without anyone asking for a fetch.
            try await withRunningNodes([late]) {
                try await eventually("the follower completes the snapshot", timeout: .seconds(20)) {
                    guard let stored = try follower.store.manifest(manifest.id) else { return false }
                    return try follower.store.missingChunks(of: stored).isEmpty
                }
            }
            try await eventually("the download is no longer wanted or scheduled") {
                let retries = await follower.node.stateSizes().downloadRetries
                return try retries == 0 && follower.store.wantedManifests().isEmpty
            }
        }
    }
}

/// Digests seen by a test peer, in order.
final class DigestLog: Sendable {
    private let items = Mutex<[Digest]>([])
    func append(_ digest: Digest) { items.withLock { $0.append(digest) } }
    var all: [Digest] { items.withLock { $0 } }
}

@Suite("Mesh: store upkeep", .serialized)
struct UpkeepTests {
    @Test(
        "After gc evicts a snapshot's chunks, the node stops advertising it as complete and fetches it again when asked"
    )
    func gcUpdatesAdvertisements() async throws {
        let holder = try await TestNode(name: "holder")
        let other = try await TestNode(name: "other-seed", peers: [holder.address], peerExchange: false)
        let watcher = try await TestNode(name: "watcher", peers: [holder.address], peerExchange: false)
        let data = TemporaryDirectory("data")
        let manifest = try TransferTests.seed(
            [holder, other], tree: try makeTree(data, files: 3, bytesPerFile: 400_000))
        try await withRunningNodes([holder, other, watcher]) {
            try await eventually("the watcher sees the holder holding it completely, the holder the other seed") {
                let watched = await watcher.node.holdersSnapshot(manifest.id).holders.contains {
                    $0.0.nodeID == holder.node.nodeID && $0.1 == .complete
                }
                let seen = await holder.node.holdersSnapshot(manifest.id).holders.contains {
                    $0.0.nodeID == other.node.nodeID
                }
                return watched && seen
            }
            #expect(await holder.node.knownSnapshots().first?.local == true)
            // The node's gc (as its store upkeep runs it): nothing pinned or wanted, so everything goes.
            let report = try await holder.node.collectGarbage(maxStoredBytes: 0)
            #expect(report.evictedChunks > 0)
            #expect(await holder.node.knownSnapshots().first?.local == false)
            try await eventually("the watcher no longer counts the holder as a holder") {
                let holders = await watcher.node.holdersSnapshot(manifest.id).holders
                return !holders.contains { $0.0.nodeID == holder.node.nodeID }
            }
            // Asked again, the holder really fetches (from the other seed) instead of answering "already local".
            #expect(
                await holder.node.holdersSnapshot(manifest.id).holders.contains { $0.0.nodeID == other.node.nodeID })
            let result = try await holder.node.fetch(manifest.id)
            #expect(result.fetchedBytes == manifest.header.fileByteCount)
            #expect(try holder.store.missingChunks(of: manifest).isEmpty)
        }
    }
}
