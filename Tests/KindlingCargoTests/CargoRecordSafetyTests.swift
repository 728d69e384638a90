import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingTesting
import Testing

@testable import KindlingCargo

/// A cargo record arrives inside a signed manifest: its folder names and times are as hostile as its paths.
@Suite("Cargo record: hostile profile folders and times")
struct CargoRecordSafetyTests {
    func record(profiles: [String], mtime: UInt64 = 1) -> CargoRecord {
        CargoRecord(
            root: "/tmp/kindling-build/demo", workspaceDirectory: "", profileDirectories: profiles,
            sources: [.init(path: "src/lib.rs", size: 1, digest: Blake2b.hash([1]), modificationTime: mtime)],
            directories: [.init(path: "src", names: Blake2b.hash([2]), modificationTime: mtime)], externalInputs: [])
    }

    @Test("Profile folders are checked as path components: no '..', no absolute path, no empty or NUL")
    func profileFolders() throws {
        for good in ["debug", "release", "my-profile", "x86_64-unknown-linux-gnu/debug"] {
            #expect(try CargoRecord(decoding: record(profiles: [good]).encoded()).profileDirectories == [good])
        }
        let evils = ["..", "../..", "../../home", "/etc", "", ".", "debug/../..", "de\0bug", "a//b", "debug/", "a/b/c"]
        for evil in evils {
            #expect(throws: CargoError.self, "\(evil.debugDescription)") {
                try CargoRecord(decoding: record(profiles: [evil]).encoded())
            }
        }
    }

    @Test("Record times past what a clock holds are refused; the restore's wait never overflows")
    func timeEdges() throws {
        #expect(throws: CargoError.self) {
            try CargoRecord(decoding: record(profiles: ["debug"], mtime: .max).encoded())
        }
        let edge = try CargoRecord(decoding: record(profiles: ["debug"], mtime: UInt64(Int64.max)).encoded())
        #expect(edge.sources.count == 1)
        // The newest output of a manifest decides the wait: at the very edge it is a refusal, not a trap.
        for newest in [UInt64.max, UInt64.max - 1, ManifestLimits.maxModificationTime] {
            #expect(throws: CargoError.self) { try CargoRestoring.waitUntilPast(newestOutput: newest) }
        }
    }

    @Test("Inputs whose names differ only in Unicode normalization are two inputs, not one")
    func inputsByBytes() {
        let nfc = "/data/\u{E9}.txt"
        let nfd = "/data/e\u{301}.txt"
        let inputs = BuildInputs.dependencies(inMakefile: "out.rmeta: \(nfd) \(nfc) \(nfc)\n")
        #expect(inputs.map { Array($0.utf8) } == [Array(nfd.utf8), Array(nfc.utf8)])
    }
}

extension CargoRecordSafetyTests {
    @Test("Freshness repair tells an NFC and an NFD source apart: neither gets the other's recorded content")
    func repairKeysByBytes() throws {
        let directory = TemporaryDirectory("repair-bytes")
        let nfc = "\u{E9}.rs"
        let nfd = "e\u{301}.rs"
        // CI built X under the NFC name and Y under the NFD name; the checkout now has X under both.
        try Fixtures.write("X", to: directory.file(nfc))
        try Fixtures.write("X", to: directory.file(nfd))
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []).count == 2)
        for arguments in [
            ["init", "-q"], ["add", "-A"], ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "c"],
        ] {
            #expect(try CommandRunner.run("/usr/bin/git", arguments, directory: directory.path).status == 0)
        }
        let record = CargoRecord(
            root: "/tmp/kindling-build/demo", workspaceDirectory: "", profileDirectories: ["debug"],
            sources: [
                .init(path: nfc, size: 1, digest: Blake2b.hash(Array("X".utf8)), modificationTime: 5),
                .init(path: nfd, size: 1, digest: Blake2b.hash(Array("Y".utf8)), modificationTime: 6),
            ],
            directories: [], externalInputs: [])
        let repair = FreshnessRepair(
            record: record, checkout: try GitCheckout(containing: directory.path),
            root: BuildRoot(path: "/tmp/kindling-build/demo"), targetDirectory: directory.file("target"),
            atBuildRoot: true)
        let plan = try repair.plan()
        // Keyed by String, both names found the NFC record (X): the changed NFD file kept CI's time (stale).
        #expect(plan.report.unchanged == 1, "\(plan.report)")
        #expect(plan.report.changed == 1, "\(plan.report)")
    }
}
