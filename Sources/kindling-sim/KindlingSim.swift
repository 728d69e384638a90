import ArgumentParser
import Foundation
import KindlingSimulation

/// `kindling-sim`: runs a scenario of the mesh on virtual time and prints what it measured (tools/sim/README.md).
/// The flags are a contract for scripts; so are the keys of the `--json` object.
@main
enum KindlingSimMain {
    static func main() {
        DeterministicHashing.ensure()
        KindlingSim.main()
    }
}

/// Swift seeds its hash function per process (and per dictionary), so iterating a Dictionary or Set, which the
/// mesh state machines do, yields a different order in every run. With SWIFT_DETERMINISTIC_HASHING set when the
/// process starts it does not: the simulator re-executes itself with it, so one seed gives one report.
enum DeterministicHashing {
    static let variable = "SWIFT_DETERMINISTIC_HASHING"

    static func ensure() {
        guard ProcessInfo.processInfo.environment[variable] == nil else { return }
        setenv(variable, "1", 1)
        let arguments = CommandLine.arguments.map { strdup($0) } + [nil]
        execv("/proc/self/exe", arguments)
        // Still here: exec failed. Run anyway; only the order of equal-time events may differ between runs.
        let warning = "kindling-sim: cannot re-execute with \(variable)=1; runs may differ\n"
        FileHandle.standardError.write(Data(warning.utf8))
    }
}

struct KindlingSim: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kindling-sim",
        abstract: "Simulate a Kindling mesh of many nodes on virtual time and report gossip and transfer figures.")

    @Option(name: .long, help: "Scenario file (JSON, tools/sim/README.md); the built-in small scenario without it.")
    var scenario: String?

    @Option(name: .long, help: "Number of nodes (overrides the scenario).")
    var nodes: Int?

    @Option(name: .long, help: "Number of offices (overrides the scenario).")
    var offices: Int?

    @Option(name: .long, help: "Seed of the random generator (overrides the scenario).")
    var seed: UInt64?

    @Flag(name: .long, help: "Print one JSON object instead of a table.")
    var json = false

    func validate() throws {
        if let nodes, nodes < 1 { throw ValidationError("--nodes must be at least 1 (got \(nodes))") }
        if let offices, offices < 0 { throw ValidationError("--offices must be at least 0 (got \(offices))") }
    }

    func run() throws {
        var chosen = Scenario()
        do {
            if let scenario { chosen = try Scenario.load(path: scenario) }
            if let nodes { chosen.nodes = nodes }
            if let offices { chosen.offices = offices }
            if let seed { chosen.randomSeed = seed }
            // An override of --nodes alone may leave more offices than nodes: fewer offices then, not an error.
            if offices == nil { chosen.offices = min(chosen.offices, chosen.nodes) }
            try chosen.validate(origin: scenario ?? "built-in scenario")
        } catch {
            throw ValidationError(error.description)
        }
        let report = try MeshSimulationRunner.run(chosen)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            let data = try encoder.encode(report)
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(report.table)
        }
    }
}
