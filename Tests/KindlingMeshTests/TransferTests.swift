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

@Suite("Mesh: swarm transfer", .serialized)
struct TransferTests {
    /// Publishes the same tree into several stores as one identical manifest (same key, same creation time).
    static func seed(_ nodes: [TestNode], tree: String, commit: String = "c1") throws -> Manifest {
        var manifest: Manifest?
        for node in nodes {
            let (published, _) = try Publisher(store: node.store, key: TestTrust.bors).publish(
                PublishRequest(
                    repository: "demo/ws", commit: commit, directory: tree, createdAt: 1_767_225_600_000_000_000))
            manifest = published
        }
        guard let manifest else { throw TestTimeout() }
        return manifest
    }

    static func assertRestores(_ manifest: Manifest, from node: TestNode, equalTo tree: String) throws {
        let out = node.directory.file("restored")
        _ = try TreeRestore().restore(manifest, from: node.store, into: out, replace: false)
        for name in try FileManager.default.contentsOfDirectory(atPath: tree) {
            #expect(Fixtures.read(out + "/" + name) == Fixtures.read(tree + "/" + name), "\(name)")
        }
    }

    @Test("Two downloaders fetch from a seed and from each other; every chunk arrives verified")
    func swarm() async throws {
        let seed = try await TestNode(name: "seed", uploadLimit: 8 << 20)
        let first = try await TestNode(name: "dev1", peers: [seed.address])
        let second = try await TestNode(name: "dev2", peers: [seed.address, first.address])
        let data = TemporaryDirectory("data")
        let tree = try makeTree(data, files: 6, bytesPerFile: 1_500_000)
        let manifest = try await seed.publish(tree, commit: "c1")
        try await withRunningNodes([seed, first, second]) {
            try await eventually("both know the snapshot") {
                let a = await first.catalogContains(manifest.id)
                let b = await second.catalogContains(manifest.id)
                return a && b
            }
            async let one = first.node.fetch(manifest.id)
            async let two = second.node.fetch(manifest.id)
            let (a, b) = try await (one, two)
            #expect(a.fetchedBytes == manifest.header.fileByteCount)
            #expect(b.fetchedBytes == manifest.header.fileByteCount)
            // With a slow seed, downloaders trade chunks with each other.
            let fromPeers = [
                a.wireBytesByPeer[second.node.nodeID.text] ?? 0, b.wireBytesByPeer[first.node.nodeID.text] ?? 0,
            ]
            #expect(
                fromPeers.reduce(0, +) > 0,
                "downloaders served each other nothing: \(a.wireBytesByPeer) \(b.wireBytesByPeer)")
            // A second fetch of a complete snapshot transfers nothing.
            let again = try await first.node.fetch(manifest.id)
            #expect(again.fetchedBytes == 0 && again.alreadyLocalBytes == manifest.header.fileByteCount)
        }
        try Self.assertRestores(manifest, from: first, equalTo: tree)
        try Self.assertRestores(manifest, from: second, equalTo: tree)
        #expect(try first.store.verify(repair: false).isHealthy)
    }

    @Test("Four downloaders of one slow seed: the seed uploads the snapshot about once, not four times")
    func seedUploadsAboutOnce() async throws {
        let seed = try await TestNode(name: "seed", uploadLimit: 4 << 20)
        var made: [TestNode] = []
        for index in 0..<4 {
            made.append(try await TestNode(name: "dev\(index)", peers: [seed.address] + made.map(\.address)))
        }
        let downloaders = made
        let data = TemporaryDirectory("data")
        let tree = try makeTree(data, files: 8, bytesPerFile: 1_000_000)
        let manifest = try await seed.publish(tree, commit: "c1")
        try await withRunningNodes([seed] + downloaders) {
            try await eventually("every downloader knows the snapshot and the others") {
                for node in downloaders {
                    guard await node.catalogContains(manifest.id), await node.node.connectedPeers.count == 4 else {
                        return false
                    }
                }
                return true
            }
            let before = await seed.node.status().uploadedBytes
            try await withThrowingTaskGroup(of: FetchResult.self) { group in
                for node in downloaders { group.addTask { try await node.node.fetch(manifest.id) } }
                for try await result in group { #expect(result.fetchedBytes == manifest.header.fileByteCount) }
            }
            let uploaded = await seed.node.status().uploadedBytes - before
            let ratio = Double(uploaded) / Double(manifest.header.fileByteCount)
            // It was 2 to 2.6 before downloaders split who fetches what from the seed, withdrew the endgame's
            // duplicates and stopped queueing requests at the seed deeper than it answers in time; 1.4 to 1.7
            // while a downloader only counted in the split once it held a chunk; 1.06 to 1.22 since.
            #expect(ratio < 1.4, "the seed uploaded \(ratio) times the snapshot")
        }
    }

    @Test("The seed split gives every position to exactly one downloader, the same one on every node")
    func ownershipSplit() {
        let keys = (0..<5).map { Fixtures.key(UInt8(40 + $0)).publicKey }
        let splits = keys.map { me in SwarmDownload.ownership(total: 1000, me: me, others: Set(keys).subtracting([me]))
        }
        for position in 0..<1000 {
            #expect(splits.filter { $0[position] }.count == 1, "position \(position)")
        }
        // Roughly even: no downloader gets more than twice its share.
        for split in splits { #expect(split.filter { $0 }.count < 400) }
        #expect(SwarmDownload.ownership(total: 10, me: keys[0], others: []).allSatisfy { $0 })
    }

    @Test("A peer that serves corrupt chunks is banned and the fetch completes from an honest peer")
    func corruptPeer() async throws {
        let seed = try await TestNode(name: "seed", uploadLimit: 4 << 20)
        let downloader = try await TestNode(name: "dev", peers: [seed.address])
        let data = TemporaryDirectory("data")
        let tree = try makeTree(data, files: 4, bytesPerFile: 1_000_000)
        let manifest = try await seed.publish(tree, commit: "c1")
        try await withRunningNodes([seed, downloader]) {
            try await eventually("downloader knows the snapshot") { await downloader.catalogContains(manifest.id) }
            let liar = try await RogueClient.connect(to: downloader.port)
            let served = Counter()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    await liar.actAsSeed(of: manifest) { request, chunk in
                        // The right length, the wrong bytes.
                        let length = manifest.body.entries.flatMap(\.chunks).first { $0.id == chunk }?.length ?? 1
                        let garbage = Fixtures.bytes(count: length, seed: UInt64(request)).withUnsafeBytes {
                            ZstdCompressor().compress($0)
                        }
                        served.increment()
                        return .chunk(request: request, chunk: chunk, plainLength: length, compressed: garbage)
                    }
                }
                group.addTask {
                    try await eventually("the liar is connected") { await downloader.node.connectedPeers.count == 2 }
                    let result = try await downloader.node.fetch(manifest.id)
                    #expect(result.peersBanned == 1)
                    #expect(result.fetchedBytes == manifest.header.fileByteCount)
                }
                try await group.next()
                try await group.next()
            }
            #expect(served.value > 0, "the liar was never asked for a chunk, so the test proved nothing")
            #expect(await downloader.node.status().bannedPeers == 1)
        }
        try Self.assertRestores(manifest, from: downloader, equalTo: tree)
        #expect(try downloader.store.verify(repair: false).isHealthy)
    }

    @Test("A seed torn down mid-transfer does not stop the fetch: it completes from the other seed")
    func seedKilledMidTransfer() async throws {
        // Each seed's limiter lets a second's worth out at once: the snapshot is three times what both send in
        // that burst, so the fetch cannot be over (from the survivor alone) before the doomed seed is killed.
        let doomed = try await TestNode(name: "doomed", uploadLimit: 2 << 20)
        let survivor = try await TestNode(name: "survivor", uploadLimit: 2 << 20)
        let downloader = try await TestNode(
            name: "dev", peers: [doomed.address, survivor.address], peerExchange: false)
        let data = TemporaryDirectory("data")
        let tree = try makeTree(data, files: 12, bytesPerFile: 1_000_000)
        let manifest = try Self.seed([doomed, survivor], tree: tree)
        let kill = Flag()
        try await withRunningNodes([survivor, downloader]) {
            try await withThrowingTaskGroup(of: FetchResult?.self) { group in
                group.addTask {
                    // The doomed seed runs until the flag is raised, then its task is torn down.
                    await withThrowingTaskGroup(of: Void.self) { inner in
                        inner.addTask { try await doomed.server.run(doomed.listener) }
                        inner.addTask {
                            while !kill.isSet { try await Task.sleep(for: .milliseconds(20)) }
                            throw CancellationError()
                        }
                        try? await inner.next()
                        inner.cancelAll()
                    }
                    return nil
                }
                group.addTask {
                    try await eventually("both seeds connected and known") {
                        let peers = await downloader.node.connectedPeers.count
                        let known = await downloader.catalogContains(manifest.id)
                        return peers == 2 && known
                    }
                    return try await downloader.node.fetch(manifest.id)
                }
                // Kill once the downloader has received something from the doomed seed.
                try await eventually("some bytes from the doomed seed") {
                    await downloader.node.connectedPeers.first { $0.nodeID == doomed.node.nodeID }.map {
                        $0.statistics.downloaded > 500_000
                    } ?? false
                }
                kill.set()
                var fetched: FetchResult?
                while let result = try await group.next() { if let result { fetched = result } }
                let result = try #require(fetched)
                #expect(result.fetchedBytes == manifest.header.fileByteCount)
                #expect((result.wireBytesByPeer[doomed.node.nodeID.text] ?? 0) > 0)
                #expect((result.wireBytesByPeer[survivor.node.nodeID.text] ?? 0) > 0)
            }
        }
        try Self.assertRestores(manifest, from: downloader, equalTo: tree)
    }

    @Test("A fast peer (a LAN cache) serves most of a fetch; a slow one (a distant seed) little")
    func preferFastPeers() async throws {
        let distant = try await TestNode(name: "distant", uploadLimit: 1 << 20)
        let cache = try await TestNode(name: "cache")
        let downloader = try await TestNode(name: "dev", peers: [distant.address, cache.address], peerExchange: false)
        let data = TemporaryDirectory("data")
        let tree = try makeTree(data, files: 8, bytesPerFile: 1_000_000)
        let manifest = try Self.seed([distant, cache], tree: tree)
        try await withRunningNodes([distant, cache, downloader]) {
            try await eventually("both connected") {
                let peers = await downloader.node.connectedPeers.count
                let known = await downloader.catalogContains(manifest.id)
                return peers == 2 && known
            }
            try await Task.sleep(for: .milliseconds(200))
            let result = try await downloader.node.fetch(manifest.id)
            let fromCache = result.wireBytesByPeer[cache.node.nodeID.text] ?? 0
            let fromDistant = result.wireBytesByPeer[distant.node.nodeID.text] ?? 0
            #expect(fromCache > 4 * fromDistant, "cache \(fromCache) bytes, distant seed \(fromDistant) bytes")
        }
    }
}

final class Counter: Sendable {
    private let count = Mutex(0)
    func increment() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}
