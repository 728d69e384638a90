import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingTesting
import KindlingWire
import NIOCore
import Synchronization
import Testing

@testable import KindlingMesh

/// What one peer (or one address) can make a node hold or do (Specs/wire.md, "Limits"; issue 10 §3 and §6).
@Suite("Mesh: connection and work limits", .serialized)
struct ConnectionLimitTests {
    /// Opens `count` TCP connections to `port` from `source` (a 127.0.0.x address) that never send anything.
    static func idleConnections(to port: Int, from source: String, count: Int) -> [Int32] {
        (0..<count).compactMap { _ in
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { return nil }
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            inet_pton(AF_INET, source, &local.sin_addr)
            var target = sockaddr_in()
            target.sin_family = sa_family_t(AF_INET)
            target.sin_port = UInt16(port).bigEndian
            inet_pton(AF_INET, "127.0.0.1", &target.sin_addr)
            let size = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, size) }
            }
            let connected = withUnsafePointer(to: &target) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, size) }
            }
            guard bound == 0, connected == 0 else {
                close(fd)
                return nil
            }
            return fd
        }
    }

    @Test(
        "Pre-handshake connections: capped per source and in all; a new source displaces the busiest; deadline frees"
    )
    func pendingCaps() async throws {
        let node = try await TestNode(name: "target", handshakeTimeout: .seconds(2)) {
            $0.maxPendingPerSource = 4
            $0.maxPendingTotal = 8
        }
        try await withRunningNodes([node]) {
            let first = Self.idleConnections(to: node.port, from: "127.0.0.2", count: 10)
            defer { for fd in first { close(fd) } }
            try await eventually("the first source is capped at 4") {
                let gate = node.node.gate.snapshot
                return gate.pending == 4 && gate.counters.refusedPending == 6
            }
            let second = Self.idleConnections(to: node.port, from: "127.0.0.3", count: 4)
            defer { for fd in second { close(fd) } }
            try await eventually("both sources fill the total") { node.node.gate.snapshot.pending == 8 }
            // Full: one from a third source takes the oldest slot of a busiest source instead of being refused.
            let third = Self.idleConnections(to: node.port, from: "127.0.0.4", count: 1)
            defer { for fd in third { close(fd) } }
            try await eventually("a newcomer from another source displaces one") {
                let gate = node.node.gate.snapshot
                return gate.pending == 8 && gate.counters.evictedPending == 1
            }
            // Nobody completes a handshake: the short deadline closes them all.
            try await eventually("the handshake deadline frees every slot", timeout: .seconds(6)) {
                node.node.gate.snapshot.pending == 0
            }
            try await HostilePeerTests.assertStillServing(node)
        }
    }

    @Test("No socket takes the last descriptors: accepts stop short of the reserve")
    func descriptorReserve() async throws {
        // A reserve that leaves room for about five more sockets in this process.
        let room = DescriptorLimit.current - (DescriptorLimit.openDescriptors() ?? 0)
        let node = try await TestNode(name: "target") { $0.descriptorReserve = room - 5 - 20 }
        try await withRunningNodes([node]) {
            var held: [Int32] = []
            defer { for fd in held { close(fd) } }
            for index in 0..<40 {
                held += Self.idleConnections(to: node.port, from: "127.0.0.\(10 + index % 20)", count: 1)
            }
            try await eventually("accepts past the reserve are refused") {
                node.node.gate.snapshot.counters.refusedForDescriptors > 0
            }
            let gate = node.node.gate.snapshot
            #expect(gate.sockets < 40, "\(gate)")
        }
    }

    @Test("Authenticated inbound peers cannot take the slots kept for our own connections, and idle ones make room")
    func peerSlots() async throws {
        let seed = try await TestNode(name: "seed")
        let node = try await TestNode(name: "node", peers: [seed.address]) { $0.maxPeers = 8 }
        #expect(node.node.configuration.maxInboundPeers == 6)
        try await withRunningNodes([seed, node]) {
            try await eventually("connected to its seed") { await node.node.connectedPeers.count == 1 }
            let stop = Flag()
            try await withThrowingDiscardingTaskGroup { group in
                for _ in 0..<10 {
                    group.addTask {
                        let rogue = try await RogueClient.connect(to: node.port)
                        _ = try? await rogue.run { frames, _ in
                            while !stop.isSet, (try? await frames.next(isolation: #isolation)) != nil {}
                        }
                    }
                    try await Task.sleep(for: .milliseconds(50))
                }
                try await eventually("ten inbound peers came, some were evicted") {
                    node.node.gate.snapshot.counters.evictedPeers >= 4
                }
                let peers = await node.node.connectedPeers
                #expect(peers.contains { $0.nodeID == seed.node.nodeID }, "the seed stays connected")
                #expect(peers.filter { $0.role == .responder }.count <= 6)
                stop.set()
                for peer in peers where peer.nodeID != seed.node.nodeID { peer.close() }
            }
        }
    }

    @Test("A peer's messages are read at most at its message rate")
    func messageRate() async throws {
        let node = try await TestNode(name: "target") { $0.maxMessagesPerSecondPerPeer = 500 }
        try await withRunningNodes([node]) {
            let rogue = try await RogueClient.connect(to: node.port)
            let elapsed = try await rogue.run { frames, outbound in
                let started = ContinuousClock.now
                for nonce in 0..<1500 { try await outbound.write(WireMessage.ping(UInt64(nonce)).encoded()) }
                var pongs = 0
                while pongs < 1500, let frame = try await frames.next(isolation: #isolation) {
                    if case .pong? = try? WireMessage.decode(frame) { pongs += 1 }
                }
                #expect(pongs == 1500)
                return ContinuousClock.now - started
            }
            // 500 from the full bucket, the other 1000 at 500 a second.
            #expect(elapsed >= .milliseconds(1500), "1500 messages read in \(elapsed)")
        }
    }

    @Test("Catalog requests and body pieces a peer can make us answer are rate-limited")
    func catalogAndBodyBudgets() async throws {
        let node = try await TestNode(name: "target")
        let directory = TemporaryDirectory("budget")
        let manifest = try await node.publish(try makeTree(directory, files: 2, bytesPerFile: 50_000), commit: "c1")
        try await withRunningNodes([node]) {
            let rogue = try await RogueClient.connect(to: node.port)
            let (catalogs, served, requests, elapsed) = try await rogue.run { frames, outbound in
                for _ in 0..<20 { try await outbound.write(WireMessage.catalogRequest.encoded()) }
                let answers = try await rogue.roundTrip(&frames, outbound) ?? []
                let catalogs = answers.filter { if case .catalog = $0 { true } else { false } }.count
                // Body pieces one at a time (the node serves 2 at once per peer; this measures the rate alone).
                let started = ContinuousClock.now
                var served = 0
                let requests = 300
                for _ in 0..<requests {
                    try await outbound.write(
                        WireMessage.getBody(manifest: manifest.id, offset: 0, length: 512 * 1024).encoded())
                    while let frame = try await frames.next(isolation: #isolation) {
                        guard case .body(_, _, let bytes)? = try? WireMessage.decode(frame) else { continue }
                        if !bytes.isEmpty { served += 1 }
                        break
                    }
                }
                return (catalogs, served, requests, ContinuousClock.now - started)
            }
            #expect(catalogs <= 4, "\(catalogs) catalogs sent for 20 requests")
            #expect(catalogs >= 1)
            let allowed = 128 + Int(16 * elapsed.seconds) + 2
            #expect(
                served >= 100 && served <= allowed,
                "\(served) of \(requests) pieces served in \(elapsed) (allowed \(allowed))")
            #expect(await node.node.status().gossip.throttled > 0)
        }
    }

    @Test(
        "Holder notices are hints: no strike, ban or holding from them; the holder's own word wins over relayed ones"
    )
    func holderNoticesAreHints() async throws {
        let target = try await TestNode(name: "target")
        let directory = TemporaryDirectory("hints")
        let manifest = try await target.publish(try makeTree(directory, files: 1, bytesPerFile: 100_000), commit: "c1")
        let holder = try await TestNode(name: "holder", peers: [target.address])
        try await withRunningNodes([target, holder]) {
            let rogue = try await RogueClient.connect(to: target.port)
            try await rogue.run { frames, outbound in
                // The holder's id at an address that is not its own, and fifteen made-up holders: the table is full.
                try await outbound.write(
                    WireMessage.holder(
                        HolderNotice(manifest: manifest.id, nodeID: holder.node.nodeID, host: "10.9.9.9", port: 1)
                    ).encoded())
                for index in 0..<15 {
                    try await outbound.write(
                        WireMessage.holder(
                            HolderNotice(
                                manifest: manifest.id, nodeID: SigningKey.generate().publicKey, host: "10.9.8.\(index)",
                                port: 1)
                        ).encoded())
                }
                _ = try await rogue.roundTrip(&frames, outbound)
                #expect(await target.node.liveHolders(manifest.id).count == 16)
                #expect(await target.node.knownSnapshots().first?.holders == 0, "a notice credits no holding")

                // The holder fetches the snapshot and says so itself: its own address replaces the relayed one.
                try await eventually("the holder knows the snapshot") { await holder.catalogContains(manifest.id) }
                _ = try await holder.node.fetch(manifest.id)
                try await eventually("the holder's own notice is kept, with its own address") {
                    await target.node.liveHolders(manifest.id).contains {
                        $0.nodeID == holder.node.nodeID && $0.host == "127.0.0.1" && Int($0.port) == holder.port
                    }
                }
                let sizes = await target.node.stateSizes()
                #expect(sizes.bans == 0 && sizes.strikes == 0, "notices neither strike nor ban: \(sizes)")
            }
        }
    }

    @Test("Peer-supplied text is escaped: no control characters or ANSI sequences reach status or a log line")
    func peerTextEscaped() async throws {
        #expect(escapedPeerText("kindling/0.1.0") == "kindling/0.1.0")
        #expect(escapedPeerText("a\u{1B}[31mred\u{07}") == "a\\u{1B}[31mred\\u{7}")
        #expect(escapedPeerText("\u{9B}2J\r\nx\\y") == "\\u{9B}2J\\u{D}\\u{A}x\\\\y")
        #expect(escapedPeerText("abc\u{202E}cba") == "abc\\u{202E}cba")
        #expect(escapedPeerText("é日本") == "é日本")
        #expect(escapedPeerText(String(repeating: "x", count: 600)).count == 513)

        let node = try await TestNode(name: "target")
        try await withRunningNodes([node]) {
            let rogue = try await RogueClient.connect(to: node.port)
            try await rogue.run(agent: "evil\u{1B}]0;owned\u{07}\u{1B}[2J\u{9B}31m") { frames, outbound in
                _ = try await rogue.roundTrip(&frames, outbound)
                let agent = await node.node.status().peers.first?.agent ?? ""
                #expect(
                    !agent.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) }, "\(agent)")
                #expect(agent.hasPrefix("evil\\u{1B}]0;owned\\u{7}"))
            }
        }
    }

    @Test("Status says whether the mesh is encrypted")
    func statusSaysUnencrypted() async throws {
        let open = try await TestNode(name: "open")
        #expect(await open.node.status().encrypted == false)
        #expect(await open.node.status().transport.contains("NOT encrypted"))
        let closed = try await TestNode(name: "closed", mesh: .private(secret: [UInt8](repeating: 7, count: 32)))
        #expect(await closed.node.status().encrypted == true)
        await open.listener.close()
        await closed.listener.close()
    }
}
