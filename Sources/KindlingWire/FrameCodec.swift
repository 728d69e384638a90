import KindlingManifest
public import NIOCore
import Synchronization

/// The largest frame the decoder accepts right now: small until the handshake completes, so that an
/// unauthenticated peer cannot make us buffer more than a kilobyte. Shared by the decoder and the connection.
public final class FrameLimit: Sendable {
    private let value: Atomic<Int>

    public init(_ initial: Int = WireLimits.maxHandshakeFrameBytes) {
        value = Atomic(initial)
    }

    public var current: Int { value.load(ordering: .acquiring) }

    /// After authentication: full-size frames (plus the sealing overhead in private meshes).
    public func raiseToMessageLimit(sealed: Bool) {
        value.store(WireLimits.maxFrameBytes + (sealed ? WireLimits.sealOverhead : 0), ordering: .releasing)
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

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return .needMoreData }
        let maximum = limit.current
        guard length > 0, Int(length) <= maximum else { throw WireError.frameTooLarge(length: Int(length), limit: maximum) }
        guard buffer.readableBytes >= 4 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 4)
        guard let frame = buffer.readBytes(length: Int(length)) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    public mutating func decodeLast(
        context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool
    ) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        if buffer.readableBytes > 0 {
            throw WireError.malformed(.truncated(field: "frame (connection closed mid-frame)"))
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
        try addHandler(
            ByteToMessageHandler(FrameDecoder(limit: limit), maximumBufferSize: WireLimits.maxFrameBytes + 4096))
        try addHandler(MessageToByteHandler(FrameEncoder()))
    }
}
