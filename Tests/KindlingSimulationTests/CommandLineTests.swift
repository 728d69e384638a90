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
