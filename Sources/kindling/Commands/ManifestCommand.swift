import ArgumentParser
import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingStore

struct ManifestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "manifest", abstract: "Show, export or import manifests.",
        subcommands: [Show.self, Export.self, Import.self])

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a manifest from the store or a file.")

        @OptionGroup var storeOptions: StoreOptions
        @Argument(help: "A manifest id (or unique prefix) in the store, or a manifest file.") var manifest: String
        @Flag(name: .long, help: "List every entry.") var entries = false
        @Flag(name: .long, help: "Print JSON.") var json = false

        struct Output: Encodable {
            struct Entry: Encodable {
                var path: String
                var kind: String
                var mode: String
                var size: Int
                var chunks: Int
                var target: String?
            }
            var id: String
            var repository: String
            var commit: String
            var createdAt: String
            var publisher: String
            var cacheKey: [String: String]
            var entryCount: Int
            var fileBytes: Int
            var chunkReferences: Int
            var extraFields: [String]
            var entries: [Entry]?
        }

        func run() async throws {
            try await reportingErrors {
                let value: Manifest
                if FileManager.default.fileExists(atPath: manifest) {
                    value = try loadManifestFile(manifest, policy: nil)
                } else {
                    let store = try storeOptions.openExisting()
                    let id = try resolveManifestID(manifest, in: store)
                    guard let found = try store.manifest(id) else {
                        throw CommandFailure("the store has only the header of \(id.short)")
                    }
                    value = found
                }
                let header = value.header
                let output = Output(
                    id: value.id.hex, repository: header.repository, commit: header.commit,
                    createdAt: Format.date(nanoseconds: header.createdAt), publisher: header.publisher.text,
                    cacheKey: header.cacheKey, entryCount: header.entryCount, fileBytes: header.fileByteCount,
                    chunkReferences: header.chunkReferenceCount, extraFields: value.body.extra.keys.sorted(),
                    entries: entries
                        ? value.body.entries.map {
                            Output.Entry(
                                path: $0.path, kind: "\($0.kind)", mode: String($0.mode, radix: 8), size: $0.size,
                                chunks: $0.chunks.count, target: $0.symlinkTarget)
                        } : nil)
                if json {
                    print(Format.json(output))
                    return
                }
                print("manifest   \(output.id)")
                print("repository \(output.repository)")
                print("commit     \(output.commit)")
                print("created    \(output.createdAt)")
                print("publisher  \(output.publisher)")
                for (key, keyValue) in output.cacheKey.sorted(by: { $0.key < $1.key }) {
                    print("cache key  \(key)=\(keyValue)")
                }
                print(
                    "entries    \(output.entryCount) (\(Format.bytes(output.fileBytes)) in \(output.chunkReferences) "
                        + "chunk references)"
                )
                if !output.extraFields.isEmpty { print("extra      \(output.extraFields.joined(separator: ", "))") }
                for entry in output.entries ?? [] {
                    print(
                        "\(entry.kind.prefix(4))  \(entry.mode)  "
                            + "\(entry.size)\t\(entry.path)\(entry.target.map { " -> \($0)" } ?? "")"
                    )
                }
            }
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write a stored manifest to a file.")

        @OptionGroup var storeOptions: StoreOptions
        @Argument(help: "A manifest id or unique prefix.") var manifest: String
        @Option(name: .long, help: "The file to write.") var out: String

        func run() async throws {
            try await reportingErrors {
                let store = try storeOptions.openExisting()
                let id = try resolveManifestID(manifest, in: store)
                guard let found = try store.manifest(id) else {
                    throw CommandFailure("the store has only the header of \(id.short)")
                }
                try Data(ManifestFile.encode(found)).write(to: URL(fileURLWithPath: out), options: .atomic)
                print(out)
            }
        }
    }

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a manifest file to the store, if the trust file accepts it.")

        @OptionGroup var storeOptions: StoreOptions
        @Argument(help: "The manifest file.") var file: String
        @Option(name: .long, help: "The trust file.") var trust: String

        func run() async throws {
            try await reportingErrors {
                let policy = try loadTrustPolicy(trust)
                let manifest = try loadManifestFile(file, policy: nil)
                let trusted = try policy.verify(manifest)
                let store = try storeOptions.open()
                try store.saveManifest(trusted)
                let missing = try store.missingChunks(of: manifest)
                print(
                    "imported \(manifest.id.hex) (\(manifest.header.repository)@\(manifest.header.commit)); "
                        + "\(missing.count) chunks not in the store yet")
            }
        }
    }
}

struct Pin: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Keep a snapshot's chunks through gc.")
    @OptionGroup var storeOptions: StoreOptions
    @Argument(help: "A manifest id or unique prefix.") var manifest: String

    func run() async throws {
        try await reportingErrors {
            let store = try storeOptions.open()
            let id = try resolveManifestID(manifest, in: store)
            try store.pin(id, reason: "pinned by hand")
            print("pinned \(id.hex)")
        }
    }
}

struct Unpin: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Let gc evict a snapshot's chunks again.")
    @OptionGroup var storeOptions: StoreOptions
    @Argument(help: "A manifest id or unique prefix.") var manifest: String

    func run() async throws {
        try await reportingErrors {
            let store = try storeOptions.open()
            let id = try resolveManifestID(manifest, in: store)
            try store.unpin(id)
            print("unpinned \(id.hex)")
        }
    }
}
