import Foundation
import KindlingCrypto
import KindlingTesting
import Testing

@Suite("CLI: nodes as processes", .serialized)
struct NodeProcessTests {
    @Test(
        "bors publishes into its node's store; two developer nodes fetch through the mesh; restore goes through it"
    )
    func publishFetchRestore() throws {
        let world = try CLIWorld()
        let source = try world.makeSource(bytes: 3_000_000)
        let bors = try NodeProcess(
            store: world.store, arguments: ["--trust", world.trust], log: world.path("bors.log"))
        let devStore = world.path("dev-store")
        let dev = try NodeProcess(
            store: devStore, arguments: ["--trust", world.trust, "--peer", bors.address], log: world.path("dev.log"))
        let other = try NodeProcess(
            store: world.path("other-store"), arguments: ["--trust", world.trust, "--peer", bors.address],
            log: world.path("other.log"))
        try waitFor("developers connected") { try bors.peerCount() == 2 }

        // Publishing while the node runs announces through it.
        let publish = try world.kindling(
            [
                "publish", "--store", world.store, "--secret-key", world.key, "--repo", "rust-lang/demo", "--commit",
                "c1", "--dir", source,
            ])
        #expect(publish.status == 0, "\(publish)")
        #expect(publish.stdout.contains("announced to the mesh"))

        let fetch = try world.kindling(
            ["fetch", "--store", devStore, "--repo", "rust-lang/demo", "--commit", "c1", "--json"])
        #expect(fetch.status == 0, "\(fetch)")
        let result = try JSONSerialization.jsonObject(with: Data(fetch.stdout.utf8)) as? [String: Any]
        #expect((result?["fetchedBytes"] as? Int ?? 0) >= 3_000_000)

        // restore through the other node: the store is empty, so it fetches first, then restores.
        let restore = try world.kindling(
            [
                "restore", "--store", world.path("other-store"), "--trust", world.trust, "--repo", "rust-lang/demo",
                "--commit", "c1", "--into", world.path("restored"),
            ])
        #expect(restore.status == 0, "\(restore)")
        #expect(restore.stdout.contains("fetched"))
        #expect(Fixtures.read(world.path("restored/deps/libdep.rlib")) == Fixtures.read(source + "/deps/libdep.rlib"))

        let peers = try world.kindling(["peers", "--store", world.store, "--json"])
        #expect(peers.status == 0)
        #expect(peers.stdout.contains("127.0.0.1"))
        // SIGTERM stops a node cleanly and removes its socket.
        dev.stop()
        #expect(dev.process.terminationStatus == 0)
        #expect(!FileManager.default.fileExists(atPath: devStore + "/node.sock"))
        let noNode = try world.kindling(["peers", "--store", devStore])
        expectCleanFailure(noNode, mentioning: "no kindling node is running")
        _ = other
    }

    @Test("A node killed with SIGKILL during a fetch restarts with a consistent store and resumes where it stopped")
    func killedDuringFetch() throws {
        let world = try CLIWorld()
        for index in 0..<4 {
            try Fixtures.write(
                Fixtures.bytes(count: 4_000_000, seed: UInt64(index + 10)), to: world.path("big/file\(index)"))
        }
        _ = try world.publish(world.path("big"), commit: "big")
        // A slow seed, so that the kill lands mid-transfer.
        let seed = try NodeProcess(
            store: world.store, arguments: ["--trust", world.trust, "--upload-limit", "4M"], log: world.path("seed.log")
        )
        let devStore = world.path("dev-store")
        var dev: NodeProcess? = try NodeProcess(
            store: devStore, arguments: ["--trust", world.trust, "--peer", seed.address], log: world.path("dev.log"))
        try waitFor("connected") { try seed.peerCount() == 1 }
        try waitFor("the snapshot announced") {
            let snapshots = (try dev?.status()["snapshots"] as? [Any]) ?? []
            return !snapshots.isEmpty
        }
        let fetch = try CommandRunner.startKindling([
            "fetch", "--store", devStore, "--repo", "rust-lang/demo", "--commit", "big",
        ])
        try waitFor("some chunks stored") {
            let stats = try CommandRunner.kindling(["store", "stats", "--store", devStore, "--json"])
            let object = try? JSONSerialization.jsonObject(with: Data(stats.stdout.utf8)) as? [String: Any]
            return (object?["plainBytes"] as? Int ?? 0) > 2_000_000
        }
        dev?.stop(signal: SIGKILL)
        fetch.waitUntilExit()
        #expect(fetch.terminationStatus != 0)
        dev = nil

        let verify = try CommandRunner.kindling(["verify", "--store", devStore])
        #expect(verify.status == 0, "store after SIGKILL: \(verify)")
        let before = try CommandRunner.kindling(["store", "stats", "--store", devStore, "--json"])
        let heldBefore =
            (try JSONSerialization.jsonObject(with: Data(before.stdout.utf8)) as? [String: Any])?["plainBytes"] as? Int
            ?? 0
        #expect(heldBefore > 0 && heldBefore < 16_000_000)

        // Restarted, the node resumes the interrupted fetch on its own: nobody asks it to fetch again.
        let restarted = try NodeProcess(
            store: devStore, arguments: ["--trust", world.trust, "--peer", seed.address], log: world.path("dev2.log"))
        try waitFor("the restarted node completes the snapshot by itself", timeout: 60) {
            let snapshots = (try restarted.status()["snapshots"] as? [[String: Any]]) ?? []
            return snapshots.contains { $0["commit"] as? String == "big" && $0["local"] as? Bool == true }
        }
        // A fetch now finds everything local.
        let again = try CommandRunner.kindling([
            "fetch", "--store", devStore, "--repo", "rust-lang/demo", "--commit", "big", "--json",
        ])
        #expect(again.status == 0, "\(again)")
        let result = try JSONSerialization.jsonObject(with: Data(again.stdout.utf8)) as? [String: Any]
        #expect(result?["fetchedBytes"] as? Int == 0)
        #expect(result?["alreadyLocalBytes"] as? Int == 16_000_000)
        let restore = try world.kindling(
            [
                "restore", "--store", devStore, "--trust", world.trust, "--repo", "rust-lang/demo", "--commit", "big",
                "--into", world.path("out"),
            ])
        #expect(restore.status == 0, "\(restore)")
        for index in 0..<4 {
            #expect(Fixtures.read(world.path("out/file\(index)")) == Fixtures.read(world.path("big/file\(index)")))
        }
    }

    @Test("The control socket is 0600 from the start, and a client that sends no request is hung up on")
    func controlSocket() throws {
        let world = try CLIWorld()
        let store = world.path("ctl-store")
        let node = try NodeProcess(store: store, arguments: ["--trust", world.trust], log: world.path("ctl.log"))
        var info = stat()
        #expect(stat(store + "/node.sock", &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: store).filter { $0.hasPrefix(".ctl-") }
        #expect(leftovers.isEmpty, "the private staging directory is removed: \(leftovers)")

        // Connect and say nothing: the node closes the connection after its request timeout (5 s).
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let path = Array((store + "/node.sock").utf8CString)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.prefix(raw.count - 1).enumerated() { raw[index] = UInt8(bitPattern: byte) }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        #expect(connected == 0)
        // Our own bound: never wait more than 20 s for the node.
        var limit = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        let started = Date()
        var byte: UInt8 = 0
        let count = read(fd, &byte, 1)
        let elapsed = Date().timeIntervalSince(started)
        #expect(count == 0, "the node closed the connection (read returned \(count), errno \(errno))")
        #expect(elapsed > 3 && elapsed < 15, "closed after \(elapsed) s")
        // The node still answers.
        #expect(try node.peerCount() == 0)
    }

    @Test("A node refuses bad settings with one clear line")
    func badSettings() throws {
        let world = try CLIWorld()
        let noTrust = try world.kindling(["node", "--store", world.path("s1"), "--listen", "127.0.0.1:0"])
        expectCleanFailure(noTrust, mentioning: "no trust file")
        let badPeer = try world.kindling([
            "node", "--store", world.path("s2"), "--trust", world.trust, "--peer", "nowhere",
        ])
        expectCleanFailure(badPeer, mentioning: "is not HOST:PORT")
        try Fixtures.write("not hex", to: world.path("secret"))
        let badSecret = try world.kindling([
            "node", "--store", world.path("s3"), "--trust", world.trust, "--mesh-secret", world.path("secret"),
        ])
        expectCleanFailure(badSecret, mentioning: "is not a mesh secret")
        let running = try NodeProcess(
            store: world.path("s4"), arguments: ["--trust", world.trust], log: world.path("s4.log"))
        let twice = try world.kindling([
            "node", "--store", world.path("s4"), "--trust", world.trust, "--listen", "127.0.0.1:0",
        ])
        expectCleanFailure(twice, mentioning: "already running")
        _ = running
    }
}

@Suite("CLI: what a node exposes", .serialized)
struct NodeExposureTests {
    @Test("Beyond loopback an open mesh needs --public and warns; a private mesh does not; LAN on loopback says why")
    func exposure() throws {
        let world = try CLIWorld()
        let refused = try world.kindling(
            ["node", "--store", world.path("s1"), "--trust", world.trust, "--listen", "0.0.0.0:0"])
        expectCleanFailure(refused, mentioning: "--public")
        #expect(refused.stderr.contains("every snapshot"), "\(refused)")

        let open = try NodeProcess(
            store: world.path("s2"), arguments: ["--trust", world.trust, "--listen", "0.0.0.0:0", "--public"],
            log: world.path("s2.log"))
        let log = String(decoding: Fixtures.read(open.log) ?? [], as: UTF8.self)
        #expect(log.contains("public node") && log.contains("every snapshot this node holds"), "\(log)")
        let node = try open.status()["node"] as? [String: Any]
        #expect(node?["encrypted"] as? Bool == false)
        let transport = node?["transport"] as? String ?? ""
        #expect(transport.contains("NOT encrypted"), "\(transport)")
        let text = try world.kindling(["status", "--store", world.path("s2"), "--all"])
        #expect(text.stdout.contains("mesh       open mesh: peers authenticated but traffic NOT encrypted"), "\(text)")
        open.stop()

        let secret = world.path("mesh.secret")
        #expect(try world.kindling(["mesh-secret", "--out", secret]).status == 0)
        let closed = try NodeProcess(
            store: world.path("s3"),
            arguments: ["--trust", world.trust, "--listen", "0.0.0.0:0", "--mesh-secret", secret],
            log: world.path("s3.log"))
        #expect((try closed.status()["node"] as? [String: Any])?["encrypted"] as? Bool == true)
        closed.stop()

        let lan = try NodeProcess(
            store: world.path("s4"), arguments: ["--trust", world.trust, "--lan"], log: world.path("s4.log"))
        try waitFor("the LAN warning") {
            let log = String(decoding: Fixtures.read(lan.log) ?? [], as: UTF8.self)
            return log.contains("LAN discovery cannot announce this node")
        }
        lan.stop()
    }
}

@Suite("CLI: without privileges")
struct UnprivilegedTests {
    /// Runs a shell script as an unprivileged user: `nobody` through setpriv when the tests run as root.
    static func runUnprivileged(_ script: String, in directory: String) throws -> CommandResult {
        if getuid() == 0 {
            return try CommandRunner.run(
                "/usr/bin/setpriv",
                ["--reuid=65534", "--regid=65534", "--clear-groups", "--reset-env", "/bin/sh", "-c", script],
                environment: ["HOME": directory], directory: directory)
        }
        return try CommandRunner.run("/bin/sh", ["-c", script], directory: directory)
    }

    @Test("Nodes listen, connect, gossip and fetch as an ordinary user (no privileged socket options)")
    func nodesWithoutPrivileges() throws {
        let directory = TemporaryDirectory("unprivileged")
        // The unprivileged user's own folder (a folder anyone may write would make its trust file unsafe).
        if getuid() == 0 { chown(directory.path, 65534, 65534) }
        let binary = directory.file("kindling")
        try FileManager.default.copyItem(atPath: CommandRunner.kindlingPath, toPath: binary)
        chmod(binary, 0o755)
        let script = """
            set -e
            K=./kindling
            PUB=$($K keygen --secret-key k)
            $K trust add --file t.json --name b --public-key "$PUB" --repos "a/*" >/dev/null
            mkdir -p data && head -c 300000 /dev/urandom > data/f
            $K publish --store seed --secret-key k --repo a/b --commit c --dir data >/dev/null
            $K node --store seed --listen 127.0.0.1:0 --trust t.json > seed.log 2>&1 &
            SEED=$!
            # Whatever happens, the nodes go away (they would hold the test's output pipe open).
            trap 'kill $SEED $DEV 2>/dev/null' EXIT
            for i in $(seq 100); do
              PORT=$($K status --store seed --all --json 2>/dev/null | sed -n 's/.*"listenPort" : \\([0-9]*\\).*/\\1/p')
              [ -n "$PORT" ] && break; sleep 0.1
            done
            $K node --store dev --listen 127.0.0.1:0 --peer "127.0.0.1:$PORT" --trust t.json > dev.log 2>&1 &
            DEV=$!
            for i in $(seq 100); do
              $K status --store dev --all --json 2>/dev/null | grep -q '"commit" : "c"' && break; sleep 0.1
            done
            $K fetch --store dev --repo a/b --commit c
            id -u
            """
        let result = try Self.runUnprivileged(script, in: directory.path)
        #expect(
            result.status == 0,
            "\(result)\nseed: \(String(decoding: Fixtures.read(directory.file("seed.log")) ?? [], as: UTF8.self))")
        #expect(result.stdout.contains("fetched "), "\(result)")
        #expect(result.lastLine != "0", "the test must run unprivileged")
    }
}
