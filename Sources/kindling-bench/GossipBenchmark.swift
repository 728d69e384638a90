import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingMesh
import KindlingSnapshot
import KindlingStore
import Logging
import NIOPosix

/// `kindling-bench gossip`: an in-process mesh of N nodes on loopback, each dialling `degree` random others
/// (peer exchange off, so the topology stays sparse). One node publishes; we time until every node has the
/// announcement and count the messages it took.
@main
struct KindlingBench {
    static func main() async throws {
        let arguments = CommandLine.arguments.dropFirst()
        if arguments.first == "trust" { return try await TrustBenchmark.main(arguments.dropFirst()) }
        guard arguments.first == "gossip" else {
            print("usage: kindling-bench gossip|trust [--nodes N ...] [--degree D]")
            return
        }
        var sizes: [Int] = []
        var degree = 3
        var iterator = arguments.dropFirst().makeIterator()
        while let flag = iterator.next() {
            switch flag {
            case "--nodes": if let value = iterator.next().flatMap(Int.init) { sizes.append(value) }
            case "--degree": degree = iterator.next().flatMap(Int.init) ?? degree
            default: break
            }
        }
        if sizes.isEmpty { sizes = [50, 100, 200] }
        print("nodes  degree  links  time to reach all  announce messages  per node  RSS after (MB)")
        for size in sizes {
            let result = try await run(nodes: size, degree: degree)
            print(
                String(
                    format: "%5d  %6d  %5d  %14.0f ms  %17d  %8.2f  %14.0f", size, degree, result.links,
                    result.seconds * 1000, result.messages, Double(result.messages) / Double(size), residentMegabytes())
            )
        }
    }

    struct Result {
        var seconds: Double
        var messages: Int
        var links: Int
    }

    static func run(nodes count: Int, degree: Int) async throws -> Result {
        let root = NSTemporaryDirectory() + "kindling-gossip-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let bors = SigningKey.generate()
        let policy = TrustPolicy(trust: TrustFile(keys: [TrustedKey(name: "bors", publicKey: bors.publicKey)]))
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        var logger = Logger(label: "kindling.bench")
        logger.logLevel = .critical

        // Each new node dials `degree` random nodes that are already up: a connected, sparse random graph.
        var nodes: [(MeshNode, MeshServer, MeshServer.Listener)] = []
        var links = 0
        for index in 0..<count {
            var targets = Set<Int>()
            while targets.count < min(degree, index) {
                targets.insert(Int.random(in: 0..<index))
            }
            links += targets.count
            let store = try ChunkStore(root: "\(root)/\(index)")
            let configuration = MeshConfiguration(
                nodeKey: .generate(),
                bootstrapPeers: targets.map { HostPort(host: "127.0.0.1", port: nodes[$0].2.port) },
                trust: policy, peerExchange: false, maxPeers: 64)
            let node = MeshNode(configuration: configuration, store: store, pool: pool, logger: logger)
            let server = MeshServer(node: node)
            nodes.append((node, server, try await server.bind()))
        }
        let data = "\(root)/data"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        try Data("hello".utf8).write(to: URL(fileURLWithPath: data + "/file"))
        let publisher = nodes[0]

        let running = nodes
        let totalLinks = links
        let source = publisher.0
        let result = try await withThrowingTaskGroup(of: Result?.self) { group in
            for (_, server, listener) in running {
                group.addTask {
                    try await server.run(listener)
                    return nil
                }
            }
            group.addTask {
                // Wait for the links to come up, then publish and time the spread.
                try await Task.sleep(for: .seconds(Double(count) / 50 + 2))
                // Published only now: had it been in the store at start, anti-entropy would have spread it already.
                let (manifest, _) = try Publisher(store: source.store, key: bors).publish(
                    PublishRequest(repository: "bench/gossip", commit: "c1", directory: data))
                let started = ContinuousClock.now
                try await source.announceLocal(manifest.id)
                while true {
                    var reached = 0
                    for (node, _, _) in running where await node.signedHeader(manifest.id) != nil { reached += 1 }
                    if reached == count { break }
                    if ContinuousClock.now - started > .seconds(60) {
                        print("  only \(reached) of \(count) nodes reached after 60 s (a disconnected topology?)")
                        break
                    }
                    try await Task.sleep(for: .milliseconds(2))
                }
                let elapsed = ContinuousClock.now - started
                var messages = await source.status().peers.count
                for (node, _, _) in running { messages += await node.status().gossip.relayed }
                let parts = elapsed.components
                return Result(
                    seconds: Double(parts.seconds) + Double(parts.attoseconds) / 1e18, messages: messages,
                    links: totalLinks)
            }
            defer { group.cancelAll() }
            while let value = try await group.next() {
                if let value { return value }
            }
            return Result(seconds: 0, messages: 0, links: links)
        }
        try await pool.shutdownGracefully()
        return result
    }

    static func residentMegabytes() -> Double {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kilobytes = line.split(separator: " ").dropFirst().first.flatMap({ Double($0) })
        else { return 0 }
        return kilobytes / 1024
    }
}
