import KindlingCrypto
import KindlingStore
import KindlingWire
import Logging
import NIOCore
public import NIOPosix

/// Runs a mesh node: listens, dials, downloads, and keeps gossip flowing, until its task is cancelled.
public struct MeshServer: Sendable {
    public let node: MeshNode
    let group: MultiThreadedEventLoopGroup

    public init(node: MeshNode, group: MultiThreadedEventLoopGroup = .singleton) {
        self.node = node
        self.group = group
    }

    /// Binds the listening socket and returns the bound port; then `run` serves it.
    public func bind() async throws -> Listener {
        let address = node.configuration.listen
        let gate = node.gate
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AcceptGateHandler(gate: gate))
                }
            }
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .bind(host: address.host, port: address.port) { channel in
                let limit = FrameLimit(handshakeFrames: node.configuration.mesh.isPrivate ? 3 : 2)
                return ConnectionRunner.configure(channel, limit: limit).map {
                    (connection: AcceptedConnection($0), limit: limit)
                }
            }
        let port = server.channel.localAddress?.port ?? 0
        await node.setListenPort(UInt16(port))
        return Listener(server: server, port: port)
    }

    public struct Listener: Sendable {
        let server: NIOAsyncChannel<(connection: AcceptedConnection<[UInt8], [UInt8]>, limit: FrameLimit), Never>
        public let port: Int

        /// Closes a listener that will not be run (an async channel must always be closed through NIO).
        public func close() async {
            try? await server.executeThenClose { _ in }
        }
    }

    /// Serves until cancelled, then closes every connection.
    public func run(_ listener: Listener) async throws {
        do {
            try await node.loadFromStore()
        } catch {
            await listener.close()
            throw error
        }
        await withTaskCancellationHandler {
            await withDiscardingTaskGroup { tasks in
                tasks.addTask { await acceptLoop(listener) }
                tasks.addTask { await workLoop() }
                tasks.addTask { await maintenanceLoop() }
                if let lan = node.configuration.lan {
                    tasks.addTask { await LANDiscovery(node: node, configuration: lan).run() }
                }
            }
        } onCancel: {
            listener.server.channel.close(promise: nil)
        }
    }

    private func acceptLoop(_ listener: Listener) async {
        do {
            try await listener.server.executeThenClose { inbound in
                try await withThrowingDiscardingTaskGroup { connections in
                    // A connection left in `inbound` when this loop stops is closed by its AcceptedConnection box.
                    for try await accepted in inbound {
                        connections.addTask {
                            guard let channel = accepted.connection.take() else { return }
                            let limit = accepted.limit
                            await ConnectionRunner(node: node, channel: channel, limit: limit, role: .responder).run()
                        }
                    }
                }
            }
        } catch {
            node.logger.debug("listener closed", metadata: ["error": "\(error)"])
        }
    }

    /// Dials and downloads, each in a task of its own.
    private func workLoop() async {
        await withDiscardingTaskGroup { tasks in
            for await item in node.work {
                switch item {
                case .dial(let address):
                    tasks.addTask { await dial(address) }
                case .download(let id):
                    tasks.addTask {
                        // A task of its own, so that a trust change can stop it (`MeshNode.applyTrust`).
                        let download = Task { try await SwarmDownload(id: id, node: node).run() }
                        await node.downloadStarted(id, cancel: { download.cancel() })
                        let result: Result<FetchResult, any Error>
                        do {
                            let fetched = try await withTaskCancellationHandler {
                                try await download.value
                            } onCancel: {
                                download.cancel()
                            }
                            let store = node.store
                            try? await node.pool.runIfActive { try store.setWanted(id, wanted: false) }
                            result = .success(fetched)
                        } catch {
                            node.logger.warning(
                                "fetch failed", metadata: ["manifest": "\(id.short)", "error": "\(error)"])
                            result = .failure(error)
                        }
                        await node.finishDownload(id, result: result)
                    }
                }
            }
        }
    }

    /// Opens an outgoing connection and runs it to the end.
    func dial(_ address: HostPort) async {
        let limit = FrameLimit(handshakeFrames: node.configuration.mesh.isPrivate ? 3 : 2)
        // A dial takes a descriptor too: none while that would eat into the reserve.
        let gate = node.gate
        guard gate.reserveOutbound() else {
            node.logger.debug("dial skipped: descriptors short", metadata: ["address": "\(address)"])
            await node.dialFinished(address, admitted: false)
            return
        }
        do {
            let channel = try await ClientBootstrap(group: group)
                .connectTimeout(.seconds(5))
                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                .connect(host: address.host, port: address.port) { channel in
                    ConnectionRunner.configure(channel, limit: limit)
                }
            channel.channel.closeFuture.whenComplete { _ in gate.releaseOutbound() }
            // The address stays in `dialing` while the connection runs, so it is not dialled twice.
            let admitted = await ConnectionRunner(node: node, channel: channel, limit: limit, role: .initiator).run()
            await node.dialFinished(address, admitted: admitted)
        } catch {
            gate.releaseOutbound()
            node.logger.debug(
                "dial failed", metadata: ["address": "\(address)", "error": "\(escapedPeerText("\(error)"))"])
            await node.dialFinished(address, admitted: false)
        }
    }

    private func maintenanceLoop() async {
        var tick = 0
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(100))
            tick += 1
            if tick % 10 == 1 { node.gate.recount() }
            // Gossip flushes, dials (bootstrap peers that dropped come back this way, after their backoff), retries,
            // purges and peer exchange: the state machines say what is due.
            await node.tick()
        }
        // Cancelled: close every connection and stop the work loop, so that the task group can finish.
        await node.beginShutdown()
    }
}

/// First on the listener's pipeline: sees each accepted socket before anything is set up for it, and closes those
/// the gate refuses (pre-handshake caps, descriptor reserve) at once.
final class AcceptGateHandler: ChannelInboundHandler {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel
    let gate: ConnectionGate

    init(gate: ConnectionGate) {
        self.gate = gate
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let accepted = unwrapInboundIn(data)
        if gate.admitInbound(accepted) {
            context.fireChannelRead(data)
        } else {
            accepted.close(promise: nil)
        }
    }
}
