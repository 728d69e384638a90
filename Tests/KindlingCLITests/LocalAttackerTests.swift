import Foundation
import KindlingTesting
import Testing

/// Issue 10 §6: files and names another local user could plant, and a node socket that answers with another
/// snapshot. Each is refused with one clear line.
@Suite("CLI: another local user", .serialized)
struct LocalAttackerTests {
    @Test("A trust file others can write, or in a folder others can write, is refused; a sticky folder is fine")
    func trustFileWritableByOthers() throws {
        let world = try CLIWorld()
        let list = ["trust", "list", "--file", world.trust]
        #expect(try world.kindling(list).status == 0)

        chmod(world.trust, 0o666)
        expectCleanFailure(try world.kindling(list), mentioning: "is writable by other users (mode 666)")
        let restore = try world.restore(into: world.path("out"))
        expectCleanFailure(restore, mentioning: "is writable by other users")
        chmod(world.trust, 0o644)

        // A folder anyone can write: the file could be replaced by another user's.
        let open = world.path("open")
        mkdir(open, 0o755)
        chmod(open, 0o777)
        let planted = open + "/trust.json"
        try FileManager.default.copyItem(atPath: world.trust, toPath: planted)
        expectCleanFailure(
            try world.kindling(["trust", "list", "--file", planted]), mentioning: "\(open) is writable by other users")
        // The same folder with the sticky bit (like /tmp): others cannot replace what we own in it.
        chmod(open, 0o1777)
        #expect(try world.kindling(["trust", "list", "--file", planted]).status == 0)

        // A link to a good file from a folder that anyone can write is refused all the same.
        chmod(open, 0o777)
        let link = open + "/link.json"
        symlink(world.trust, link)
        expectCleanFailure(
            try world.kindling(["trust", "list", "--file", link]), mentioning: "writable by other users")
    }

    @Test(
        "Trust, key and mesh-secret files owned by another user are refused",
        .enabled(if: getuid() == 0, "needs root to chown"))
    func foreignOwner() throws {
        let world = try CLIWorld()
        chown(world.trust, 65534, 65534)
        expectCleanFailure(
            try world.kindling(["trust", "list", "--file", world.trust]),
            mentioning: "belongs to another user (uid 65534)")

        chown(world.key, 65534, 65534)
        let publish = try world.kindling(
            [
                "publish", "--store", world.store, "--secret-key", world.key, "--repo", "rust-lang/demo", "--commit",
                "c1",
                "--dir", try world.makeSource(),
            ])
        expectCleanFailure(publish, mentioning: "belongs to another user")
        #expect(!FileManager.default.fileExists(atPath: world.store + "/manifests"))
    }

    @Test("A mesh secret others can write is refused before the node starts")
    func meshSecretWritableByOthers() throws {
        let world = try CLIWorld()
        let secret = world.path("mesh.secret")
        #expect(try world.kindling(["mesh-secret", "--out", secret]).status == 0)
        chmod(secret, 0o666)
        let node = try world.kindling(
            [
                "node", "--store", world.path("s"), "--trust", world.trust, "--mesh-secret", secret, "--listen",
                "127.0.0.1:0",
            ])
        expectCleanFailure(node, mentioning: "mesh secret file \(secret) is writable by other users")
    }

    @Test("trust add without --repos asks for one instead of trusting the key everywhere")
    func trustAddNeedsRepos() throws {
        let world = try CLIWorld()
        let result = try world.kindling(
            ["trust", "add", "--file", world.path("new.json"), "--name", "b", "--public-key", world.publicKey])
        #expect(result.status != 0)
        #expect(result.stderr.contains("give --repos GLOB"), "\(result)")
        #expect(!FileManager.default.fileExists(atPath: world.path("new.json")))
    }

    @Test("Repository names '.', '..', empty or with control characters are refused everywhere")
    func badRepositoryNames() throws {
        let world = try CLIWorld()
        let source = try world.makeSource()
        for name in ["..", ".", "", "rust-lang/..", "../etc", "a/./b", "rust-lang/demo\u{1B}[31m", "a\nb"] {
            let publish = try world.kindling(
                [
                    "publish", "--store", world.store, "--secret-key", world.key, "--repo", name, "--commit", "c1",
                    "--dir", source,
                ])
            #expect(publish.status != 0, "publish --repo \(name.debugDescription): \(publish)")
            #expect(publish.stderr.contains("is not a repository name"), "\(publish)")
            // No control character reaches the terminal: the name is shown escaped.
            #expect(!publish.stderr.contains("\u{1B}"), "\(publish)")
            for command in [["list"], ["status"], ["fetch", "--commit", "c1"]] {
                let result = try world.kindling(command + ["--store", world.store, "--repo", name])
                #expect(
                    result.status != 0 && result.stderr.contains("is not a repository name"), "\(command): \(result)")
            }
            let restore = try world.restore(into: world.path("out"), repo: name)
            #expect(restore.status != 0 && restore.stderr.contains("is not a repository name"), "\(restore)")
        }
        #expect(!FileManager.default.fileExists(atPath: world.path("out")))
    }

    @Test("A fetch answered with another commit's manifest is not restored")
    func fetchMustMatchRequest() throws {
        let world = try CLIWorld()
        // The store holds c2 complete; c1 is what the user asks for and what a lying node does not deliver.
        let other = try world.publish(try world.makeSource(), commit: "c2")
        // Whatever answers on the node's socket (here a stand-in for a compromised node process) names c2.
        let socket = world.store + "/node.sock"
        let reply = """
            {"event":"result","fetch":{"manifest":"\(other)","totalBytes":1,"alreadyLocalBytes":1,"fetchedBytes":0,\
            "wireBytesByPeer":{},"chunksFetched":0,"retries":0,"peersBanned":0,"seconds":0}}
            """
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        server.arguments = [
            "-c",
            """
            import socket, sys
            s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(8); s.settimeout(60)
            for _ in range(8):
                c, _ = s.accept(); c.settimeout(5)
                data = b''
                while not data.endswith(b'\\n'):
                    part = c.recv(4096)
                    if not part: break
                    data += part
                if data: c.sendall(sys.argv[2].encode() + b'\\n')
                c.close()
            """,
            socket, reply,
        ]
        // Bounded by itself (60 s without a client ends it), killed at the end; never holding the test's output.
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer { kill(server.processIdentifier, SIGKILL) }
        for _ in 0..<100 where !FileManager.default.fileExists(atPath: socket) { usleep(50_000) }

        let fetch = try world.kindling(["fetch", "--store", world.store, "--repo", "rust-lang/demo", "--commit", "c1"])
        expectCleanFailure(fetch, mentioning: "not of c1; it was not used")
        let restore = try world.restore(into: world.path("out"), commit: "c1")
        #expect(restore.status != 0, "\(restore)")
        #expect(restore.stderr.contains("not of c1; it was not used"), "\(restore)")
        #expect(!FileManager.default.fileExists(atPath: world.path("out")))
    }
}

extension LocalAttackerTests {
    @Test("A repository name from KINDLING_REPO or git config never becomes a path: '..' is refused")
    func repositoryNameFromEnvironment() throws {
        let world = try CLIWorld()
        let checkout = world.path("checkout")
        try Fixtures.write(
            "[package]\nname = \"tiny\"\nversion = \"0.1.0\"\nedition = \"2021\"\n", to: checkout + "/Cargo.toml")
        try Fixtures.write("pub fn f() {}\n", to: checkout + "/src/lib.rs")
        for arguments in [
            ["init", "-q"], ["add", "-A"], ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "c"],
        ] {
            #expect(try CommandRunner.run("/usr/bin/git", arguments, directory: checkout).status == 0)
        }
        let restore = ["restore", "--cargo", "--store", world.store, "--trust", world.trust]
        let fromEnvironment = try CommandRunner.kindling(
            restore, environment: ["KINDLING_REPO": "../../etc"], directory: checkout)
        expectCleanFailure(fromEnvironment, mentioning: "the repository name \"../../etc\" cannot be used")
        #expect(
            try CommandRunner.run("/usr/bin/git", ["config", "kindling.repository", ".."], directory: checkout).status
                == 0)
        let fromConfig = try CommandRunner.kindling(restore, directory: checkout)
        expectCleanFailure(fromConfig, mentioning: "the repository name \"..\" cannot be used")
        let cargo = try CommandRunner.kindling(
            ["cargo", "build"], environment: ["KINDLING_REPO": "a/.."], directory: checkout)
        #expect(cargo.status != 0 && cargo.stderr.contains("cannot be used"), "\(cargo)")
    }
}
