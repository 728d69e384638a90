import Foundation
import KindlingTesting
import Testing

/// `kindling cargo` with bors's head records (Specs/freshness.md, "Uses"), with real cargo builds and nodes.
@Suite("Cargo: restore with head records", .serialized)
struct CargoHeadRecordTests {
    /// Sends one control request to the node of `store` (as `kindling` does) and returns its reply lines.
    static func control(_ store: String, _ request: String) throws -> String {
        let script = """
            import socket, sys
            s = socket.socket(socket.AF_UNIX)
            s.connect(sys.argv[1])
            s.sendall(sys.argv[2].encode() + b"\\n")
            print(s.makefile().read())
            """
        return try CommandRunner.run("/usr/bin/env", ["python3", "-c", script, store + "/node.sock", request]).stdout
    }

    @Test("A head record names a newer build this node cannot get: cargo says so, waits, then restores the older one")
    func newerBuildNotReachable() throws {
        let world = try CargoWorld()
        try world.borsPublish()
        let newer = try world.commit("newer") { try CargoEdits.changeCoreConstant(in: $0, to: 9) }
        // bors builds the newer commit and signs it into another store, whose node does not run: its snapshot
        // reaches nobody, only its head record does (what a peer hiding newer builds would leave behind).
        try world.git(["fetch", "-q", "origin"], in: world.bors)
        try world.git(["checkout", "-q", "--detach", newer], in: world.bors)
        let environment = world.environment.merging(["KINDLING_HOME": world.borsStore, "KINDLING_NO_RESTORE": "1"]) {
            $1
        }
        let build = try world.kindling(["cargo", "build", "-q"], in: world.bors, environment: environment)
        #expect(build.status == 0, "\(build)")
        let hidden = world.directory.file("hidden-store")
        let publish = try world.kindling(
            [
                "publish", "--cargo", "--secret-key", world.key, "--store", hidden, "--profile", "dev", "--branch",
                "master",
            ], in: world.bors, environment: environment)
        #expect(publish.status == 0 && publish.stdout.contains("head record "), "\(publish)")
        let names = try FileManager.default.contentsOfDirectory(atPath: hidden + "/head-state")
            .filter { !$0.hasPrefix(".") }
        let name = try #require(names.first)
        let record = try Data(contentsOf: URL(fileURLWithPath: hidden + "/head-state/" + name))
        let reply = try Self.control(
            world.borsStore, "{\"op\": \"head-publish\", \"document\": \"\(record.base64EncodedString())\"}")
        #expect(reply.contains("kept"), "\(reply)")
        let devNode = try #require(world.devNode)
        try waitFor("the developer node holds the head record") {
            ((try devNode.status()["node"] as? [String: Any])?["heads"] as? [Any])?.count == 1
        }

        try world.devCheckout(newer)
        let restore = try world.devRestore()
        #expect(restore.status == 0, "\(restore)")
        #expect(restore.stdout.contains("names a newer build of master: \(newer.prefix(12)), 0 commits behind HEAD"))
        #expect(restore.stdout.contains("waiting up to 10 s"), "\(restore)")
        #expect(restore.stderr.contains("its announcement has not reached this node"), "\(restore)")
        #expect(restore.stdout.contains("(1 commits behind HEAD)"), "\(restore)")
    }
}
