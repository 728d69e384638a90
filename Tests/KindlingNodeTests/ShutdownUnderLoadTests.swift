import Foundation
import KindlingMesh
import KindlingTesting
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import KindlingNode

/// A node stopping while connections keep arriving. NIO hands accepted connections to the serving task through a
/// buffer that it drops when that task is cancelled or the listener closes; a connection dropped there used to
/// abort the whole process ("Deinited NIOAsyncWriter without calling finish()"), losing the node's in-flight state.
@Suite("Shutdown under load: a node stops cleanly while connections arrive", .serialized)
struct ShutdownUnderLoadTests {
    static let rounds = 5
    static let dialsPerRound = 40

    @Test("200 dials to the mesh port and the control socket across five shutdowns: no crash, each stop is prompt")
    func stopsWhileDialled() async throws {
        let client = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        for round in 0..<Self.rounds {
            let node = try await NodeUnderTest("shutdown-\(round)")
            let mesh = HostPort(host: "127.0.0.1", port: node.listener.port)
            let servers = Task {
                await withTaskGroup(of: Void.self) { group in
                    group.addTask { try? await node.mesh.run(node.listener) }
                    group.addTask { await node.control.run(node.controlChannel) }
                }
            }
            // Let the servers start accepting, then dial in bursts and stop them while the dials are in flight, so
            // that some are accepted and queued for a serving task that is being cancelled.
            try await Task.sleep(for: .milliseconds(50))
            var dials: [EventLoopFuture<any Channel>] = []
            for index in 0..<Self.dialsPerRound {
                dials.append(
                    index % 2 == 0
                        ? client.connect(host: mesh.host, port: mesh.port)
                        : client.connect(unixDomainSocketPath: node.client.path))
                if index == Self.dialsPerRound / 2 { servers.cancel() }
            }
            let started = ContinuousClock.now
            await servers.value
            let stopped = ContinuousClock.now - started
            #expect(stopped < .seconds(10), "round \(round): the servers took \(stopped) to stop")
            for dial in dials {
                if let channel = try? await dial.get() { try? await channel.close() }
            }
            // Stopped means stopped: the mesh port accepts no one any more.
            await #expect(throws: (any Error).self) {
                let late = try await client.connect(host: mesh.host, port: mesh.port).get()
                try? await late.close()
            }
        }
    }
}
