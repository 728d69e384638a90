import Foundation
import KindlingTesting
import Testing

/// `kindling-sim` as scripts run it: the built binary, its flags, its JSON keys and its errors.
@Suite struct CommandLineTests {
    static var simulator: String {
        URL(fileURLWithPath: CommandRunner.kindlingPath).deletingLastPathComponent()
            .appendingPathComponent("kindling-sim").path
    }

    static let requiredKeys = [
        "nodes", "wallSeconds", "gossipP50Seconds", "gossipP99Seconds", "gossipBytesPerNodePerSecond",
        "seedEgressRatio", "originEgressRatio", "maxOfficeUplinkRatio", "completionP99Seconds",
    ]

    @Test func unknownScenarioFileIsAnError() throws {
        let result = try CommandRunner.run(Self.simulator, ["--scenario", "/nonexistent/scenario.json", "--json"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("cannot read scenario file /nonexistent/scenario.json"))
        #expect(result.stdout.isEmpty)
    }

    @Test func malformedScenarioIsAnError() throws {
        let folder = TemporaryDirectory()
        let path = folder.file("bad.json")
        try Data(#"{"nodes": 10, "uplink": 5}"#.utf8).write(to: URL(fileURLWithPath: path))
        let result = try CommandRunner.run(Self.simulator, ["--scenario", path])
        #expect(result.status != 0)
        #expect(result.stderr.contains("unknown field \"uplink\""))
    }

    @Test(arguments: ["--nodes=0", "--nodes=-3"])
    func fewerThanOneNodeIsAnError(flag: String) throws {
        let result = try CommandRunner.run(Self.simulator, [flag, "--json"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("--nodes must be at least 1"))
    }
}

/// Whole runs, kept short for a debug build: 40 nodes in 2 offices, one 4 MB snapshot, 5 virtual minutes with
/// fast churn, twice with one seed and once with another.
@Suite struct SimulationRunTests {
    static let scenario = """
        {"name": "test", "nodes": 40, "offices": 2, "snapshotChunks": 16, "chunkBytes": 262144, "snapshotCount": 1,
         "firstSnapshotSeconds": 30, "durationSeconds": 300, "churnPerHour": 2, "churnDowntimeSeconds": 60}
        """

    static func run(_ arguments: [String]) throws -> [String: Any] {
        let folder = TemporaryDirectory()
        let path = folder.file("test.json")
        try Data(scenario.utf8).write(to: URL(fileURLWithPath: path))
        let result = try CommandRunner.run(CommandLineTests.simulator, ["--scenario", path] + arguments)
        try #require(result.status == 0, "\(result)")
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8))
        return try #require(object as? [String: Any])
    }

    @Test func sameSeedGivesTheSameReportAndTheJSONHasItsKeys() throws {
        let arguments = ["--seed", "7", "--json"]
        var first = try Self.run(arguments)
        var second = try Self.run(arguments)
        for key in CommandLineTests.requiredKeys { #expect(first[key] != nil, "missing \(key)") }
        #expect(first["nodes"] as? Int == 40)
        // The mesh ran: (nearly) everyone learned of the snapshot and fetched it, despite churn.
        #expect((first["gossipReachedFraction"] as? Double ?? 0) > 0.9)
        #expect((first["completedFraction"] as? Double ?? 0) > 0.9)
        #expect((first["churnLeaves"] as? Int ?? 0) > 0)
        #expect((first["seedEgressRatio"] as? Double ?? 0) >= 1)
        first["wallSeconds"] = nil
        second["wallSeconds"] = nil
        #expect(NSDictionary(dictionary: first) == NSDictionary(dictionary: second))
        var other = try Self.run(["--seed", "8", "--json"])
        other["wallSeconds"] = nil
        #expect(NSDictionary(dictionary: first) != NSDictionary(dictionary: other))
    }
}
