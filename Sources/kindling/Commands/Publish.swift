import ArgumentParser
import Foundation
import KindlingCargo
import KindlingChunking
import KindlingCrypto
import KindlingManifest
import KindlingMesh
import KindlingNode
import KindlingSnapshot

struct Publish: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Capture a directory into the store as a signed snapshot.",
        discussion: "Prints a summary, and the manifest id as the last line of stdout.")

    @OptionGroup var storeOptions: StoreOptions
    @Option(name: .long, help: "The publisher's secret key file (from 'kindling keygen').") var secretKey: String
    @Option(
        name: .long,
        help: """
            The repository name, such as rust-lang/rust (with --cargo: $KINDLING_REPO, git config \
            kindling.repository, else the upstream or origin remote).
            """
    )
    var repo: String?
    @Option(name: .long, help: "The commit (or other revision name) this is the build state of.") var commit: String?
    @Option(name: .long, help: "The directory to capture.") var dir: String?
    @Flag(
        name: .long, help: "Publish the build state of the cargo workspace here (target/ after 'kindling cargo build')."
    )
    var cargo = false
    @Option(name: .long, help: "With --cargo: the workspace's Cargo.toml.") var manifestPath: String?
    @Option(name: .long, help: "With --cargo: the profile that was built (default dev).") var profile: String = "dev"
    @Option(name: .long, help: "With --cargo: the --target triple that was built, if any.") var target: String?
    @Flag(name: .long, help: "With --cargo: publish even with uncommitted changes.") var allowDirty = false
    @Option(name: .long, parsing: .singleValue, help: "A cache key entry KEY=VALUE (repeatable).")
    var keyValue: [String] = []
    @Flag(name: .long, help: "Pin the snapshot so that gc never evicts it.") var pin = false
    @Option(
        name: .long,
        help: """
            The branch this commit is the newest build of, for the signed head record (with --cargo: the branch \
            checked out). Without a branch no head record is signed.
            """
    )
    var branch: String?
    @Option(name: .long, help: "How long the head record holds: 7d (default), 12h, 30m or seconds.")
    var headExpires = "7d"
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Chunk sizes MIN/NORMAL/MAX in bytes, for measurements only (other sizes do not dedup with the standard).",
            visibility: .hidden))
    var chunking: String?

    func validate() throws {
        try validateRepositoryOption(repo)
        if let branch {
            // The head record's rule (Specs/freshness.md), checked before minutes go into a capture.
            guard !branch.isEmpty, branch.utf8.count <= HeadRecord.maximumBranchBytes,
                branch.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7f })
            else {
                throw ValidationError(
                    "--branch must be 1 to \(HeadRecord.maximumBranchBytes) bytes without control characters")
            }
        }
        if cargo {
            guard dir == nil, commit == nil, keyValue.isEmpty else {
                throw ValidationError(
                    "--cargo finds the directory, commit and cache key itself; drop --dir, --commit and --key-value")
            }
        } else if repo == nil || commit == nil || dir == nil {
            throw ValidationError("give --repo, --commit and --dir (or --cargo in a cargo workspace)")
        }
    }

    func run() async throws {
        try await reportingErrors {
            let key = try SecretKeyFile.load(path: secretKey)
            let store = try storeOptions.open()
            let (bar, progress) = ProgressBar.handler(label: "capturing")
            var publisher = Publisher(store: store, key: key)
            let request: PublishRequest
            let lifetime = try parseDuration(headExpires, option: "--head-expires")
            var headBranch = branch
            let headProfile: String
            if cargo {
                let named = try repositoryOption(repo)
                let workspace = try CargoWorkspace.locate(
                    directory: FileManager.default.currentDirectoryPath, manifestPath: manifestPath, repository: named)
                // The build ran at the build root of the name `kindling cargo` derived; another name is another root.
                if let repo, repo != workspace.checkout.repositoryName() {
                    throw CommandFailure(
                        "--repo \(repo) is not the name this checkout builds as "
                            + "(\(workspace.checkout.repositoryName())), so the target was built at another build "
                            + "root; run 'git config \(GitCheckout.repositoryConfigKey) \(repo)' "
                            + "(or set KINDLING_REPO), build with 'kindling cargo build', then publish")
                }
                let prepared = try CargoPublishing(
                    workspace: workspace, root: BuildRoot.forRepository(workspace.repository), profile: profile,
                    targetTriple: target
                ).prepare(allowDirty: allowDirty, pin: pin)
                request = prepared.request
                publisher.capture = prepared.capture
                headProfile = profile
                if headBranch == nil { headBranch = workspace.checkout.currentBranch() }
            } else {
                request = PublishRequest(
                    repository: repo ?? "", commit: commit ?? "", directory: dir ?? "",
                    cacheKey: try parseKeyValues(keyValue), pin: pin)
                headProfile = request.cacheKey["profile"] ?? "default"
            }
            if let chunking { publisher.capture.chunker = Chunker(parameters: try parseChunking(chunking)) }
            let result = try publisher.publish(request, progress: progress)
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
            print("repository \(request.repository) commit \(request.commit)")
            var head: SignedHeadRecord?
            // The snapshot is published either way: a head record that cannot be signed fails the command at the end.
            var headFailure: String?
            if let headBranch {
                do {
                    let keeper = try HeadRecordKeeper(
                        directory: NodeSettings.headStateDirectory(storeRoot: storeOptions.path))
                    let entry = HeadEntry(
                        branch: headBranch, profile: headProfile, commit: request.commit, manifest: result.manifest.id)
                    let signed = try keeper.signNext(
                        repository: try RepositoryName(request.repository), entry: entry, key: key, lifetime: lifetime)
                    head = signed
                    print(
                        "head record \(signed.record.sequence): newest of branch \(headBranch) (\(headProfile)), "
                            + "expires \(TrustFile.formatDate(signed.record.expires))")
                } catch {
                    headFailure = "\(error)"
                }
            } else {
                Terminal.printWarning(
                    "no branch known (a detached HEAD, or --dir without --branch): no head record signed, so nodes "
                        + "cannot tell that this is the newest build; give --branch NAME")
            }
            let client = ControlClient(storeRoot: storeOptions.path)
            if client.isNodeRunning {
                let reply = try client.send(ControlRequest(op: .announce, manifest: result.manifest.id.hex))
                if reply.event == .error {
                    Terminal.printWarning("the local node did not announce it: \(reply.message ?? "unknown error")")
                } else {
                    print("announced to the mesh through the local node")
                }
                if let head {
                    let reply = try client.send(
                        ControlRequest(op: .headPublish, document: Data(head.encoded()).base64EncodedString()))
                    if reply.event == .error {
                        Terminal.printWarning("the local node did not take the head record: \(reply.message ?? "?")")
                    }
                }
            }
            print(result.manifest.id.hex)
            if let headFailure {
                throw CommandFailure(
                    "the snapshot was published, but no head record was signed: \(headFailure); nodes cannot tell "
                        + "that it is the newest build until a publish signs one")
            }
        }
    }
}

private func parseChunking(_ text: String) throws -> ChunkingParameters {
    let parts = text.split(separator: "/").compactMap { Int($0) }
    guard parts.count == 3, parts[0] > 0, parts[0] <= parts[1], parts[1] <= parts[2],
        parts[1].nonzeroBitCount == 1, parts[2] <= 1 << 20
    else {
        throw ValidationError(
            "--chunking wants MIN/NORMAL/MAX with MIN <= NORMAL <= MAX <= 1 MiB and NORMAL a power of two")
    }
    return ChunkingParameters(minSize: parts[0], normalSize: parts[1], maxSize: parts[2])
}
