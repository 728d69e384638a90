import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingMesh
import KindlingStore
import Logging
import NIOPosix

/// `kindling-bench trust`: an in-process mesh of N nodes with trust roots on loopback, each dialling `degree`
/// random others (peer exchange off). A trust document is published on one node; we time until every node has
/// verified, persisted and applied it (issue 12: "every node within 10 s on loopback"), for a first document and
/// for the next version.
enum TrustBenchmark {
    static func main(_ arguments: ArraySlice<String>) async throws {
        var sizes: [Int] = []
        var degree = 3
        var iterator = arguments.makeIterator()
        while let flag = iterator.next() {
            switch flag {
            case "--nodes": if let value = iterator.next().flatMap(Int.init) { sizes.append(value) }
            case "--degree": degree = iterator.next().flatMap(Int.init) ?? degree
            default: break
            }
        }
        if sizes.isEmpty { sizes = [50] }
        print("nodes  degree  links  v1 applied by all  v2 applied by all")
        for size in sizes {
            let (links, first, second) = try await run(nodes: size, degree: degree)
            print(
                String(format: "%5d  %6d  %5d  %14.0f ms  %14.0f ms", size, degree, links, first * 1000, second * 1000))
        }
    }

    static func run(nodes count: Int, degree: Int) async throws -> (Int, Double, Double) {
        let root = NSTemporaryDirectory() + "kindling-trust-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let rootKeys = [SigningKey.generate(), SigningKey.generate(), SigningKey.generate()]
        let roots = try TrustRoots(keys: rootKeys.map(\.publicKey), threshold: 2)
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        var logger = Logger(label: "kindling.bench")
        logger.logLevel = .critical
        var nodes: [(MeshNode, MeshServer, MeshServer.Listener)] = []
        var links = 0
        for index in 0..<count {
            var targets = Set<Int>()
            while targets.count < min(degree, index) { targets.insert(Int.random(in: 0..<index)) }
            links += targets.count
            let store = try ChunkStore(root: "\(root)/\(index)")
            var configuration = MeshConfiguration(
                nodeKey: .generate(),
                bootstrapPeers: targets.map { HostPort(host: "127.0.0.1", port: nodes[$0].2.port) },
                trust: TrustPolicy(trust: TrustFile()), peerExchange: false, maxPeers: 64)
            configuration.trustRoots = TrustRootsSetting(
                roots: roots, keeper: try TrustDocumentKeeper(directory: "\(root)/\(index)/trust-state"))
            let node = MeshNode(configuration: configuration, store: store, pool: pool, logger: logger)
            let server = MeshServer(node: node)
            nodes.append((node, server, try await server.bind()))
        }
        func document(_ version: UInt64) -> [UInt8] {
            let expires = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 + 86400).rounded(.down))
            var signed = SignedTrustDocument(
                document: TrustDocument(
                    version: version, expires: expires, roots: roots,
                    keys: [TrustedKey(name: "bors-\(version)", publicKey: SigningKey.generate().publicKey)]))
            signed = signed.signed(with: rootKeys[0]).signed(with: rootKeys[1])
            return signed.encoded()
        }
        let running = nodes
        let result = try await withThrowingTaskGroup(of: (Double, Double)?.self) { group in
            for (_, server, listener) in running {
                group.addTask {
                    try await server.run(listener)
                    return nil
                }
            }
            group.addTask {
                try await Task.sleep(for: .seconds(Double(count) / 50 + 2))
                var times: [Double] = []
                for version: UInt64 in [1, 2] {
                    let started = ContinuousClock.now
                    let outcome = await running[0].0.publishTrustDocument(document(version))
                    guard outcome == .accepted(version: version) else {
                        print("  publishing version \(version) failed: \(outcome)")
                        return (0, 0)
                    }
                    while true {
                        var reached = 0
                        for (node, _, _) in running
                        where await node.currentTrustDocument?.document.version == version { reached += 1 }
                        if reached == count { break }
                        if ContinuousClock.now - started > .seconds(60) {
                            print("  only \(reached) of \(count) nodes applied version \(version) after 60 s")
                            break
                        }
                        try await Task.sleep(for: .milliseconds(2))
                    }
                    let parts = (ContinuousClock.now - started).components
                    times.append(Double(parts.seconds) + Double(parts.attoseconds) / 1e18)
                }
                return (times[0], times[1])
            }
            defer { group.cancelAll() }
            while let value = try await group.next() {
                if let value { return value }
            }
            return (0, 0)
        }
        try await pool.shutdownGracefully()
        return (links, result.0, result.1)
    }
}
