public import NIOCore
import Synchronization

/// A connection a listener accepted, held until the task that serves it takes it.
///
/// NIO hands accepted connections to the serving task through a buffer that it drops when that task is cancelled,
/// or when the listener has closed by the time a connection's setup completes (swift-nio issues 2637 and 2813).
/// A bare `NIOAsyncChannel` dropped there never reaches `executeThenClose`, and its writer then aborts the process
/// ("Deinited NIOAsyncWriter without calling finish()"): a node stopping while a peer dialled it crashed. Dropped
/// untaken, this box closes the connection instead.
public final class AcceptedConnection<Inbound: Sendable, Outbound: Sendable>: Sendable {
    private let channel: Mutex<NIOAsyncChannel<Inbound, Outbound>?>

    public init(_ channel: NIOAsyncChannel<Inbound, Outbound>) {
        self.channel = Mutex(channel)
    }

    /// The connection, to the first caller only, who must run it through `executeThenClose`.
    public func take() -> NIOAsyncChannel<Inbound, Outbound>? {
        channel.withLock { $0.take() }
    }

    deinit {
        guard let untaken = channel.withLock({ $0.take() }) else { return }
        // Closing finishes the writer (channelInactive, or the handlers' removal if the socket never became
        // active), on the connection's event loop, later: the close future's callback keeps the channel until then.
        let socket = untaken.channel
        socket.close(promise: nil)
        socket.closeFuture.whenComplete { _ in withExtendedLifetime(untaken) {} }
    }
}
