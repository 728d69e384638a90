public import KindlingCrypto
public import KindlingWire
import Synchronization

/// Why a request to a peer did not produce what was asked.
public enum PeerRequestError: Error, Sendable, Equatable {
    case timeout
    case closed
    case notHeld
    case busy
    case cancelled
}

/// A chunk as a peer sent it: compressed bytes, not yet verified.
public struct ChunkReply: Sendable {
    public var compressed: [UInt8]
    public var plainLength: Int
}

/// One frame waiting for the writer, and what to do once it is on the wire (release a serving slot).
struct OutboundItem: Sendable {
    var frame: [UInt8]
    var onWritten: (@Sendable () -> Void)?
    /// Bytes this frame counts against the queue's byte cap (0 for Chunk replies, bounded by serving slots).
    var counted: Int
}

/// One authenticated connection to a peer: its identity, its outbound queue, and the requests in flight.
///
/// The reader task resolves replies, the writer task drains the queue, a watchdog expires requests and idle
/// connections. Everything here is synchronous and lock-protected, so any task (a download, the node actor)
/// can send or request without awaiting the peer.
public final class PeerConnection: Sendable, Hashable, CustomStringConvertible {
    public let identity: PeerIdentity
    public let remoteHost: String
    public let role: HandshakeRole
    public let connectedAt = ContinuousClock.now

    let outbound: AsyncStream<OutboundItem>
    private let queue: AsyncStream<OutboundItem>.Continuation
    private let state = Mutex(State())
    private let maxQueuedFrames: Int
    private let maxQueuedBytes: Int

    struct PendingChunk {
        var continuation: CheckedContinuation<ChunkReply, any Error>
        var chunk: Digest
        var deadline: ContinuousClock.Instant
    }

    struct PendingBody {
        var continuation: CheckedContinuation<[UInt8], any Error>
        var deadline: ContinuousClock.Instant
    }

    struct State {
        var nextRequest: UInt32 = 0
        var chunks: [UInt32: PendingChunk] = [:]
        var bodies: [BodyKey: PendingBody] = [:]
        /// Request numbers of chunk requests being served; cancels are remembered only for these.
        var serving: Set<UInt32> = []
        var cancelledServes: Set<UInt32> = []
        var servingBodies = 0
        var queued = 0
        var queuedBytes = 0
        /// Closed because it let more than the byte cap pile up unread.
        var droppedAsSlow = false
        var bytesUploaded = 0
        var bytesDownloaded = 0
        var lastReceived = ContinuousClock.now
        var lastSent = ContinuousClock.now
        var closed = false
    }

    struct BodyKey: Hashable {
        var manifest: Digest
        var offset: Int
    }

    private let closeChannel: @Sendable () -> Void

    /// What the peer may make us do, per second (Specs/wire.md, "Limits"): read its messages, serve body pieces.
    /// (Its catalog exchanges and announcement look-ups are budgeted by `GossipState`.)
    let messageBudget: TokenBucket
    let bodyBudget: TokenBucket

    init(
        identity: PeerIdentity, remoteHost: String, role: HandshakeRole, maxQueuedFrames: Int = 100_000,
        maxQueuedBytes: Int = 16 << 20, budgets configuration: MeshConfiguration,
        closeChannel: @escaping @Sendable () -> Void
    ) {
        messageBudget = TokenBucket(perSecond: Double(configuration.maxMessagesPerSecondPerPeer))
        bodyBudget = TokenBucket(
            perSecond: configuration.bodyPiecesPerSecond, burst: Double(configuration.bodyPieceBurst))
        self.maxQueuedBytes = maxQueuedBytes
        self.identity = identity
        self.remoteHost = remoteHost
        self.role = role
        self.maxQueuedFrames = maxQueuedFrames
        self.closeChannel = closeChannel
        (outbound, queue) = AsyncStream.makeStream(of: OutboundItem.self)
    }

    public var nodeID: PublicKey { identity.nodeID }
    public var description: String {
        "\(identity.nodeID.text.dropFirst(8).prefix(12))@\(remoteHost):\(identity.listenPort)"
    }

    /// The address others can dial to reach this peer, if it listens.
    public var listenAddress: PeerAddress? {
        identity.listenPort == 0
            ? nil : PeerAddress(nodeID: identity.nodeID, host: remoteHost, port: identity.listenPort)
    }

    public static func == (lhs: PeerConnection, rhs: PeerConnection) -> Bool { lhs === rhs }
    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }

    // MARK: Sending

    /// Queues a message; never waits. A peer that lets its queue grow past the limits (frames, or bytes other
    /// than Chunk replies, which the serving limit bounds) is not reading: it is dropped as a slow consumer.
    public func send(_ message: WireMessage, onWritten: (@Sendable () -> Void)? = nil) {
        let frame = message.encoded()
        let counted: Int
        if case .chunk = message { counted = 0 } else { counted = frame.count }
        let accepted = state.withLock { state -> Bool in
            guard !state.closed else { return false }
            guard state.queued < maxQueuedFrames, state.queuedBytes + counted <= maxQueuedBytes else {
                state.droppedAsSlow = true
                return false
            }
            state.queued += 1
            state.queuedBytes += counted
            state.lastSent = .now
            return true
        }
        guard accepted else {
            onWritten?()
            if !isClosed { close() }
            return
        }
        queue.yield(OutboundItem(frame: frame, onWritten: onWritten, counted: counted))
    }

    func didWrite(_ item: OutboundItem) {
        state.withLock { state in
            state.queued -= 1
            state.queuedBytes -= item.counted
        }
    }

    /// True when the connection was closed because the peer did not read what we queued for it.
    var wasDroppedAsSlow: Bool { state.withLock { $0.droppedAsSlow } }

    /// Bytes queued for the peer (Chunk replies excepted), for tests and status.
    var queuedBytes: Int { state.withLock { $0.queuedBytes } }

    // MARK: Requests

    /// Asks the peer for a chunk. Throws `PeerRequestError` when it times out, is refused, or the peer goes away.
    public func requestChunk(_ id: Digest, timeout: Duration) async throws -> ChunkReply {
        let request = state.withLock { state -> UInt32 in
            state.nextRequest &+= 1
            return state.nextRequest
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<ChunkReply, any Error>) in
                let accepted = state.withLock { state -> Bool in
                    guard !state.closed else { return false }
                    state.chunks[request] = PendingChunk(
                        continuation: continuation, chunk: id, deadline: .now + timeout)
                    return true
                }
                guard accepted else { return continuation.resume(throwing: PeerRequestError.closed) }
                send(.getChunk(request: request, chunk: id))
                if Task.isCancelled { cancelChunkRequest(request) }
            }
        } onCancel: {
            cancelChunkRequest(request)
        }
    }

    /// Withdraws our requests for this chunk (it arrived from another peer: the endgame's duplicate): the waiting
    /// request fails with `.cancelled`, and the peer is told, so a seed does not spend its upload on it.
    public func cancelRequests(forChunk id: Digest) {
        let requests = state.withLock { state in state.chunks.filter { $0.value.chunk == id }.map(\.key) }
        for request in requests { cancelChunkRequest(request) }
    }

    private func cancelChunkRequest(_ request: UInt32) {
        if let pending = state.withLock({ $0.chunks.removeValue(forKey: request) }) {
            pending.continuation.resume(throwing: PeerRequestError.cancelled)
            send(.cancel(request: request))
        }
    }

    /// Asks the peer for a piece of a manifest body.
    public func requestBody(_ manifest: Digest, offset: Int, length: Int, timeout: Duration) async throws -> [UInt8] {
        let key = BodyKey(manifest: manifest, offset: offset)
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[UInt8], any Error>) in
            let accepted = state.withLock { state -> Bool in
                guard !state.closed, state.bodies[key] == nil else { return false }
                state.bodies[key] = PendingBody(continuation: continuation, deadline: .now + timeout)
                return true
            }
            guard accepted else { return continuation.resume(throwing: PeerRequestError.closed) }
            send(.getBody(manifest: manifest, offset: offset, length: length))
        }
    }

    /// Delivers a chunk reply. Returns false when it answers no request of ours (late after a timeout or a
    /// cancel: harmless) and throws when it names another chunk than the one asked for (a lying peer).
    func resolveChunk(request: UInt32, chunk: Digest, reply: ChunkReply) throws(WireError) -> Bool {
        let pending = state.withLock { state -> PendingChunk? in
            state.bytesDownloaded += reply.compressed.count
            return state.chunks.removeValue(forKey: request)
        }
        guard let pending else { return false }
        guard pending.chunk == chunk else {
            pending.continuation.resume(throwing: PeerRequestError.closed)
            throw .unexpectedMessage("chunk reply for another chunk than requested")
        }
        pending.continuation.resume(returning: reply)
        return true
    }

    func resolveNoChunk(request: UInt32, reason: NoChunkReason) {
        if let pending = state.withLock({ $0.chunks.removeValue(forKey: request) }) {
            pending.continuation.resume(throwing: reason == .busy ? PeerRequestError.busy : PeerRequestError.notHeld)
        }
    }

    func resolveBody(manifest: Digest, offset: Int, bytes: [UInt8]) {
        let key = BodyKey(manifest: manifest, offset: offset)
        if let pending = state.withLock({ $0.bodies.removeValue(forKey: key) }) {
            pending.continuation.resume(returning: bytes)
        }
    }

    /// Fails requests whose deadline passed. Called by the watchdog.
    func expireRequests(now: ContinuousClock.Instant) {
        let (chunks, bodies) = state.withLock { state -> ([(UInt32, PendingChunk)], [PendingBody]) in
            let expiredChunks = state.chunks.filter { $0.value.deadline < now }
            for (request, _) in expiredChunks { state.chunks[request] = nil }
            let expiredBodies = state.bodies.filter { $0.value.deadline < now }
            for (key, _) in expiredBodies { state.bodies[key] = nil }
            return (expiredChunks.map { ($0.key, $0.value) }, expiredBodies.map(\.value))
        }
        for (request, pending) in chunks {
            pending.continuation.resume(throwing: PeerRequestError.timeout)
            send(.cancel(request: request))
        }
        for pending in bodies { pending.continuation.resume(throwing: PeerRequestError.timeout) }
    }

    // MARK: Serving

    /// Takes a serving slot for a chunk request; false when the peer already has `limit` requests being served
    /// (or reuses the number of one in progress).
    func beginServing(request: UInt32, limit: Int) -> Bool {
        state.withLock { state in
            guard state.serving.count < limit, !state.serving.contains(request) else { return false }
            state.serving.insert(request)
            return true
        }
    }

    func endServing(request: UInt32, uploaded: Int) {
        state.withLock { state in
            state.serving.remove(request)
            state.cancelledServes.remove(request)
            state.bytesUploaded += uploaded
        }
    }

    /// Remembers a Cancel for a request being served (others are late or bogus and forgotten), so this set never
    /// outgrows the serving limit.
    func markCancelled(_ request: UInt32) {
        state.withLock { state in
            if state.serving.contains(request) { state.cancelledServes.insert(request) }
        }
    }

    /// True (once) when the peer cancelled this request while we were preparing it.
    func takeCancelled(_ request: UInt32) -> Bool {
        state.withLock { $0.cancelledServes.remove(request) != nil }
    }

    /// Takes a slot for serving a body piece; false when `limit` are in progress for this peer.
    func beginServingBody(limit: Int) -> Bool {
        state.withLock { state in
            guard state.servingBodies < limit else { return false }
            state.servingBodies += 1
            return true
        }
    }

    func endServingBody() {
        state.withLock { $0.servingBodies -= 1 }
    }

    // MARK: Health

    func noteReceived() {
        state.withLock { $0.lastReceived = .now }
    }

    var idleTimes: (sinceReceived: Duration, sinceSent: Duration) {
        state.withLock { (.now - $0.lastReceived, .now - $0.lastSent) }
    }

    public var statistics: (uploaded: Int, downloaded: Int, inFlight: Int, serving: Int) {
        state.withLock { ($0.bytesUploaded, $0.bytesDownloaded, $0.chunks.count, $0.serving.count) }
    }

    public var isClosed: Bool { state.withLock { $0.closed } }

    /// Sends a last message (an Error frame saying why) and closes once it is written. In-flight requests fail
    /// now; a peer that does not read gets its socket closed by the watchdog anyway.
    public func closeAfterSending(_ message: WireMessage) {
        send(message, onWritten: { [self] in close() })
        failPendingRequests()
    }

    private func failPendingRequests() {
        let (chunks, bodies) = state.withLock { state -> ([PendingChunk], [PendingBody]) in
            defer {
                state.chunks.removeAll()
                state.bodies.removeAll()
            }
            return (Array(state.chunks.values), Array(state.bodies.values))
        }
        for pending in chunks { pending.continuation.resume(throwing: PeerRequestError.closed) }
        for pending in bodies { pending.continuation.resume(throwing: PeerRequestError.closed) }
    }

    /// Fails everything in flight, ends the writer and closes the socket. Idempotent.
    public func close() {
        let (chunks, bodies) = state.withLock { state -> ([PendingChunk], [PendingBody]) in
            guard !state.closed else { return ([], []) }
            state.closed = true
            defer {
                state.chunks.removeAll()
                state.bodies.removeAll()
            }
            return (Array(state.chunks.values), Array(state.bodies.values))
        }
        for pending in chunks { pending.continuation.resume(throwing: PeerRequestError.closed) }
        for pending in bodies { pending.continuation.resume(throwing: PeerRequestError.closed) }
        queue.finish()
        closeChannel()
    }
}
