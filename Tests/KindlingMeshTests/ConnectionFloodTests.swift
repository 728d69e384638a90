import Foundation
import KindlingCrypto
import KindlingTesting
import KindlingWire
import NIOCore
import Synchronization
import Testing

@testable import KindlingMesh

/// A real `kindling node` process flooded with connections (Specs/wire.md, "Limits"; issue 10 §3).
@Suite("Mesh: a node process under a connection flood", .serialized)
struct ConnectionFloodTests {
    /// `ulimit -Sn 1024` is the common default (the node raises it to the hard limit); `ulimit -n 1024` leaves it no
    /// way out, so only the caps and the descriptor reserve keep it alive.
    @Test(
        "Busy peers and thousands of idle connections: the node stays up, answers status, a trusted peer fetches",
        arguments: ["ulimit -Sn 1024", "ulimit -n 1024"])
    func flood(limits: String) async throws {
        // The flood needs thousands of descriptors in this process too.
        DescriptorLimit.raiseSoftToHard()
        let directory = TemporaryDirectory("flood")
        let key = directory.file("bors.key")
        let trust = directory.file("trust.json")
        let keygen = try CommandRunner.kindling(["keygen", "--secret-key", key])
        try #require(keygen.status == 0, "\(keygen)")
        let add = try CommandRunner.kindling(
            [
                "trust", "add", "--file", trust, "--name", "bors", "--public-key", keygen.lastLine, "--repos",
                "rust-lang/*",
            ])
        try #require(add.status == 0, "\(add)")
        let seedStore = directory.file("seed-store")
        for (index, commit) in ["during", "after"].enumerated() {
            let tree = directory.file("tree-\(commit)")
            for file in 0..<3 {
                try Fixtures.write(
                    Fixtures.bytes(count: 2_000_000, seed: UInt64(100 * index + file)), to: tree + "/f\(file)")
            }
            let publish = try CommandRunner.kindling(
                [
                    "publish", "--store", seedStore, "--secret-key", key, "--repo", "rust-lang/demo", "--commit",
                    commit, "--dir", tree,
                ])
            try #require(publish.status == 0, "\(publish)")
        }
        let seed = try NodeProcess(
            store: seedStore, arguments: ["--trust", trust, "--log-level", "warning"], log: directory.file("seed.log"),
            shellPrefix: limits)
        let devStore = directory.file("dev-store")
        let dev = try NodeProcess(
            store: devStore, arguments: ["--trust", trust, "--peer", seed.address], log: directory.file("dev.log"))
        try waitFor("the developer node knows both snapshots") {
            ((try dev.status()["snapshots"] as? [Any]) ?? []).count == 2
        }
        let pid = seed.process.processIdentifier
        let port = seed.port

        let stop = Flag()
        let pongs = Tally()
        let idle = IdleFlood(port: port, connections: 2000, sources: 8)
        let maxDescriptors = Tally()
        let started = ContinuousClock.now
        // The idle connections first (a node without caps fills its descriptors with them within a second), then
        // the busy peers, whose load makes the runtime start worker threads (each opens /proc/<tid>/stat).
        let idleThread = Thread { idle.run(until: stop) }
        idleThread.start()
        try await Task.sleep(for: .milliseconds(1500))
        async let busy: Void = withDiscardingTaskGroup { group in
            for _ in 0..<12 { group.addTask { await Self.busyPeer(port: port, stop: stop, pongs: pongs) } }
        }
        let watcher = Thread {
            while !stop.isSet {
                let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? 0
                maxDescriptors.raise(to: open)
                Thread.sleep(forTimeInterval: 0.1)
            }
        }
        watcher.start()

        try await Task.sleep(for: .seconds(1))
        let fetchStarted = ContinuousClock.now
        let during = await blocking {
            try CommandRunner.kindling([
                "fetch", "--store", devStore, "--repo", "rust-lang/demo", "--commit", "during", "--json",
            ])
        }
        let fetchDuring = ContinuousClock.now - fetchStarted
        let statusDuring = await blocking {
            try CommandRunner.kindling(["status", "--store", seedStore, "--all", "--json"])
        }
        let remaining = .seconds(10) - (ContinuousClock.now - started)
        if remaining > .zero { try await Task.sleep(for: remaining) }
        let aliveAtEnd = seed.process.isRunning
        stop.set()
        await busy
        while idleThread.isExecuting || watcher.isExecuting { try await Task.sleep(for: .milliseconds(50)) }

        let log = String(decoding: Fixtures.read(seed.log) ?? [], as: UTF8.self)
        let exit = seed.process.isRunning ? 0 : seed.process.terminationStatus
        #expect(aliveAtEnd, "the node died under the flood (exit \(exit)): \(log.suffix(2000))")
        #expect(during?.status == 0, "fetch during the flood: \(during.map { "\($0)" } ?? "did not run")")
        #expect(statusDuring?.status == 0, "status during the flood: \(statusDuring.map { "\($0)" } ?? "did not run")")
        let after = try CommandRunner.kindling([
            "fetch", "--store", devStore, "--repo", "rust-lang/demo", "--commit", "after", "--json",
        ])
        #expect(after.status == 0, "fetch after the flood: \(after)")
        let status = try CommandRunner.kindling(["status", "--store", seedStore, "--all", "--json"])
        #expect(status.status == 0, "\(status)")
        let object = try? JSONSerialization.jsonObject(with: Data((statusDuring?.stdout ?? "").utf8)) as? [String: Any]
        let connections = (object?["node"] as? [String: Any])?["connections"] as? [String: Any]
        let counters = connections?["counters"] as? [String: Any]
        #expect(
            (counters?["refusedPending"] as? Int ?? 0) > 0,
            "the pre-handshake caps refused the idle flood: \(connections ?? [:])")
        print(
            "flood [\(limits)]: idle connections opened \(idle.opened.value), at most "
                + "\(idle.maxHeld.value) held at once; pongs \(pongs.value); "
                + "node descriptors at most \(maxDescriptors.value); fetch of 6 MB during the flood "
                + "\(fetchDuring); status during: \(connections ?? [:])")
        seed.stop()
        dev.stop()
    }

    /// An authenticated open-mesh peer sending Pings in bursts of 200 and reading the Pongs, reconnecting whenever
    /// the node drops it, until `stop`.
    static func busyPeer(port: Int, stop: Flag, pongs: Tally) async {
        while !stop.isSet {
            do {
                let rogue = try await RogueClient.connect(to: port)
                try await rogue.run(mesh: .open(name: "kindling")) { frames, outbound in
                    while !stop.isSet {
                        for nonce in 0..<200 { try await outbound.write(WireMessage.ping(UInt64(nonce)).encoded()) }
                        var answered = 0
                        while answered < 200, let frame = try await frames.next(isolation: #isolation) {
                            if case .pong? = try? WireMessage.decode(frame) {
                                answered += 1
                                pongs.add(1)
                            }
                        }
                        if answered < 200 { return }
                    }
                }
            } catch {
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
    }
}

/// Runs blocking work (a child process) off the cooperative pool, which the busy peers need.
func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async -> T? {
    await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: try? body()) }.start()
    }
}

/// Idle TCP connections to a port on loopback, from `sources` addresses 127.0.0.2, 127.0.0.3, ...: `connections`
/// kept open at all times (every 50 ms, up to 100 that the node closed are replaced) until stopped. They never send
/// a byte, so a node without pre-handshake caps holds each for its whole handshake timeout.
final class IdleFlood: Sendable {
    let port: Int
    let connections: Int
    let sources: Int
    let opened = Tally()
    let maxHeld = Tally()

    init(port: Int, connections: Int, sources: Int) {
        self.port = port
        self.connections = connections
        self.sources = sources
    }

    private func open(_ index: Int) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { return nil }
        var source = sockaddr_in()
        source.sin_family = sa_family_t(AF_INET)
        source.sin_addr.s_addr = UInt32(0x7F00_0002 + index % sources).bigEndian
        var target = sockaddr_in()
        target.sin_family = sa_family_t(AF_INET)
        target.sin_port = UInt16(port).bigEndian
        target.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let size = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &source) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, size) }
        }
        let connected = withUnsafePointer(to: &target) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, size) }
        }
        if bound != 0 || (connected != 0 && errno != EINPROGRESS) {
            close(fd)
            return nil
        }
        opened.add(1)
        return fd
    }

    func run(until stop: Flag) {
        var held: [pollfd] = []
        var openedAt: [ContinuousClock.Instant] = []
        var next = 0
        while !stop.isSet {
            // Drop what the node closed (end of stream, reset) and what is older than 12 s (a connect the node never
            // took, its SYN lost to a full accept queue, looks established here forever), then top up, 100 at a time
            // so that the accept queue is not overrun.
            _ = poll(&held, nfds_t(held.count), 0)
            let now = ContinuousClock.now
            var kept: [pollfd] = []
            var keptOpened: [ContinuousClock.Instant] = []
            for (entry, opened) in zip(held, openedAt) {
                var alive = now - opened < .seconds(12)
                if alive, entry.revents != 0 {
                    // The node's Hello (read and ignored) keeps it alive; end of stream or an error does not.
                    var bytes = [UInt8](repeating: 0, count: 4096)
                    let read = recv(entry.fd, &bytes, bytes.count, Int32(MSG_DONTWAIT))
                    alive = read > 0 || (read < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                }
                if alive {
                    kept.append(entry)
                    keptOpened.append(opened)
                } else {
                    close(entry.fd)
                }
            }
            held = kept
            openedAt = keptOpened
            var batch = 0
            while held.count < connections, batch < 100, !stop.isSet, let fd = open(next) {
                next += 1
                batch += 1
                held.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0))
                openedAt.append(.now)
            }
            maxHeld.raise(to: held.count)
            Thread.sleep(forTimeInterval: 0.05)
        }
        for entry in held { close(entry.fd) }
    }
}

/// A count shared between tasks and threads.
final class Tally: Sendable {
    private let count = Atomic<Int>(0)
    var value: Int { count.load(ordering: .relaxed) }
    func add(_ amount: Int) { count.wrappingAdd(amount, ordering: .relaxed) }
    func raise(to candidate: Int) { count.max(candidate, ordering: .relaxed) }
}
