import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingSnapshot
import KindlingStore
import KindlingTesting
import KindlingWire
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import KindlingMesh

/// The publisher ("bors") key and trust policy every test node shares.
enum TestTrust {
    static let bors = Fixtures.key(42)
    static let policy = TrustPolicy(trust: Fixtures.trust([("bors", bors)]))
}

/// One in-process node: its own store folder, its own server task.
final class TestNode: Sendable {
    let directory: TemporaryDirectory
    let store: ChunkStore
    let node: MeshNode
    let server: MeshServer
    let listener: MeshServer.Listener
    let pool: NIOThreadPool

    var port: Int { listener.port }
    var address: HostPort { HostPort(host: "127.0.0.1", port: port) }

    init(
        name: String, peers: [HostPort] = [], mesh: MeshIdentity = .open(name: "test"), follow: [String] = [],
        uploadLimit: Int? = nil, handshakeTimeout: Duration = .seconds(2), stallTimeout: Duration = .seconds(20),
        peerExchange: Bool = true, policy: TrustPolicy = TestTrust.policy, key: SigningKey = .generate(),
        lan: LANConfiguration? = nil, configure: (inout MeshConfiguration) -> Void = { _ in }
    ) async throws {
        directory = TemporaryDirectory("node-\(name)")
        store = try ChunkStore(root: directory.file("store"))
        pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        var logger = Logger(label: "kindling.test.\(name)")
        logger.logLevel = ProcessInfo.processInfo.environment["KINDLING_TEST_LOG"] == nil ? .critical : .debug
        var configuration = MeshConfiguration(
            nodeKey: key, mesh: mesh, listen: HostPort(host: "127.0.0.1", port: 0), bootstrapPeers: peers,
            trust: policy, follow: follow.map(RepositoryGlob.init), peerExchange: peerExchange,
            uploadLimit: uploadLimit,
            handshakeTimeout: handshakeTimeout, keepaliveInterval: .seconds(5), idleTimeout: .seconds(15),
            requestTimeout: .seconds(3), stallTimeout: stallTimeout, banDuration: .seconds(600), lan: lan)
        configure(&configuration)
        node = MeshNode(configuration: configuration, store: store, pool: pool, logger: logger)
        server = MeshServer(node: node)
        listener = try await server.bind()
    }

    deinit {
        pool.shutdownGracefully { _ in }
    }

    /// Publishes a directory with the bors key into this node's store and announces it.
    func publish(_ directory: String, repository: String = "demo/ws", commit: String) async throws -> Manifest {
        let (manifest, _) = try Publisher(store: store, key: TestTrust.bors).publish(
            PublishRequest(repository: repository, commit: commit, directory: directory))
        try await node.announceLocal(manifest.id)
        return manifest
    }

    func catalogContains(_ id: Digest) async -> Bool {
        await node.signedHeader(id) != nil
    }
}

/// Runs the nodes' servers for the duration of `body`, then stops them.
func withRunningNodes<R: Sendable>(
    _ nodes: [TestNode], timeout: Duration = .seconds(120), _ body: @escaping @Sendable () async throws -> R
) async throws -> R {
    try await withThrowingTaskGroup(of: R?.self) { group in
        for node in nodes {
            group.addTask {
                try await node.server.run(node.listener)
                return nil
            }
        }
        group.addTask {
            try await Task.sleep(for: timeout)
            throw TestTimeout()
        }
        group.addTask { try await body() }
        defer { group.cancelAll() }
        while let result = try await group.next() {
            if let result { return result }
        }
        throw TestTimeout()
    }
}

struct TestTimeout: Error {}

/// Polls `condition` every 50 ms until it holds or `timeout` passes.
func eventually(
    _ what: String, timeout: Duration = .seconds(30), _ condition: @Sendable () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    Issue.record("timed out waiting for \(what)")
    throw TestTimeout()
}

/// A directory of pseudo-random files to publish.
func makeTree(
    _ directory: TemporaryDirectory, files: Int = 4, bytesPerFile: Int = 1_000_000, seed: UInt64 = 1
) throws -> String {
    let root = directory.file("tree-\(seed)")
    for index in 0..<files {
        try Fixtures.write(
            Fixtures.bytes(count: bytesPerFile, seed: seed &* 1000 &+ UInt64(index)), to: root + "/file\(index).bin")
    }
    return root
}

/// A peer that speaks the real protocol (our wire library) but is under the test's control: it can send forged
/// announcements, garbage frames, or corrupt chunks. Not a mock of a node: an adversary.
final class RogueClient: Sendable {
    let channel: NIOAsyncChannel<[UInt8], [UInt8]>
    let key: SigningKey
    let limit = FrameLimit()

    private init(channel: NIOAsyncChannel<[UInt8], [UInt8]>, key: SigningKey) {
        self.channel = channel
        self.key = key
    }

    /// Opens a raw TCP connection with Kindling framing and no handshake yet.
    static func connect(to port: Int, key: SigningKey = .generate()) async throws -> RogueClient {
        let limit = FrameLimit()
        limit.raiseToMessageLimit(sealed: false)
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(3))
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addKindlingFraming(limit: limit)
                    return try NIOAsyncChannel<[UInt8], [UInt8]>(wrappingChannelSynchronously: channel)
                }
            }
        return RogueClient(channel: channel, key: key)
    }

    /// Runs `body` with the connection; `handshake` first performs an honest open-mesh handshake.
    func run<R: Sendable>(
        handshake: Bool = true, mesh: MeshIdentity = .open(name: "test"), agent: String = "rogue",
        _ body: (inout NIOAsyncChannelInboundStream<[UInt8]>.AsyncIterator, NIOAsyncChannelOutboundWriter<[UInt8]>)
            async throws -> R
    ) async throws -> R {
        try await channel.executeThenClose { inbound, outbound in
            var frames = inbound.makeAsyncIterator()
            if handshake {
                var session = HandshakeSession(
                    role: .initiator,
                    configuration: HandshakeConfiguration(nodeKey: key, mesh: mesh, listenPort: 0, agent: agent))
                try await outbound.write(session.helloFrame())
                guard let hello = try await frames.next(isolation: #isolation) else { throw WireError.connectionClosed }
                _ = try session.receiveHello(frame: hello)
                try await outbound.write(session.authFrame())
                guard let auth = try await frames.next(isolation: #isolation) else { throw WireError.connectionClosed }
                _ = try session.receiveAuth(frame: auth)
            }
            return try await body(&frames, outbound)
        }
    }
}

extension RogueClient {
    /// Closes the connection once `timeout` passes (unless the returned task is cancelled first); the flag says
    /// whether it did.
    func closeAfter(_ timeout: Duration) -> (Flag, Scheduled<Void>) {
        let timedOut = Flag()
        let socket = channel.channel
        let timer = socket.eventLoop.scheduleTask(
            in: TimeAmount.nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000)
        ) {
            timedOut.set()
            socket.close(promise: nil)
        }
        return (timedOut, timer)
    }

    /// Reads frames until the node closes the connection or `timeout` passes (then we close it ourselves).
    /// Returns the decoded messages and whether it was the node that closed.
    func drain(
        _ frames: inout NIOAsyncChannelInboundStream<[UInt8]>.AsyncIterator, timeout: Duration = .seconds(10)
    ) async -> (messages: [WireMessage], closedByNode: Bool) {
        let (timedOut, timer) = closeAfter(timeout)
        defer { timer.cancel() }
        var messages: [WireMessage] = []
        do {
            while let frame = try await frames.next(isolation: #isolation) {
                if let message = try? WireMessage.decode(frame) { messages.append(message) }
            }
        } catch {}
        return (messages, !timedOut.isSet)
    }
}

extension RogueClient {
    /// Plays a seed of `manifest` that misbehaves on chunks: it says it holds the snapshot, serves the body
    /// truthfully, and answers each GetChunk with what `answer` returns (nil: no answer). Runs until the node hangs
    /// up; our own writes failing then is the expected end.
    func actAsSeed(of manifest: Manifest, answer: (_ request: UInt32, _ chunk: Digest) throws -> WireMessage?) async {
        try? await run { frames, outbound in
            try await outbound.write(WireMessage.have(manifest: manifest.id, availability: .complete).encoded())
            while let frame = try await frames.next(isolation: #isolation) {
                switch try WireMessage.decode(frame) {
                case .getBody(let id, let offset, let length)?:
                    let body = manifest.bodyBytes
                    try await outbound.write(
                        WireMessage.body(
                            manifest: id, offset: offset, bytes: Array(body[offset..<min(body.count, offset + length)])
                        ).encoded())
                case .getChunk(let request, let chunk)?:
                    if let reply = try answer(request, chunk) { try await outbound.write(reply.encoded()) }
                default:
                    continue
                }
            }
        }
    }
}

extension RogueClient {
    /// Sends a Ping and reads until its Pong: everything sent before has then been handled by the node. Returns
    /// the messages that arrived meanwhile, or nil when the node closed the connection (or `timeout` passed).
    func roundTrip(
        _ frames: inout NIOAsyncChannelInboundStream<[UInt8]>.AsyncIterator,
        _ outbound: NIOAsyncChannelOutboundWriter<[UInt8]>,
        timeout: Duration = .seconds(10)
    ) async throws -> [WireMessage]? {
        let nonce = UInt64.random(in: 1...UInt64.max)
        try await outbound.write(WireMessage.ping(nonce).encoded())
        let (_, timer) = closeAfter(timeout)
        defer { timer.cancel() }
        var messages: [WireMessage] = []
        do {
            while let frame = try await frames.next(isolation: #isolation) {
                guard let message = try? WireMessage.decode(frame) else { continue }
                if message == .pong(nonce) { return messages }
                messages.append(message)
            }
        } catch {}
        return nil
    }
}

final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .relaxed) }
    var isSet: Bool { value.load(ordering: .relaxed) }
}
