import KindlingManifest
public import NIOCore
import Synchronization

/// The largest frame the decoder accepts right now: small until the handshake completes, so that an
/// unauthenticated peer cannot make us buffer more than a kilobyte. Shared by the decoder and the connection.
///
/// A peer may send full-size frames right after its Auth, in the same read. So the decoder passes on at most
/// `handshakeFrames` frames (Hello, StreamHeader in a private mesh, Auth) under the small limit and then holds
/// the rest of the bytes, undecoded, until the connection has verified the Auth and raised the limit.
public final class FrameLimit: Sendable {
    private let value: Atomic<Int>
    private let raised = Atomic<Bool>(false)
    private let framesPassed = Atomic<Int>(0)
    public let handshakeFrames: Int

    public init(_ initial: Int = WireLimits.maxHandshakeFrameBytes, handshakeFrames: Int = .max) {
        value = Atomic(initial)
        self.handshakeFrames = handshakeFrames
    }

    public var current: Int { value.load(ordering: .acquiring) }
    public var isRaised: Bool { raised.load(ordering: .acquiring) }

    /// True while the handshake frames are out and the Auth is being verified: frames wait, the socket is not read.
    var isHolding: Bool { !isRaised && framesPassed.load(ordering: .relaxed) >= handshakeFrames }

    func notePassed() {
        framesPassed.wrappingAdd(1, ordering: .relaxed)
    }

    /// After authentication: full-size frames (plus the sealing overhead in private meshes). The caller then
    /// re-drives the decoder (`Channel.resumeFrameDecoding`), which may be holding bytes.
    public func raiseToMessageLimit(sealed: Bool) {
        value.store(WireLimits.maxFrameBytes + (sealed ? WireLimits.sealOverhead : 0), ordering: .releasing)
        raised.store(true, ordering: .releasing)
    }
}

extension Channel {
    /// Makes the frame decoder look at bytes it held back while the handshake was being verified, and reading
    /// from the socket go on.
    public func resumeFrameDecoding() {
        pipeline.fireUserInboundEventTriggered(ResumeFrameDecoding())
    }
}

struct ResumeFrameDecoding: Sendable {}

/// First in the pipeline: while the decoder holds frames (`FrameLimit.isHolding`), it withholds reads from the
/// socket, so that what an unauthenticated peer sends piles up in the kernel, not in our memory. On
/// `ResumeFrameDecoding` it re-drives the decoder and the reads.
final class HandshakeReadGate: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let limit: FrameLimit
    private var readPending = false

    init(limit: FrameLimit) {
        self.limit = limit
    }

    func read(context: ChannelHandlerContext) {
        if limit.isHolding {
            readPending = true
        } else {
            context.read()
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is ResumeFrameDecoding else { return context.fireUserInboundEventTriggered(event) }
        // An empty read makes the decoder look at what it holds; read-complete delivers what it decoded.
        context.fireChannelRead(wrapInboundOut(context.channel.allocator.buffer(capacity: 0)))
        context.fireChannelReadComplete()
        if readPending {
            readPending = false
            context.read()
        }
    }
}

/// Splits the byte stream into frames: a 4-byte big-endian length, then that many bytes (Specs/wire.md, "Framing").
/// A length of 0 or above the current limit, or a stream that ends inside a frame, is an error that closes the
/// connection; memory held per connection never exceeds one maximum frame.
public struct FrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = [UInt8]

    private let limit: FrameLimit

    public init(limit: FrameLimit) {
        self.limit = limit
    }

    /// The frame at the front of `buffer` if it is whole and may pass now, else nil (wait for more bytes, or for
    /// the Auth's verdict). The decoder's whole decision, apart from the pipeline, so the fuzzer can drive it fast.
    public func nextFrame(from buffer: inout ByteBuffer) throws(WireError) -> [UInt8]? {
        // The handshake frames are out; the rest waits for the verdict on the peer's Auth.
        if limit.isHolding { return nil }
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        let maximum = limit.current
        guard length > 0, Int(length) <= maximum else {
            throw WireError.frameTooLarge(length: Int(length), limit: maximum)
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        guard let frame = buffer.readBytes(length: Int(length)) else { return nil }
        limit.notePassed()
        return frame
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try nextFrame(from: &buffer) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    public mutating func decodeLast(
        context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool
    ) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        if buffer.readableBytes > 0 {
            throw WireError.endedMidFrame
        }
        return .needMoreData
    }
}

/// Prefixes each outgoing frame with its length.
public struct FrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = [UInt8]

    public init() {}

    public func encode(data: [UInt8], out: inout ByteBuffer) throws {
        out.reserveCapacity(minimumWritableBytes: 4 + data.count)
        out.writeInteger(UInt32(data.count))
        out.writeBytes(data)
    }
}

extension ChannelPipeline.SynchronousOperations {
    /// Adds Kindling's framing to a channel's pipeline.
    public func addKindlingFraming(limit: FrameLimit) throws {
        try addHandler(HandshakeReadGate(limit: limit))
        try addHandler(
            ByteToMessageHandler(FrameDecoder(limit: limit), maximumBufferSize: WireLimits.maxFrameBytes + 4096))
        try addHandler(MessageToByteHandler(FrameEncoder()))
    }
}
