import ArgumentParser
import KindlingCrypto
import KindlingManifest
import KindlingStore

struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the snapshots in the store, newest first.")

    @OptionGroup var storeOptions: StoreOptions
    @Option(name: .long, help: "Only this repository.") var repo: String?
    @Option(name: .long, help: "Only this commit.") var commit: String?
    @Flag(name: .long, help: "Print JSON.") var json = false

    func validate() throws {
        try validateRepositoryOption(repo)
    }

    struct Row: Encodable {
        var id: String
        var repository: String
        var commit: String
        var createdAt: String
        var publisher: String
        var cacheKey: [String: String]
        /// Entries of the tree: files, directories and symlinks.
        var entries: Int
        var bytes: Int
        var hasBody: Bool
        var pinned: Bool
    }

    func run() async throws {
        try await reportingErrors {
            let store = try storeOptions.openExisting()
            let repository = try repositoryOption(repo)
            let rows = try store.manifestSummaries(repository: repository, commit: commit).map { summary in
                Row(
                    id: summary.id.hex, repository: summary.header.repository, commit: summary.header.commit,
                    createdAt: Format.date(nanoseconds: summary.header.createdAt),
                    publisher: summary.header.publisher.text, cacheKey: summary.header.cacheKey,
                    entries: summary.header.entryCount, bytes: summary.header.fileByteCount, hasBody: summary.hasBody,
                    pinned: summary.pinned)
            }
            if json {
                print(Format.json(rows))
                return
            }
            if rows.isEmpty { print("(no snapshots)") }
            for row in rows {
                let flags = (row.pinned ? " pinned" : "") + (row.hasBody ? "" : " header-only")
                print(
                    "\(row.id.prefix(16))  \(row.repository)@\(row.commit)  \(row.createdAt)  "
                        + "\(Format.bytes(row.bytes))\(flags)"
                )
            }
        }
    }
}
