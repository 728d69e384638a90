import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingMesh
import KindlingSnapshot
import KindlingStore
import KindlingTesting
import KindlingWire
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import KindlingNode

/// A real node in-process: its store in a private temporary folder, the mesh listening on loopback port 0, the
/// control socket at `<store>/node.sock`, exactly as `NodeService` wires them.
final class NodeUnderTest: Sendable {
    static let bors = Fixtures.key(42)
    static let policy = TrustPolicy(trust: Fixtures.trust([("bors", bors)]))

    let directory: TemporaryDirectory
    let store: ChunkStore
    let pool: NIOThreadPool
    let node: MeshNode
    let mesh: MeshServer
    let listener: MeshServer.Listener
    let control: ControlServer
    let controlChannel: ControlServer.Listener

    var client: ControlClient { ControlClient(storeRoot: store.root) }
    var address: HostPort { HostPort(host: "127.0.0.1", port: listener.port) }

    init(_ name: String, peers: [HostPort] = []) async throws {
        directory = TemporaryDirectory("node-\(name)")
        store = try ChunkStore(root: directory.file("store"))
        pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        var logger = Logger(label: "kindling.test.\(name)")
        logger.logLevel = .critical
        let configuration = MeshConfiguration(
            nodeKey: .generate(), mesh: .open(name: "node-tests"), listen: HostPort(host: "127.0.0.1", port: 0),
            bootstrapPeers: peers, trust: Self.policy, follow: [], peerExchange: false)
        node = MeshNode(configuration: configuration, store: store, pool: pool, logger: logger)
        mesh = MeshServer(node: node)
        let listener = try await mesh.bind()
        self.listener = listener
        control = ControlServer(node: node, path: store.root + "/node.sock", logger: logger)
        do {
            controlChannel = try await control.bind()
        } catch {
            await listener.close()
            throw error
        }
    }

    deinit {
        pool.shutdownGracefully { _ in }
    }

    /// Publishes `files` small files with the bors key into this node's store and announces the snapshot.
    func publish(commit: String, repository: String = "demo/ws", files: Int = 3) async throws -> Manifest {
        let tree = directory.file("tree-\(commit)")
        for index in 0..<files {
            try Fixtures.write(
                Fixtures.bytes(count: 300_000, seed: UInt64(index) &+ UInt64(commit.utf8.count) * 100),
                to: tree + "/file\(index).bin")
        }
        let (manifest, _) = try Publisher(store: store, key: Self.bors).publish(
            PublishRequest(repository: repository, commit: commit, directory: tree, cacheKey: ["profile": "dev"]))
        try await node.announceLocal(manifest.id)
        return manifest
    }
}

/// Runs the nodes' mesh and control servers for the duration of `body`, then cancels them.
func withRunning<R: Sendable>(
    _ nodes: [NodeUnderTest], timeout: Duration = .seconds(60), _ body: @escaping @Sendable () async throws -> R
) async throws -> R {
    try await withThrowingTaskGroup(of: R?.self) { group in
        for node in nodes {
            group.addTask {
                try await node.mesh.run(node.listener)
                return nil
            }
            group.addTask {
                await node.control.run(node.controlChannel)
                return nil
            }
        }
        group.addTask {
            try await Task.sleep(for: timeout)
            throw CancellationError()
        }
        group.addTask { try await body() }
        defer { group.cancelAll() }
        while let result = try await group.next() {
            if let result { return result }
        }
        throw CancellationError()
    }
}

/// Runs blocking client I/O on a thread of its own: the control client is plain POSIX and must not hold one of the
/// few cooperative threads the node itself runs on.
func blocking<R: Sendable>(_ work: @escaping @Sendable () throws -> R) async throws -> R {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try work() }) }
    }
}

/// Writes raw bytes to the control socket and reads the reply lines until the node hangs up.
func rawExchange(socket path: String, _ bytes: [UInt8]) throws -> [String] {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    try #require(fd >= 0)
    defer { close(fd) }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        raw.copyBytes(from: Array(path.utf8) + [0])
    }
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
        }
    }
    try #require(connected == 0)
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    var reply: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = read(fd, &buffer, buffer.count)
        if count <= 0 { break }
        reply += buffer[0..<count]
    }
    return String(decoding: reply, as: UTF8.self).split(separator: "\n").map(String.init)
}

@Suite("Control socket: the node's protocol over a real Unix socket", .serialized)
struct ControlSocketTests {
    @Test("Only the node's user may connect: the socket is mode 0600; no socket, no node")
    func socketMode() async throws {
        let node = try await NodeUnderTest("mode")
        var info = stat()
        #expect(stat(node.client.path, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
        let stranger = ControlClient(storeRoot: node.directory.file("elsewhere"))
        #expect(!stranger.isNodeRunning)
        #expect(throws: ControlError.self) { try stranger.send(ControlRequest(op: .status)) }
        try await withRunning([node]) {
            let status = try await blocking { try node.client.send(ControlRequest(op: .status)) }
            #expect(status.event == .result)
            #expect(status.status?.listenPort == node.listener.port)
        }
    }

    @Test("snapshots lists what the node knows, per repository; a name no manifest could carry never reaches it")
    func snapshots() async throws {
        let node = try await NodeUnderTest("list")
        let first = try await node.publish(commit: "c1")
        let other = try await node.publish(commit: "c2", repository: "other/repo")
        try await withRunning([node]) {
            let all = try await blocking { try node.client.send(ControlRequest(op: .snapshots)) }
            #expect(Set(all.snapshots?.map(\.id) ?? []) == [first.id.hex, other.id.hex])
            let demo = try await blocking {
                try node.client.send(ControlRequest(op: .snapshots, repository: try RepositoryName("demo/ws")))
            }
            let listed = try #require(demo.snapshots?.first)
            #expect(demo.snapshots?.count == 1)
            #expect(listed.id == first.id.hex && listed.commit == "c1" && listed.local)
            #expect(listed.cacheKey == ["profile": "dev"])
            // Raw JSON with a repository name the manifest rules refuse: the request does not decode.
            let lines = try await blocking {
                try rawExchange(socket: node.client.path, Array(#"{"op":"snapshots","repository":"../x"}"#.utf8) + [10])
            }
            #expect(lines.count == 1 && lines[0].contains("malformed control request"), "\(lines)")
        }
    }

    @Test("Errors come back as an error event: garbage, a fetch of nothing known, an announce without an id")
    func errors() async throws {
        let node = try await NodeUnderTest("errors")
        try await withRunning([node]) {
            let garbage = try await blocking { try rawExchange(socket: node.client.path, Array("not json\n".utf8)) }
            #expect(garbage.count == 1 && garbage[0].contains("\"error\""), "\(garbage)")
            let unknown = try await blocking {
                try node.client.send(
                    ControlRequest(op: .fetch, repository: try RepositoryName("demo/ws"), commit: "nope"))
            }
            #expect(unknown.event == .error)
            #expect(unknown.message?.contains("no trusted snapshot demo/ws@nope is known") == true, "\(unknown)")
            let announce = try await blocking { try node.client.send(ControlRequest(op: .announce)) }
            #expect(announce.event == .error && announce.message == "announce needs a manifest id")
        }
    }

    @Test("A request line too long, or one that never ends, is hung up on without a reply")
    func oversizedRequest() async throws {
        let node = try await NodeUnderTest("oversized")
        try await withRunning([node]) {
            let huge = [UInt8](repeating: UInt8(ascii: "x"), count: ControlServer.maxRequestBytes + 4096)
            let lines = try await blocking { try rawExchange(socket: node.client.path, huge) }
            #expect(lines.isEmpty, "\(lines)")
        }
    }
}

@Suite("The node as a SnapshotSource", .serialized)
struct NodeSnapshotSourceTests {
    @Test("A running node is found by its store; none is found where no node runs")
    func running() async throws {
        let node = try await NodeUnderTest("running")
        try await withRunning([node]) {
            let found = try await blocking { NodeSnapshotSource.running(storeRoot: node.store.root) != nil }
            #expect(found)
        }
        let empty = TemporaryDirectory("no-node")
        #expect(NodeSnapshotSource.running(storeRoot: empty.path) == nil)
    }

    @Test("Lists the mesh's snapshots and fetches one into the developer's store, with progress")
    func listsAndFetches() async throws {
        let seed = try await NodeUnderTest("seed")
        let manifest = try await seed.publish(commit: "c1", files: 4)
        let developer = try await NodeUnderTest("developer", peers: [seed.address])
        try await withRunning([seed, developer]) {
            let source = NodeSnapshotSource(client: developer.client)
            let repository = try RepositoryName("demo/ws")
            // The developer's node learns of the snapshot by gossip from the seed.
            let deadline = ContinuousClock.now + .seconds(30)
            var listed: [SnapshotCandidate] = []
            while listed.isEmpty && ContinuousClock.now < deadline {
                listed = try await blocking { try source.candidates(of: repository) }
                if listed.isEmpty { try await Task.sleep(for: .milliseconds(100)) }
            }
            let candidate = try #require(listed.first)
            #expect(candidate.id == manifest.id && candidate.commit == "c1" && candidate.repository == repository)
            #expect(candidate.cacheKey == ["profile": "dev"] && candidate.signed == nil, "a node's list is a claim")
            #expect(try await blocking { try source.candidates(of: try RepositoryName("other/repo")) }.isEmpty)

            #expect(try StoreSnapshotSource.completeManifest(manifest.id, in: developer.store) == nil)
            let updates = Counter()
            let transfer = try await blocking {
                try source.makeAvailable(manifest.id, in: developer.store) { done, total in
                    updates.add(done: done, total: total)
                }
            }
            #expect(transfer.fetchedBytes == manifest.header.fileByteCount)
            #expect(transfer.alreadyLocalBytes == 0)
            #expect(transfer.wireBytesBySource.count == 1, "\(transfer.wireBytesBySource)")
            #expect(updates.total == manifest.header.fileByteCount, "progress reported the snapshot's size")
            let stored = try #require(try StoreSnapshotSource.completeManifest(manifest.id, in: developer.store))
            #expect(stored == manifest)
            // Already complete: the store source confirms it without fetching.
            let local = try StoreSnapshotSource(store: developer.store).makeAvailable(
                manifest.id, in: developer.store, progress: nil)
            #expect(local.fetchedBytes == 0 && local.alreadyLocalBytes == manifest.header.fileByteCount)
        }
    }

    @Test("A fetch the node cannot do is an error that says so, not a silent success")
    func fetchFails() async throws {
        let node = try await NodeUnderTest("lonely")
        try await withRunning([node]) {
            let source = NodeSnapshotSource(client: node.client)
            let missing = Digest(bytes: [UInt8](repeating: 7, count: 32))
            let id = try #require(missing)
            let error = await #expect(throws: SnapshotSourceError.self) {
                try await blocking { try source.makeAvailable(id, in: node.store, progress: nil) }
            }
            #expect(error.map { "\($0)" }?.isEmpty == false)
        }
    }
}

/// Progress updates seen, from whichever thread reports them.
final class Counter: Sendable {
    private let state = Mutex<(calls: Int, total: Int)>((0, 0))
    func add(done: Int, total: Int) { state.withLock { $0 = ($0.calls + 1, total) } }
    var total: Int { state.withLock { $0.total } }
}
