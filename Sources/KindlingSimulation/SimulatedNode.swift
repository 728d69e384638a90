public import KindlingWire

/// A message in flight between two simulated nodes: the real wire message and the bytes it takes on the wire.
/// Chunk replies travel without their bytes (`compressed` is empty); `wireBytes` counts them.
public struct SimulatedMessage: Sendable {
    public var message: WireMessage
    public var wireBytes: Int

    /// Frame length prefix and secretstream tag around every message after the handshake (Specs/wire.md).
    public static let frameOverhead = 4 + WireLimits.sealOverhead

    /// A message whose size is its real encoding.
    public init(_ message: WireMessage) {
        self.message = message
        self.wireBytes = message.encoded().count + Self.frameOverhead
    }

    /// A message whose payload is elided: `extraBytes` stand for it.
    public init(_ message: WireMessage, extraBytes: Int) {
        self.message = message
        self.wireBytes = message.encoded().count + extraBytes + Self.frameOverhead
    }

    /// Chunk and body traffic is the transfer; everything else is gossip.
    public var isGossip: Bool {
        switch message.type {
        case .getChunk, .chunk, .noChunk, .cancel, .getBody, .body: return false
        default: return true
        }
    }
}

/// What a simulated node asks the simulator to do: the shell's side of the mesh state machines' actions.
public enum SimulatedAction: Sendable {
    case send(to: Int, SimulatedMessage)
    /// Open a connection; the node later gets `connected` or `dialFailed`.
    case dial(Int)
    case disconnect(Int)
    /// Call `timerFired(token)` after this long.
    case timer(after: VirtualTime, token: Int)
    /// Metrics: the node now knows snapshot `index` (it is in its catalog) / holds all of it.
    case learned(snapshot: Int)
    case completed(snapshot: Int)
}

/// One node as the simulator drives it. Implementations hold the real mesh state machines and translate; the
/// simulator owns the links, the clock and the metrics. Time is virtual and passed in.
public protocol SimulatedNode {
    /// The node (re)starts: after a churn outage it keeps what it stored, and has no connections.
    mutating func start(now: VirtualTime) -> [SimulatedAction]
    /// Another node dialled us: accept (then `connected` follows on both sides) or refuse.
    mutating func accepts(_ peer: Int, now: VirtualTime) -> Bool
    mutating func connected(_ peer: Int, outbound: Bool, now: VirtualTime) -> [SimulatedAction]
    mutating func dialFailed(_ peer: Int, now: VirtualTime) -> [SimulatedAction]
    mutating func disconnected(_ peer: Int, now: VirtualTime) -> [SimulatedAction]
    mutating func received(_ message: SimulatedMessage, from peer: Int, now: VirtualTime) -> [SimulatedAction]
    /// Also called with token -(peer + 1) when a Chunk reply to `peer` has left this node's uplink.
    mutating func timerFired(_ token: Int, now: VirtualTime) -> [SimulatedAction]
    /// bors only: publish snapshot `index` (its real signed header and chunk layout are the driver's).
    mutating func publish(snapshot index: Int, now: VirtualTime) -> [SimulatedAction]
}
