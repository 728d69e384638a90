import Foundation
import KindlingTesting
import Testing

/// Random edits over several commits; after each, the developer restores the nearest ancestor's snapshot and
/// builds, and the program's output and test results must equal a clean build's. Set KINDLING_DIFF_SEED to
/// replay a run; KINDLING_DIFF_ROUNDS to make it longer.
@Suite("Cargo: differential")
struct DifferentialTests {
    enum Edit: CaseIterable {
        case coreConstant, newModule, table, banner, lockToggle, appText
    }

    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static func apply(_ edit: Edit, round: Int, to checkout: String, random: inout Generator) throws {
        switch edit {
        case .coreConstant:
            try CargoEdits.changeCoreConstant(in: checkout, to: Int.random(in: 1...1000, using: &random))
        case .newModule:
            // Two edits of one round may both add a module: each gets a name of its own.
            var name = "extra\(round)"
            while FileManager.default.fileExists(atPath: checkout + "/crates/core/src/\(name).rs") { name += "b" }
            try """
            pub fn value() -> u64 { \(Int.random(in: 1...1000, using: &random)) }
            """.write(toFile: checkout + "/crates/core/src/\(name).rs", atomically: true, encoding: .utf8)
            let lib = checkout + "/crates/core/src/lib.rs"
            var text = try String(contentsOfFile: lib, encoding: .utf8)
            text = text.replacingOccurrences(
                of: "pub const CORE_TAG",
                with: "pub mod \(name);\npub fn \(name)_value() -> u64 { \(name)::value() }\npub const CORE_TAG")
            try text.write(toFile: lib, atomically: true, encoding: .utf8)
        case .table:
            let path = checkout + "/crates/gen/data/table.txt"
            try (try String(contentsOfFile: path, encoding: .utf8) + "\(Int.random(in: 1...99, using: &random))\n")
                .write(toFile: path, atomically: true, encoding: .utf8)
        case .banner:
            try "banner-r\(round)\n".write(toFile: checkout + "/shared/banner.txt", atomically: true, encoding: .utf8)
        case .lockToggle:
            let lockPath = checkout + "/Cargo.lock"
            var lock = try String(contentsOfFile: lockPath, encoding: .utf8)
            if lock.contains("name = \"relocmark\"\nversion = \"0.1.1\"") {
                try CargoEdits.apply(.cargoLock, to: checkout)
            } else {
                lock = lock.replacingOccurrences(
                    of: "name = \"relocmark\"\nversion = \"0.1.0\"", with: "name = \"relocmark\"\nversion = \"0.1.1\"")
                lock = lock.replacingOccurrences(
                    of: CargoEdits.checksum("relocmark-0.1.0"), with: CargoEdits.checksum("relocmark-0.1.1"))
                try lock.write(toFile: lockPath, atomically: true, encoding: .utf8)
            }
        case .appText:
            let path = checkout + "/crates/app/src/main.rs"
            let text = try String(contentsOfFile: path, encoding: .utf8)
            try text.replacingOccurrences(
                of: #""(r[0-9]+ )?core=\{\}"#, with: "\"r\(round) core={}", options: .regularExpression
            )
            .write(toFile: path, atomically: true, encoding: .utf8)
        }
    }

    @Test("Restored builds equal clean builds over random edits (zero mismatches)")
    func randomEdits() throws {
        let environment = ProcessInfo.processInfo.environment
        let seed = environment["KINDLING_DIFF_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...UInt64.max)
        let rounds = environment["KINDLING_DIFF_ROUNDS"].flatMap(Int.init) ?? 4
        var random = Generator(state: seed)
        print("differential test: seed \(seed), \(rounds) rounds (KINDLING_DIFF_SEED=\(seed) replays it)")
        let world = try CargoWorld()
        try world.borsPublish()
        var mismatches: [String] = []
        for round in 1...rounds {
            let edits = (0..<Int.random(in: 1...2, using: &random)).map { _ in
                Edit.allCases.randomElement(using: &random) ?? .coreConstant
            }
            for edit in edits {
                try world.commit("round \(round): \(edit)") {
                    try Self.apply(edit, round: round, to: $0, random: &random)
                }
            }
            // bors publishes some commits, not all: the developer then restores an older ancestor.
            if Bool.random(using: &random) { try world.borsPublish() }
            let buildEnvironment = Bool.random(using: &random) ? ["ENVY_MSG": "round-\(round)"] : [:]
            try world.devCheckout()
            let restore = try world.devRestore(["--replace"])
            guard restore.status == 0 else {
                mismatches.append("round \(round): restore failed: \(restore.stderr)")
                continue
            }
            let build = try world.devBuild(environment: buildEnvironment)
            let restoredApp = try world.app(in: world.dev)
            let restoredTests = try world.devTests(environment: buildEnvironment)
            let clean = try world.cleanBuild(environment: buildEnvironment)
            if restoredApp != clean.app || restoredTests != clean.tests {
                mismatches.append(
                    "round \(round) (\(edits), env \(buildEnvironment)): restored '\(restoredApp)' "
                        + "vs clean '\(clean.app)'; compiled \(build.compiled)"
                )
            }
        }
        #expect(mismatches.isEmpty, "seed \(seed): \(mismatches.joined(separator: "\n"))")
    }
}
