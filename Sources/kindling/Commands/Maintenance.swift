import ArgumentParser
import Foundation
import KindlingStore

struct Verify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-hash every chunk in the store and check every manifest.",
        discussion: "Exits with status 1 when anything is corrupt or missing.")

    @OptionGroup var storeOptions: StoreOptions
    @Flag(name: .long, help: "Drop corrupt or missing chunks from the index so that they are fetched again.")
    var repair = false
    @Flag(name: .long, help: "Print JSON.") var json = false

    func run() async throws {
        try await reportingErrors {
            let store = try storeOptions.openExisting()
            let (bar, progress) = ProgressBar.handler(label: "verifying")
            let report = try store.verify(repair: repair, progress: progress)
            bar?.finish()
            if json {
                print(Format.json(report))
            } else {
                print("checked \(report.checkedChunks) chunks (\(Format.bytes(report.checkedBytes)))")
                for id in report.corruptChunks { print("corrupt chunk \(id)") }
                for id in report.missingChunks { print("missing chunk \(id)") }
                for id in report.badManifests { print("unreadable manifest \(id)") }
                if report.isHealthy {
                    print("store is healthy")
                } else {
                    print(
                        "\(report.corruptChunks.count) corrupt, \(report.missingChunks.count) missing chunks, "
                            + "\(report.badManifests.count) unreadable manifests"
                            + (report.repaired
                                ? "; removed from the index, fetch again to repair"
                                : "; run 'kindling verify --repair'"))
                }
            }
            if !report.isHealthy { throw ExitCode.failure }
        }
    }
}

struct GarbageCollect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Evict least recently used chunks down to a size cap, and sweep leftovers of killed writers.",
        discussion: "Chunks of pinned snapshots are never evicted.")

    @OptionGroup var storeOptions: StoreOptions
    @Option(name: .long, help: "Keep the store's chunks at or below this size (e.g. 500M, 20G).") var maxSize: String
    @Flag(name: .long, help: "Print JSON.") var json = false

    func run() async throws {
        try await reportingErrors {
            guard let limit = ByteSize.parse(maxSize) else {
                throw ValidationError("--max-size '\(maxSize)' is not a size like 500M or 20G")
            }
            let store = try storeOptions.openExisting()
            var report = try store.collectGarbage(maxStoredBytes: limit, waitForLeases: false)
            if report.skippedWhileLeased {
                Terminal.printNote("a publish, restore or fetch is using the store; gc waits for it to finish")
                report = try store.collectGarbage(maxStoredBytes: limit)
            }
            if json {
                print(Format.json(report))
                return
            }
            print(
                "evicted \(report.evictedChunks) chunks (\(Format.bytes(report.freedBytes))); "
                    + "store now \(Format.bytes(report.storedBytesAfter)), "
                    + "of which pinned \(Format.bytes(report.pinnedBytes))"
            )
            if report.orphanFilesRemoved + report.temporaryFilesRemoved > 0 {
                print(
                    "removed \(report.orphanFilesRemoved) orphan chunk files and \(report.temporaryFilesRemoved) "
                        + "temporary files"
                )
            }
            if report.pinnedExceedCap {
                Terminal.printWarning("pinned snapshots alone exceed \(maxSize); unpin some to get below the cap")
            }
        }
    }
}

struct StoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store", abstract: "Inspect the store.", subcommands: [Stats.self])

    struct Stats: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show what the store holds.")
        @OptionGroup var storeOptions: StoreOptions
        @Flag(name: .long, help: "Print JSON.") var json = false

        func run() async throws {
            try await reportingErrors {
                let stats = try storeOptions.openExisting().statistics()
                if json {
                    print(Format.json(stats))
                    return
                }
                print("store      \(stats.root)")
                print(
                    "chunks     \(stats.chunkCount): \(Format.bytes(stats.plainBytes)) plain, "
                        + "\(Format.bytes(stats.storedBytes)) on disk"
                )
                if stats.plainBytes > 0 {
                    print(
                        String(
                            format: "ratio      %.2fx compression",
                            Double(stats.plainBytes) / Double(max(1, stats.storedBytes))))
                }
                print(
                    "snapshots  \(stats.manifestCount) known, \(stats.completeManifestCount) complete, "
                        + "\(stats.pinnedManifestCount) pinned"
                )
            }
        }
    }
}
