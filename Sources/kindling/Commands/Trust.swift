import ArgumentParser
import Foundation
import KindlingCrypto
import KindlingManifest

struct TrustCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trust",
        abstract: "Manage the publisher keys a node accepts (Specs/trust.md).",
        discussion: "add, list, revoke and retire edit a local trust file (version 1, unsigned); init, edit, sign "
            + "and show work on a trust document signed by the project's root keys; publish hands one to the node.",
        subcommands: [
            Add.self, List.self, Revoke.self, Retire.self, Init.self, Edit.self, Sign.self, Show.self,
            PublishDocument.self,
        ])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a publisher key to a trust file (created if missing).")

        @Option(name: .long, help: "The trust file.") var file: String
        @Option(name: .long, help: "A unique name for the key, such as 'bors-2026'.") var name: String
        @Option(name: .long, help: "The public key, as printed by 'kindling keygen' (ed25519:<hex>).")
        var publicKey: String
        @Option(
            name: .long, parsing: .singleValue,
            help: "Repositories the key may sign for: a glob ('*' within a segment, '**' across). Repeatable; required."
        )
        var repos: [String] = []
        @Option(name: .long, help: "Reject manifests created before this ISO 8601 time.") var validFrom: String?
        @Option(name: .long, help: "Reject manifests created after this ISO 8601 time.") var validUntil: String?

        func validate() throws {
            // A key trusted for every repository is a choice to make on purpose, never a default.
            guard !repos.isEmpty else {
                throw ValidationError(
                    "give --repos GLOB: the repositories this key may sign for (for example 'rust-lang/*'; "
                        + "'**' trusts it for every repository)")
            }
        }

        func run() async throws {
            try await reportingErrors {
                var trust = FileManager.default.fileExists(atPath: file) ? try TrustFile.load(path: file) : TrustFile()
                let key = try PublicKey(text: publicKey)
                if trust.keys.contains(where: { $0.name == name || $0.publicKey == key }) {
                    throw TrustError.duplicateKey(name: name)
                }
                let globs = repos.flatMap { $0.split(separator: ",").map(String.init) }
                trust.keys.append(
                    TrustedKey(
                        name: name, publicKey: key,
                        repositories: globs.map(RepositoryGlob.init),
                        validFrom: try validFrom.map { try parseTime($0, option: "--valid-from") },
                        validUntil: try validUntil.map { try parseTime($0, option: "--valid-until") }))
                try trust.save(path: file)
                print("added key '\(name)' (\(key.text)) to \(file)")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the keys of a trust file.")

        @Option(name: .long, help: "The trust file.") var file: String
        @Flag(name: .long, help: "Print JSON.") var json = false

        func run() async throws {
            try await reportingErrors {
                let trust = try TrustFile.load(path: file)
                if json {
                    print(String(decoding: trust.encoded(), as: UTF8.self), terminator: "")
                    return
                }
                if trust.keys.isEmpty { print("(no keys)") }
                for key in trust.keys {
                    let status = key.revoked ? "REVOKED" : "active"
                    let from = key.validFrom.map(TrustFile.formatDate) ?? "-"
                    let until = key.validUntil.map(TrustFile.formatDate) ?? "-"
                    let repositories = key.repositories.map(\.pattern).joined(separator: ",")
                    let window = "from \(from) until \(until)"
                    print("\(key.name)\t\(key.publicKey.text)\trepos=\(repositories)\t\(window)\t\(status)")
                }
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Mark a key as revoked: every manifest it signed is rejected from now on (for leaked keys).")

        @Option(name: .long, help: "The trust file.") var file: String
        @Option(name: .long, help: "The key's name.") var name: String

        func run() async throws {
            try await reportingErrors {
                try update(file: file, name: name) { $0.revoked = true }
                print("revoked key '\(name)' in \(file)")
            }
        }
    }

    struct Retire: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop accepting manifests a key creates after a time (for key rotation; older ones stay valid).")

        @Option(name: .long, help: "The trust file.") var file: String
        @Option(name: .long, help: "The key's name.") var name: String
        @Option(name: .long, help: "ISO 8601 time (default: now).") var at: String?

        func run() async throws {
            try await reportingErrors {
                let time = try at.map { try parseTime($0, option: "--at") } ?? Date()
                try update(file: file, name: name) { $0.validUntil = time }
                print("key '\(name)' accepts manifests created until \(TrustFile.formatDate(time))")
            }
        }
    }
}

private func update(file: String, name: String, _ change: (inout TrustedKey) -> Void) throws {
    var trust = try TrustFile.load(path: file)
    guard let index = trust.keys.firstIndex(where: { $0.name == name }) else {
        throw CommandFailure("\(file) has no key named '\(name)' (see 'kindling trust list --file \(file)')")
    }
    change(&trust.keys[index])
    try trust.save(path: file)
}

func parseTime(_ text: String, option: String) throws -> Date {
    guard let date = TrustFile.parseDate(text) else {
        throw ValidationError("\(option) '\(text)' is not an ISO 8601 time like 2026-01-31T00:00:00Z")
    }
    return date
}
