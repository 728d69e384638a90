import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingTesting
import KindlingWire
import NIOCore
import NIOPosix
import Testing

@testable import KindlingMesh

/// A raw TCP peer: sends arbitrary bytes, parses whatever frames come back, and notices when the node hangs up.
final class RawPeer: Sendable {
    let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>

    init(port: Int) async throws {
        channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
    }

    static func frame(_ body: [UInt8]) -> [UInt8] {
        withUnsafeBytes(of: UInt32(body.count).bigEndian) { Array($0) } + body
    }

    /// Sends `bytes` (then, optionally, an honest handshake first), and reads until the node closes or `timeout`.
    func exchange(
        handshakeFirst: Bool = false, send bytes: [UInt8], halfClose: Bool = false, timeout: Duration = .seconds(8)
    ) async throws -> (frames: [WireMessage], closedByNode: Bool) {
        try await channel.executeThenClose { inbound, outbound in
            var iterator = inbound.makeAsyncIterator()
            var buffer = ByteBuffer()
            var frames: [WireMessage] = []
            let timedOut = Flag()
            let socket = channel.channel
            let timer = socket.eventLoop.scheduleTask(in: .seconds(Int64(timeout.components.seconds))) {
                timedOut.set()
                socket.close(promise: nil)
            }
            defer { timer.cancel() }

            func nextFrame() async throws -> [UInt8]? {
                while true {
                    if let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self),
                        buffer.readableBytes >= 4 + Int(length)
                    {
                        buffer.moveReaderIndex(forwardBy: 4)
                        return buffer.readBytes(length: Int(length))
                    }
                    guard var more = try await iterator.next(isolation: #isolation) else { return nil }
                    buffer.writeBuffer(&more)
                }
            }

            if handshakeFirst {
                var session = HandshakeSession(
                    role: .initiator,
                    configuration: HandshakeConfiguration(
                        nodeKey: .generate(), mesh: .open(name: "test"), listenPort: 0))
                try await outbound.write(ByteBuffer(bytes: Self.frame(session.helloFrame())))
                guard let hello = try await nextFrame() else { return ([], true) }
                _ = try session.receiveHello(frame: hello)
                try await outbound.write(ByteBuffer(bytes: Self.frame(session.authFrame())))
                guard let auth = try await nextFrame() else { return ([], true) }
                _ = try session.receiveAuth(frame: auth)
            }
            if !bytes.isEmpty { try await outbound.write(ByteBuffer(bytes: bytes)) }
            if halfClose { try? await channel.channel.close(mode: .output) }
            do {
                while let frame = try await nextFrame() {
                    if let message = try? WireMessage.decode(frame) { frames.append(message) }
                }
            } catch {}
            return (frames, !timedOut.isSet)
        }
    }
}

@Suite("Mesh: hostile peers", .serialized)
struct HostilePeerTests {
    /// After each attack, the node must still accept an honest peer and answer it.
    static func assertStillServing(_ node: TestNode) async throws {
        let honest = try await TestNode(name: "honest", peers: [node.address])
        try await withRunningNodes([honest]) {
            try await eventually("an honest peer still connects") { await honest.node.connectedPeers.count == 1 }
        }
    }

    static func errorCodes(_ frames: [WireMessage]) -> [Int] {
        frames.compactMap { if case .error(let code, _) = $0 { code.code } else { nil } }
    }

    @Test("A frame with an absurd length is refused before any of it is buffered, before or after the handshake")
    func absurdLength() async throws {
        let node = try await TestNode(name: "target")
        try await withRunningNodes([node]) {
            // 3 GiB claimed, a few bytes sent: before the handshake the limit is 1 KiB.
            let early = try await RawPeer(port: node.port).exchange(send: [0xc0, 0, 0, 0, 1, 2, 3])
            #expect(early.closedByNode)
            let late = try await RawPeer(port: node.port).exchange(handshakeFirst: true, send: [0x10, 0, 0, 0, 0x11])
            #expect(late.closedByNode)
            try await Self.assertStillServing(node)
        }
    }

    @Test("A truncated frame and a half-closed connection are dropped without harm")
    func truncatedFrame() async throws {
        let node = try await TestNode(name: "target")
        try await withRunningNodes([node]) {
            let result = try await RawPeer(port: node.port).exchange(send: [0, 0, 0, 200, 1, 2, 3], halfClose: true)
            #expect(result.closedByNode)
            let afterHandshake = try await RawPeer(port: node.port).exchange(
                handshakeFirst: true, send: [0, 0, 1, 0, 0x22, 0, 0], halfClose: true)
            #expect(afterHandshake.closedByNode)
            try await Self.assertStillServing(node)
        }
    }

    @Test("An unknown message type closes the connection with a protocol error; an extension type is ignored")
    func unknownMessageType() async throws {
        let node = try await TestNode(name: "target")
        try await withRunningNodes([node]) {
            let unknown = try await RawPeer(port: node.port).exchange(
                handshakeFirst: true, send: RawPeer.frame([0x55, 1, 2, 3]))
            #expect(unknown.closedByNode)
            #expect(Self.errorCodes(unknown.frames).contains(1))
            // An extension frame followed by a ping: the node ignores the first and answers the second.
            let ping = WireMessage.ping(77).encoded()
            let extensionThenPing = try await RawPeer(port: node.port).exchange(
                handshakeFirst: true, send: RawPeer.frame([0x90, 9, 9]) + RawPeer.frame(ping), timeout: .seconds(2))
            #expect(extensionThenPing.frames.contains(.pong(77)))
            #expect(!extensionThenPing.closedByNode)
        }
    }

    @Test("A wrong protocol version is refused with a version error")
    func wrongVersion() async throws {
        let node = try await TestNode(name: "target")
        try await withRunningNodes([node]) {
            let hello = WireMessage.hello(
                Hello(
                    minVersion: 7, maxVersion: 9, meshID: MeshIdentity.open(name: "test").id, isPrivate: false,
                    exchangeKey: [UInt8](repeating: 1, count: 32), challenge: [UInt8](repeating: 2, count: 32)))
            let result = try await RawPeer(port: node.port).exchange(send: RawPeer.frame(hello.encoded()))
            #expect(result.closedByNode)
            #expect(Self.errorCodes(result.frames).contains(2))
            try await Self.assertStillServing(node)
        }
    }

    @Test("A peer that connects and says nothing is disconnected after the handshake timeout")
    func silentPeer() async throws {
        let node = try await TestNode(name: "target", handshakeTimeout: .seconds(1))
        try await withRunningNodes([node]) {
            let started = ContinuousClock.now
            let result = try await RawPeer(port: node.port).exchange(send: [], timeout: .seconds(6))
            #expect(result.closedByNode)
            #expect(ContinuousClock.now - started < .seconds(4))
            // Trickling a Hello one byte at a time does not extend the deadline either.
            let slow = try await RawPeer(port: node.port).exchange(send: [0, 0], timeout: .seconds(6))
            #expect(slow.closedByNode)
        }
    }

    @Test("Garbage instead of a handshake, and a peer of another mesh, are refused")
    func garbageAndForeignMesh() async throws {
        let node = try await TestNode(name: "target")
        try await withRunningNodes([node]) {
            let garbage = try await RawPeer(port: node.port).exchange(
                send: RawPeer.frame(Fixtures.bytes(count: 200, seed: 1)))
            #expect(garbage.closedByNode)
            let foreign = WireMessage.hello(
                Hello(
                    meshID: MeshIdentity.open(name: "elsewhere").id, isPrivate: false,
                    exchangeKey: [UInt8](repeating: 1, count: 32), challenge: [UInt8](repeating: 2, count: 32)))
            let result = try await RawPeer(port: node.port).exchange(send: RawPeer.frame(foreign.encoded()))
            #expect(result.closedByNode)
            #expect(Self.errorCodes(result.frames).contains(3))
            try await Self.assertStillServing(node)
        }
    }
}
