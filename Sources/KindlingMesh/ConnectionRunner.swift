import KindlingCrypto
import KindlingManifest
import KindlingStore
import KindlingWire
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Runs one TCP connection from the first byte to the last: handshake, then the reader, writer and watchdog.
struct ConnectionRunner {
    let node: MeshNode
    let channel: NIOAsyncChannel<[UInt8], [UInt8]>
    let limit: FrameLimit
    let role: HandshakeRole

    private var configuration: MeshConfiguration { node.configuration }

    /// The pipeline every Kindling TCP connection gets.
    static func configure(
        _ channel: any Channel, limit: FrameLimit
    ) -> EventLoopFuture<NIOAsyncChannel<[UInt8], [UInt8]>> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addKindlingFraming(limit: limit)
            return try NIOAsyncChannel<[UInt8], [UInt8]>(wrappingChannelSynchronously: channel)
        }
    }

    /// Runs the connection to its end; returns whether the peer was authenticated and admitted.
    @discardableResult
    func run() async -> Bool {
        let remote = channel.channel.remoteAddress?.ipAddress ?? "?"
        var admitted = false
        do {
            try await channel.executeThenClose { inbound, outbound in
                var frames = inbound.makeAsyncIterator()
                // An unauthenticated peer gets a fixed time to complete the handshake, then the channel is closed.
                let deadline = channel.channel.eventLoop.scheduleTask(in: TimeAmount(configuration.handshakeTimeout)) {
                    channel.channel.close(promise: nil)
                }
                let established: (PeerIdentity, SecureFraming?)
                /// Set once our StreamHeader is on its way: from then on every frame we send is sealed (wire.md §1).
                var keyedSealer: FrameSealer?
                do {
                    established = try await handshake(&frames, outbound, keyedSealer: &keyedSealer)
                    deadline.cancel()
                } catch {
                    deadline.cancel()
                    let wireError = (error as? WireError) ?? .timeout("the handshake")
                    node.logger.info(
                        "handshake failed",
                        metadata: ["remote": "\(remote)", "error": "\(escapedPeerText("\(wireError)"))"])
                    try? await outbound.write(
                        seal(
                            WireMessage.error(code: wireError.code, message: wireError.description).encoded(),
                            keyedSealer))
                    return
                }
                let (identity, framing) = established
                // Authenticated: from now on the peer slots bound this socket, not the pre-handshake caps.
                if role == .responder { node.gate.handshakeCompleted(channel.channel) }
                limit.raiseToMessageLimit(sealed: framing != nil)
                channel.channel.resumeFrameDecoding()
                let socket = channel.channel
                let peer = PeerConnection(
                    identity: identity, remoteHost: remote, role: role,
                    maxQueuedBytes: configuration.maxQueuedBytesPerPeer,
                    budgets: configuration, closeChannel: { socket.close(promise: nil) })
                if let refusal = await node.admit(peer) {
                    try? await outbound.write(
                        seal(
                            WireMessage.error(code: refusal.code, message: refusal.description).encoded(),
                            framing?.sealer))
                    return
                }
                admitted = true
                defer { peer.close() }
                await serve(peer: peer, frames: &frames, outbound: outbound, framing: framing)
                if peer.wasDroppedAsSlow {
                    node.logger.warning(
                        "peer does not read what we send it: disconnected as a slow consumer",
                        metadata: ["peer": "\(peer)", "limit": "\(configuration.maxQueuedBytesPerPeer) bytes queued"])
                    await node.noteSlowConsumer()
                }
                await node.remove(peer)
            }
        } catch {
            node.logger.debug(
                "connection ended", metadata: ["remote": "\(remote)", "error": "\(escapedPeerText("\(error)"))"])
        }
        return admitted
    }

    // MARK: Handshake

    private func handshake(
        _ frames: inout NIOAsyncChannelInboundStream<[UInt8]>.AsyncIterator,
        _ outbound: NIOAsyncChannelOutboundWriter<[UInt8]>,
        keyedSealer: inout FrameSealer?
    ) async throws -> (PeerIdentity, SecureFraming?) {
        var session = HandshakeSession(
            role: role,
            configuration: HandshakeConfiguration(
                nodeKey: configuration.nodeKey, mesh: configuration.mesh, listenPort: await node.listenPort,
                agent: configuration.agent))
        try await outbound.write(session.helloFrame())
        let streamHeader = try session.receiveHello(frame: try await next(&frames, expecting: "hello"))
        var framing: SecureFraming?
        if let streamHeader {
            keyedSealer = session.streamSealer
            try await outbound.write(streamHeader)
            framing = try session.receiveStreamHeader(frame: try await next(&frames, expecting: "stream header"))
        }
        try await outbound.write(seal(session.authFrame(), framing?.sealer))
        let authFrame = try open(try await next(&frames, expecting: "auth"), framing?.opener)
        let identity = try session.receiveAuth(frame: authFrame)
        if await node.isBanned(identity.nodeID) { throw WireError.closedByPeer(code: .banned, message: "banned") }
        return (identity, framing)
    }

    private func next(
        _ frames: inout NIOAsyncChannelInboundStream<[UInt8]>.AsyncIterator, expecting what: String
    ) async throws -> [UInt8] {
        guard let frame = try await frames.next(isolation: #isolation) else { throw WireError.timeout(what) }
        // A peer that refuses us says why in an Error frame.
        if frame.first == MessageType.error.rawValue,
            case .error(let code, let message)? = try? WireMessage.decode(frame)
        {
            throw WireError.closedByPeer(code: code, message: message)
        }
        return frame
    }

    // MARK: After the handshake

    private func serve(
        peer: PeerConnection, frames: inout NIOAsyncChannelInboundStream<[UInt8]>.AsyncIterator,
        outbound: NIOAsyncChannelOutboundWriter<[UInt8]>, framing: SecureFraming?
    ) async {
        let sealer = framing?.sealer
        let opener = framing?.opener
        await withTaskGroup(of: Void.self) { group in
            // Writer: the only task that touches the outbound side, so sealing order is the wire order.
            group.addTask {
                for await item in peer.outbound {
                    do {
                        try await outbound.write(seal(item.frame, sealer))
                    } catch {
                        peer.close()
                    }
                    peer.didWrite(item)
                    item.onWritten?()
                }
            }
            // Watchdog: expires requests, pings a quiet peer, drops a silent one.
            group.addTask {
                while !peer.isClosed {
                    try? await Task.sleep(for: .milliseconds(250))
                    peer.expireRequests(now: .now)
                    let idle = peer.idleTimes
                    if idle.sinceReceived > configuration.idleTimeout {
                        node.logger.info("peer idle, closing", metadata: ["peer": "\(peer)"])
                        peer.close()
                        channel.channel.close(promise: nil)
                    } else if idle.sinceSent > configuration.keepaliveInterval {
                        peer.send(.ping(UInt64.random(in: 0...UInt64.max)))
                    }
                }
            }
            // Reader.
            do {
                while let raw = try await frames.next(isolation: #isolation) {
                    // A peer gets at most its message budget of our time: past it we read it more slowly, and TCP
                    // makes it wait too.
                    await peer.messageBudget.take(1)
                    peer.noteReceived()
                    let bytes = try open(raw, opener)
                    guard let message = try WireMessage.decode(bytes) else { continue }
                    try await dispatch(message, from: peer, group: &group)
                }
                peer.close()
            } catch {
                let wireError = error as? WireError
                if let wireError, case .closedByPeer = wireError {
                    node.logger.info(
                        "peer closed the connection",
                        metadata: ["peer": "\(peer)", "reason": "\(escapedPeerText("\(wireError)"))"])
                    peer.close()
                } else if let wireError, wireError.isOffence {
                    // Garbage after the handshake, or a reply naming another chunk than asked: a ban (Specs/wire.md,
                    // "Transfers"). The Error frame says why; the timer hangs up if the peer does not read it.
                    await node.ban(peer, reason: "protocol error: \(wireError)", code: wireError.code)
                    channel.channel.eventLoop.scheduleTask(in: .seconds(2)) { peer.close() }
                } else if let wireError {
                    node.logger.info(
                        "connection broken, disconnecting", metadata: ["peer": "\(peer)", "error": "\(wireError)"])
                    peer.closeAfterSending(.error(code: wireError.code, message: wireError.description))
                    channel.channel.eventLoop.scheduleTask(in: .seconds(2)) { peer.close() }
                } else {
                    peer.close()
                }
            }
            // The writer ends once the queue is closed; the watchdog once the peer is closed.
            await group.waitForAll()
        }
    }

    private func dispatch(_ message: WireMessage, from peer: PeerConnection, group: inout TaskGroup<Void>) async throws
    {
        switch message {
        case .chunk(let request, let chunk, let plainLength, let compressed):
            _ = try peer.resolveChunk(
                request: request, chunk: chunk, reply: ChunkReply(compressed: compressed, plainLength: plainLength))
        case .noChunk(let request, _, let reason):
            peer.resolveNoChunk(request: request, reason: reason)
        case .body(let manifest, let offset, let bytes):
            peer.resolveBody(manifest: manifest, offset: offset, bytes: bytes)
        case .getChunk(let request, let chunk):
            guard node.servingTotal.acquire(limit: configuration.maxServingTotal) else {
                peer.send(.noChunk(request: request, chunk: chunk, reason: .busy))
                return
            }
            guard peer.beginServing(request: request, limit: configuration.maxServingPerPeer) else {
                node.servingTotal.release()
                peer.send(.noChunk(request: request, chunk: chunk, reason: .busy))
                return
            }
            let node = self.node
            group.addTask { await Self.serveChunk(request: request, chunk: chunk, to: peer, node: node) }
        case .getBody(let manifest, let offset, let length):
            let node = self.node
            group.addTask {
                await Self.serveBody(manifest: manifest, offset: offset, length: length, to: peer, node: node)
            }
        case .cancel(let request):
            peer.markCancelled(request)
        case .ping(let nonce):
            peer.send(.pong(nonce))
        case .pong:
            break
        case .error(let code, let text):
            throw WireError.closedByPeer(code: code, message: text)
        case .hello, .streamHeader, .auth:
            throw WireError.unexpectedMessage("handshake message after the handshake")
        case .announce, .have, .haveChunks, .holder, .catalogDigest, .catalogRequest, .catalog, .announceRequest,
            .getPeers, .peers, .trustVersion, .getTrust, .trustDocument, .headRecord:
            await node.handle(message, from: peer)
        }
    }

    /// Serves a chunk: read and re-verified from the store on the I/O pool (invariant 2), rate limited, queued.
    private static func serveChunk(request: UInt32, chunk: Digest, to peer: PeerConnection, node: MeshNode) async {
        let store = node.store
        let decompressors = node.decompressors
        // A chunk verified a moment ago (just received, or just served) is still in memory, checked: no hop to the
        // pool. Others are read, decompressed and re-hashed on the I/O pool, off Swift's cooperative threads.
        let read: (compressed: [UInt8], plainSize: Int)?
        if node.withheldChunks.contains(chunk) {
            // Only a manifest the trust policy dropped has it: not ours to offer any more (until gc removes it).
            read = nil
        } else if let cached = store.cachedVerifiedChunk(chunk) {
            read = cached
        } else {
            read = try? await node.pool.runIfActive {
                try decompressors.with { try store.readVerifiedCompressedChunk(chunk, decompressor: $0) }
            }
        }
        guard let (compressed, plainSize) = read, !peer.takeCancelled(request) else {
            if read == nil { peer.send(.noChunk(request: request, chunk: chunk, reason: .notHeld)) }
            peer.endServing(request: request, uploaded: 0)
            node.servingTotal.release()
            return
        }
        await node.uploadLimiter?.take(compressed.count)
        peer.send(
            .chunk(request: request, chunk: chunk, plainLength: plainSize, compressed: compressed),
            onWritten: {
                peer.endServing(request: request, uploaded: compressed.count)
                node.servingTotal.release()
            })
    }

    /// Serves a piece of a manifest body: at most `maxBodyServesPerPeer` at once per peer (more get an empty
    /// Body: "not now"), from the node's cache of the last body served, so that the pieces of one body cost one
    /// read of it, not one each.
    private static func serveBody(
        manifest: Digest, offset: Int, length: Int, to peer: PeerConnection, node: MeshNode
    ) async {
        // Each piece may cost a read of the whole body: a peer gets a burst of pieces, then a few per second.
        guard peer.bodyBudget.tryTake() else {
            await node.noteThrottledBody(from: peer)
            peer.send(.body(manifest: manifest, offset: offset, bytes: []))
            return
        }
        guard peer.beginServingBody(limit: node.configuration.maxBodyServesPerPeer) else {
            peer.send(.body(manifest: manifest, offset: offset, bytes: []))
            return
        }
        // Only bodies of manifests the trust gate accepts now are served (a revoked key's are not).
        guard await node.signedHeader(manifest) != nil, let body = await node.bodyCache.body(of: manifest, node: node),
            offset < body.count
        else {
            peer.send(.body(manifest: manifest, offset: offset, bytes: []))
            peer.endServingBody()
            return
        }
        let piece = Array(body[offset..<min(body.count, offset + length)])
        await node.uploadLimiter?.take(piece.count)
        peer.send(.body(manifest: manifest, offset: offset, bytes: piece), onWritten: { peer.endServingBody() })
    }
}

/// The manifest body served last, kept for the next pieces of it, and a bound on bodies being loaded at once.
final class BodyCache: Sendable {
    private let cached = Mutex<(id: Digest, bytes: [UInt8])?>(nil)
    private let loading = ServingGauge()
    /// Bodies read from the store since the node started (tests check that pieces share one read).
    let loads = Atomic<Int>(0)
    static let maxConcurrentLoads = 2

    /// The body from the cache, or read from the store on the I/O pool (nil when the store lacks it, or when
    /// `maxConcurrentLoads` reads are running: the requester then asks again or asks another peer).
    func body(of id: Digest, node: MeshNode) async -> [UInt8]? {
        if let hit = cached.withLock({ $0?.id == id ? $0?.bytes : nil }) { return hit }
        guard loading.acquire(limit: Self.maxConcurrentLoads) else { return nil }
        defer { loading.release() }
        let store = node.store
        loads.wrappingAdd(1, ordering: .relaxed)
        guard let bytes = try? await node.pool.runIfActive({ try store.manifest(id)?.bodyBytes }) else { return nil }
        cached.withLock { $0 = (id, bytes) }
        return bytes
    }
}

private func seal(_ frame: [UInt8], _ sealer: FrameSealer?) -> [UInt8] {
    sealer?.seal(frame) ?? frame
}

private func open(_ frame: [UInt8], _ opener: FrameOpener?) throws(WireError) -> [UInt8] {
    guard let opener else { return frame }
    return try opener.open(frame)
}

extension TimeAmount {
    init(_ duration: Duration) {
        let parts = duration.components
        self = .nanoseconds(parts.seconds * 1_000_000_000 + parts.attoseconds / 1_000_000_000)
    }
}
