import ArgumentParser
import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingSnapshot

struct Publish: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Capture a directory into the store as a signed snapshot.",
        discussion: "Prints a summary, and the manifest id as the last line of stdout.")

    @OptionGroup var storeOptions: StoreOptions
    @Option(name: .long, help: "The publisher's secret key file (from 'kindling keygen').") var secretKey: String
    @Option(name: .long, help: "The repository name, such as rust-lang/rust.") var repo: String
    @Option(name: .long, help: "The commit (or other revision name) this is the build state of.") var commit: String
    @Option(name: .long, help: "The directory to capture.") var dir: String
    @Option(name: .long, parsing: .singleValue, help: "A cache key entry KEY=VALUE (repeatable).")
    var keyValue: [String] = []
    @Flag(name: .long, help: "Pin the snapshot so that gc never evicts it.") var pin = false

    func run() async throws {
        try await reportingErrors {
            let cacheKey = try parseKeyValues(keyValue)
            let key = try SecretKeyFile.load(path: secretKey)
            let store = try storeOptions.open()
            let (bar, progress) = ProgressBar.handler(label: "capturing")
            let request = PublishRequest(
                repository: repo, commit: commit, directory: dir, cacheKey: cacheKey, pin: pin)
            let result = try Publisher(store: store, key: key).publish(request, progress: progress)
            bar?.finish()
            let summary = result.summary
            print(
                "captured \(summary.files) files, \(summary.directories) directories, \(summary.symlinks) symlinks "
                    + "(\(Format.bytes(summary.bytes))) in \(Format.seconds(summary.seconds)), "
                    + Format.rate(bytes: summary.bytes, seconds: summary.seconds))
            print(
                "\(summary.chunks) chunks, \(summary.newChunks) new: \(Format.bytes(summary.newBytes)) added, "
                    + "\(Format.bytes(summary.newStoredBytes)) on disk compressed")
            if summary.skippedSpecialFiles > 0 {
                Terminal.printWarning("skipped \(summary.skippedSpecialFiles) sockets, FIFOs or devices")
            }
            print("repository \(repo) commit \(commit)")
            print(result.manifest.id.hex)
        }
    }
}
