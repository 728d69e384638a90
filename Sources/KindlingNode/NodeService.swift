import Foundation
public import KindlingMesh
public import KindlingStore
public import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import UnixSignals

/// `kindling node`: the mesh, the control socket and store upkeep as one service group that stops cleanly on
/// SIGINT or SIGTERM.
public struct NodeService: Sendable {
    public let store: ChunkStore
    public let configuration: MeshConfiguration
    public let maxStoreBytes: Int?
    public let logger: Logger
    /// The trust file `configuration.trust` came from: re-read when it changes and on SIGHUP (nil: never).
    public let trustFile: String?

    public init(
        store: ChunkStore, configuration: MeshConfiguration, maxStoreBytes: Int?, logger: Logger,
        trustFile: String? = nil
    ) {
        self.store = store
        self.configuration = configuration
        self.maxStoreBytes = maxStoreBytes
        self.logger = logger
        self.trustFile = trustFile
    }

    /// Binds everything, calls `ready` with the listening port, and runs until a shutdown signal.
    public func run(ready: @Sendable (Int) -> Void) async throws {
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        do {
            try await run(pool: pool, ready: ready)
        } catch {
            try? await pool.shutdownGracefully()
            throw error
        }
        try? await pool.shutdownGracefully()
    }

    private func run(pool: NIOThreadPool, ready: @Sendable (Int) -> Void) async throws {
        let node = MeshNode(configuration: configuration, store: store, pool: pool, logger: logger)
        let mesh = MeshServer(node: node)
        let listener: MeshServer.Listener
        do {
            listener = try await mesh.bind()
        } catch {
            throw NodeError.cannotListen("cannot listen on \(configuration.listen): \(error)")
        }
        let control = ControlServer(node: node, path: store.root + "/node.sock", logger: logger)
        let controlChannel: ControlServer.Listener
        do {
            controlChannel = try await control.bind()
        } catch {
            await listener.close()
            throw NodeError.cannotListen("cannot open the control socket \(control.path): \(error)")
        }
        // Trapped before the node says it is ready, so a reload right after start never kills it.
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        let watcher = trustFile.map { TrustFileWatcher(path: $0, node: node, logger: logger) }
        ready(listener.port)
        var groupConfiguration = ServiceGroupConfiguration(
            services: [
                .init(service: FunctionService { try await mesh.run(listener) }),
                .init(service: FunctionService { await control.run(controlChannel) }),
                .init(service: FunctionService { await storeUpkeep(node: node) }),
                .init(service: FunctionService { await watchTrust(watcher, hangups: hangups) }),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        // A background service must never hang on SIGTERM: after 10 s, cancel; 5 s later, give up (the store is
        // consistent at every instant, so even that loses nothing).
        groupConfiguration.maximumGracefulShutdownDuration = .seconds(10)
        groupConfiguration.maximumCancellationDuration = .seconds(5)
        let group = ServiceGroup(configuration: groupConfiguration)
        try await group.run()
    }

    /// Re-reads the trust file when it changes and on SIGHUP (Specs/trust.md, "Changes at run time").
    private func watchTrust(_ watcher: TrustFileWatcher?, hangups: UnixSignalsSequence) async {
        await withDiscardingTaskGroup { group in
            if let watcher { group.addTask { await watcher.poll() } }
            group.addTask {
                for await _ in hangups {
                    guard let watcher else {
                        logger.notice("SIGHUP: no trust file to re-read")
                        continue
                    }
                    await watcher.reload(because: "SIGHUP")
                }
            }
        }
    }

    /// Keeps the store under its size cap: gc on the I/O pool, then the node re-advertises what it still holds.
    private func storeUpkeep(node: MeshNode) async {
        guard let maxStoreBytes else {
            try? await Task.sleep(for: .seconds(365 * 86400))
            return
        }
        while !Task.isCancelled {
            do {
                let report = try await node.collectGarbage(maxStoredBytes: maxStoreBytes)
                if report.evictedChunks > 0 {
                    logger.info(
                        "evicted chunks",
                        metadata: ["chunks": "\(report.evictedChunks)", "bytes": "\(report.freedBytes)"])
                }
            } catch {
                logger.warning("store upkeep failed; will try again in a minute", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: .seconds(60))
        }
    }
}

/// A service from a closure; the closure is cancelled on graceful shutdown.
struct FunctionService: Service {
    let body: @Sendable () async throws -> Void

    func run() async throws {
        try await cancelWhenGracefulShutdown { try await body() }
    }
}
