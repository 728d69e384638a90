import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingTesting
import Testing

/// `kindling trust init | edit | sign | show` through the real binary, as the roots' holders would run them.
@Suite("CLI: trust documents", .serialized)
struct TrustDocumentCLITests {
    /// Three root keys (made by `kindling keygen`), a bors key and the path of a document.
    final class Roots {
        let directory = TemporaryDirectory("trustdoc")
        var document: String { directory.file("trust-document.json") }
        private(set) var publicKeys: [String: String] = [:]

        init(_ names: [String] = ["a", "b", "c", "bors"]) throws {
            for name in names {
                let keygen = try CommandRunner.kindling(["keygen", "--secret-key", key(name)])
                #expect(keygen.status == 0, "\(keygen)")
                publicKeys[name] = keygen.lastLine
            }
        }

        func key(_ name: String) -> String { directory.file("\(name).key") }
        func pub(_ name: String) -> String { publicKeys[name] ?? "" }

        @discardableResult
        func kindling(_ arguments: [String]) throws -> CommandResult { try CommandRunner.kindling(arguments) }

        func initialize(extra: [String] = []) throws {
            let result = try kindling(
                [
                    "trust", "init", "--out", document, "--root", pub("a"), "--root", pub("b"), "--root", pub("c"),
                    "--threshold", "2",
                ] + extra)
            #expect(result.status == 0, "\(result)")
        }

        func sign(_ name: String, _ path: String? = nil, extra: [String] = []) throws -> CommandResult {
            try kindling(["trust", "sign", path ?? document, "--root-key", key(name)] + extra)
        }

        func show(_ extra: [String] = []) throws -> CommandResult {
            try kindling(["trust", "show", document] + extra)
        }
    }

    @Test("init, edit, then 2 of 3 roots sign in separate runs: show says valid")
    func initEditSignShow() throws {
        let roots = try Roots()
        try roots.initialize()
        let edit = try roots.kindling(
            ["trust", "edit", roots.document, "--add-key", "bors=" + roots.pub("bors"), "--repos", "rust-lang/*"])
        #expect(edit.status == 0, "\(edit)")
        #expect(try roots.sign("a").status == 0)
        let one = try roots.show()
        expectCleanFailure(one, mentioning: "1 of 2 required signatures")
        #expect(one.stderr.contains("missing a signature from"))
        #expect(one.stdout.contains("version: 2"), "\(one)")
        #expect(try roots.sign("c").status == 0)
        let valid = try roots.show()
        #expect(valid.status == 0, "\(valid)")
        #expect(valid.stdout.contains("bors  " + roots.pub("bors")), "\(valid)")
        #expect(valid.lastLine.hasPrefix("valid under its roots"), "\(valid)")

        // The same under the roots a node would be configured with; and not under others.
        let configured = try roots.show(
            ["--root", roots.pub("a"), "--root", roots.pub("b"), "--root", roots.pub("c"), "--threshold", "2"])
        #expect(configured.status == 0, "\(configured)")
        let other = try roots.show(["--root", roots.pub("bors"), "--threshold", "1"])
        expectCleanFailure(other, mentioning: "not the given roots")

        let decoded = try SignedTrustDocument.decode(try #require(Fixtures.read(roots.document)))
        #expect(decoded.document.version == 2)
        #expect(decoded.signatures.count == 2)
    }

    @Test("Tampering one byte of the signed content makes show fail")
    func tampered() throws {
        let roots = try Roots()
        try roots.initialize()
        let edit = try roots.kindling(
            ["trust", "edit", roots.document, "--add-key", "bors=" + roots.pub("bors"), "--repos", "rust-lang/*"])
        #expect(edit.status == 0, "\(edit)")
        #expect(try roots.sign("a").status == 0)
        #expect(try roots.sign("b").status == 0)
        #expect(try roots.show().status == 0)
        let text = try #require(Fixtures.read(roots.document).map { String(decoding: $0, as: UTF8.self) })
        // One byte: the glob's '*' becomes '?'.
        let changed = text.replacingOccurrences(of: "\"rust-lang/*\"", with: "\"rust-lang/?\"")
        #expect(changed.utf8.count == text.utf8.count)
        #expect(changed != text)
        try Data(changed.utf8).write(to: URL(fileURLWithPath: roots.document))
        expectCleanFailure(try roots.show(), mentioning: "0 of 2 required signatures")
    }

    @Test("edit bumps the version and drops signatures; sign is idempotent and refuses non-roots")
    func editAndSign() throws {
        let roots = try Roots()
        try roots.initialize()
        #expect(try roots.sign("a").status == 0)
        let before = try #require(Fixtures.read(roots.document))
        #expect(try roots.sign("a").status == 0)
        #expect(Fixtures.read(roots.document) == before, "signing twice with one key changed the file")

        let notRoot = try roots.sign("bors")
        expectCleanFailure(notRoot, mentioning: "not a root")
        // A root key file others can read is refused, as every secret key file is.
        #expect(chmod(roots.key("b"), 0o644) == 0)
        expectCleanFailure(try roots.sign("b"), mentioning: "readable by others")
        #expect(Fixtures.read(roots.document) == before)
        let id = Blake2b.hash(Array("a manifest".utf8)).hex
        let edit = try roots.kindling(["trust", "edit", roots.document, "--withdraw", id, "--expires", "12h"])
        #expect(edit.status == 0, "\(edit)")
        let edited = try SignedTrustDocument.decode(try #require(Fixtures.read(roots.document)))
        #expect(edited.document.version == 2)
        #expect(edited.signatures.isEmpty)
        #expect(edited.document.withdrawn.map(\.hex) == [id])
        #expect(abs(edited.document.expires.timeIntervalSinceNow - 12 * 3600) < 60)

        let revoke = try roots.kindling(["trust", "edit", roots.document, "--revoke", "nobody"])
        expectCleanFailure(revoke, mentioning: "no key named 'nobody'")
        let again = try roots.kindling([
            "trust", "init", "--out", roots.document, "--root", roots.pub("a"),
            "--threshold", "1",
        ])
        expectCleanFailure(again, mentioning: "already exists")
    }

    @Test("A rotation: the new roots and a threshold of the previous roots sign; show checks it against PREV")
    func rotation() throws {
        let roots = try Roots(["a", "b", "c", "x", "y", "bors"])
        try roots.initialize()
        #expect(try roots.sign("a").status == 0)
        #expect(try roots.sign("b").status == 0)
        let previous = roots.directory.file("v1.json")
        try FileManager.default.copyItem(atPath: roots.document, toPath: previous)
        let edit = try roots.kindling(
            ["trust", "edit", roots.document, "--set-roots", roots.pub("x") + "," + roots.pub("y"), "--threshold", "2"])
        #expect(edit.status == 0, "\(edit)")
        // An old root may sign only when told the previous version.
        expectCleanFailure(try roots.sign("a"), mentioning: "not a root")
        #expect(try roots.sign("a", extra: ["--previous", previous]).status == 0)
        #expect(try roots.sign("x").status == 0)
        #expect(try roots.sign("y").status == 0)
        #expect(try roots.show().status == 0, "valid under its own roots")
        expectCleanFailure(try roots.show(["--previous", previous]), mentioning: "1 of 2 required signatures")
        #expect(try roots.sign("c", extra: ["--previous", previous]).status == 0)
        let shown = try roots.show(["--previous", previous])
        #expect(shown.status == 0, "\(shown)")
        #expect(shown.lastLine.contains("version 1's roots"), "\(shown)")
    }

    @Test("Bad durations, thresholds and keys are refused with a message")
    func badInput() throws {
        let roots = try Roots(["a"])
        for duration in ["90", "0", "-5d", "1w", "d", "12 h", "1.5d", "99999999d"] {
            let result = try roots.kindling(
                [
                    "trust", "init", "--out", roots.document, "--root", roots.pub("a"), "--threshold", "1",
                    "--expires=" + duration,
                ])
            if duration == "90" {
                #expect(result.status == 0, "\(result)")
                try FileManager.default.removeItem(atPath: roots.document)
            } else {
                #expect(result.status != 0, "duration \(duration): \(result)")
                #expect(result.stderr.contains("not a duration"), "\(result)")
            }
        }
        let zero = try roots.kindling(
            ["trust", "init", "--out", roots.document, "--root", roots.pub("a"), "--threshold", "0"])
        expectCleanFailure(zero, mentioning: "below 1")
        let tooHigh = try roots.kindling(
            ["trust", "init", "--out", roots.document, "--root", roots.pub("a"), "--threshold", "2"])
        expectCleanFailure(tooHigh, mentioning: "above the 1 root keys")
        #expect(!FileManager.default.fileExists(atPath: roots.document))
    }
}
