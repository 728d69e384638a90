import Foundation
import KindlingTesting
import Testing

@testable import KindlingSimulation

@Suite struct ScenarioTests {
    @Test func fieldsOverrideDefaults() throws {
        let scenario = try Scenario.parse(Data(#"{"nodes": 10, "offices": 2, "originMbps": 500}"#.utf8))
        #expect(scenario.nodes == 10)
        #expect(scenario.offices == 2)
        #expect(scenario.originMbps == 500)
        #expect(scenario.maxPeers == Scenario().maxPeers)
        #expect(scenario.hostMbps == nil)
        #expect(try Scenario.parse(Data(#"{"hostMbps": 1200}"#.utf8)).hostMbps == 1200)
        #expect(try Scenario.parse(Data(#"{"hostMbps": null}"#.utf8)).hostMbps == nil)
    }

    @Test(arguments: [
        (#"{"nodes": 0}"#, "nodes must be at least 1"),
        (#"{"nodez": 10}"#, "unknown field \"nodez\""),
        (#"{"nodes": "ten"}"#, "nodes must be a number"),
        (#"{"nodes": 2.5}"#, "nodes must be an integer"),
        (#"[1, 2]"#, "must be a JSON object"),
        (#"{"nodes": 10,"#, "not JSON"),
        (#"{"natOnlyFraction": 1.5}"#, "natOnlyFraction must be between 0 and 1"),
        (#"{"hostMbps": 0}"#, "hostMbps must be > 0"),
    ])
    func badScenariosSayWhatIsWrong(text: String, expected: String) {
        #expect {
            _ = try Scenario.parse(Data(text.utf8), origin: "x.json")
        } throws: { error in
            "\(error)".contains(expected) && "\(error)".contains("x.json")
        }
    }

    static var scenarioFolder: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("tools/sim/scenarios").path
    }

    @Test func shippedScenariosParse() throws {
        let folder = URL(fileURLWithPath: Self.scenarioFolder)
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".json") }
        #expect(files.count >= 8)
        for file in files {
            _ = try Scenario.load(path: folder.appendingPathComponent(file).path)
        }
    }
}
