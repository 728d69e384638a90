import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingTesting
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import KindlingMesh
@testable import KindlingWire

/// Forwards one TCP connection to a target and records every byte that crosses it, both ways.
final class RecordingProxy: Sendable {
    let server: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>
    let target: Int
    private let recorded = Mutex<[UInt8]>([])

    init(target: Int) async throws {
        self.target = target
        server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
    }

    var port: Int { server.channel.localAddress?.port ?? 0 }
    var bytes: [UInt8] { recorded.withLock { $0 } }

    func run() async throws {
        try await server.executeThenClose { inbound in
            try await withThrowingDiscardingTaskGroup { group in
                for try await client in inbound {
                    group.addTask {
                        let upstream = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                            .connect(host: "127.0.0.1", port: self.target) { channel in
                                channel.eventLoop.makeCompletedFuture {
                                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                                }
                            }
                        try await client.executeThenClose { clientIn, clientOut in
                            try await upstream.executeThenClose { upIn, upOut in
                                try await withThrowingTaskGroup(of: Void.self) { pumps in
                                    pumps.addTask { try await self.pump(clientIn, upOut) }
                                    pumps.addTask { try await self.pump(upIn, clientOut) }
                                    try await pumps.next()
                                    pumps.cancelAll()
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    private func pump(
        _ from: NIOAsyncChannelInboundStream<ByteBuffer>, _ to: NIOAsyncChannelOutboundWriter<ByteBuffer>
    ) async throws {
        for try await buffer in from {
            recorded.withLock { $0.append(contentsOf: buffer.readableBytesView) }
            try await to.write(buffer)
        }
    }
}

@Suite("Mesh: private meshes", .serialized)
struct PrivateMeshTests {
    static let secret = [UInt8](repeating: 7, count: 32)

    /// Runs a fetch from `seed` to a downloader connected through a recording proxy; returns what crossed the wire.
    static func fetchThroughProxy(mesh: MeshIdentity, marker: [UInt8]) async throws -> [UInt8] {
        let seed = try await TestNode(name: "seed", mesh: mesh)
        let proxy = try await RecordingProxy(target: seed.port)
        let downloader = try await TestNode(
            name: "dev", peers: [HostPort(host: "127.0.0.1", port: proxy.port)], mesh: mesh, peerExchange: false)
        let data = TemporaryDirectory("data")
        // Incompressible content with a recognisable marker: zstd stores it nearly verbatim.
        try Fixtures.write(marker + Fixtures.bytes(count: 200_000, seed: 3), to: data.file("tree/secret.bin"))
        let manifest = try await seed.publish(data.file("tree"), commit: "c1")
        return try await withRunningNodes([seed, downloader]) {
            try await withThrowingTaskGroup(of: [UInt8]?.self) { group in
                group.addTask {
                    try await proxy.run()
                    return nil
                }
                group.addTask {
                    try await eventually("the downloader knows the snapshot") {
                        await downloader.catalogContains(manifest.id)
                    }
                    let result = try await downloader.node.fetch(manifest.id)
                    #expect(result.fetchedBytes == manifest.header.fileByteCount)
                    return proxy.bytes
                }
                defer { group.cancelAll() }
                while let value = try await group.next() {
                    if let value { return value }
                }
                return []
            }
        }
    }

    @Test("In a private mesh no byte of a snapshot crosses the wire in the clear; in an open mesh it does")
    func encryption() async throws {
        let marker = Array("KINDLING-PLAINTEXT-MARKER-0123456789-abcdefghijklmnop".utf8)
        let open = try await Self.fetchThroughProxy(mesh: .open(name: "test"), marker: marker)
        #expect(open.firstRange(of: marker) != nil, "control: the open mesh carries the marker in the clear")
        let closed = try await Self.fetchThroughProxy(mesh: .private(secret: Self.secret), marker: marker)
        #expect(closed.count > 200_000)
        #expect(closed.firstRange(of: marker) == nil, "the private mesh leaked plaintext")
        #expect(closed.firstRange(of: Array("demo/ws".utf8)) == nil, "the private mesh leaked the repository name")
    }

    @Test("A node with another secret, or none, cannot join a private mesh")
    func wrongSecretRefused() async throws {
        let member = try await TestNode(name: "member", mesh: .private(secret: Self.secret))
        let friend = try await TestNode(name: "friend", peers: [member.address], mesh: .private(secret: Self.secret))
        let wrongSecret = try await TestNode(
            name: "wrong", peers: [member.address], mesh: .private(secret: [UInt8](repeating: 8, count: 32)))
        let noSecret = try await TestNode(name: "open", peers: [member.address], mesh: .open(name: "test"))
        // Even with the mesh id copied (from a LAN announcement, say), the handshake fails without the secret.
        let impostor = try await TestNode(
            name: "impostor", peers: [member.address],
            mesh: MeshIdentity(
                id: MeshIdentity.private(secret: Self.secret).id, secret: [UInt8](repeating: 9, count: 32)))
        let data = TemporaryDirectory("data")
        let manifest = try await member.publish(try makeTree(data, files: 1, bytesPerFile: 10_000), commit: "c1")
        try await withRunningNodes([member, friend, wrongSecret, noSecret, impostor]) {
            try await eventually("the friend joins and learns the snapshot") {
                await friend.catalogContains(manifest.id)
            }
            try await Task.sleep(for: .seconds(2))
            let connected = await member.node.connectedPeers.map(\.nodeID)
            #expect(connected == [friend.node.nodeID])
            #expect(!(await wrongSecret.catalogContains(manifest.id)))
            #expect(!(await noSecret.catalogContains(manifest.id)))
            #expect(!(await impostor.catalogContains(manifest.id)))
        }
    }
}
