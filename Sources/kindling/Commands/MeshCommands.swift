import ArgumentParser
import Foundation
import KindlingCargo
import KindlingCrypto
import KindlingManifest
import KindlingMesh
import KindlingNode
import KindlingStore

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the running node: peers, known snapshots, transfers, store use.")

    @OptionGroup var storeOptions: StoreOptions
    @Option(name: .long, help: "Only snapshots of this repository (default: the git checkout here, if any).")
    var repo: String?
    @Flag(name: .long, help: "Snapshots of every repository, even inside a checkout.") var all = false
    @Flag(name: .long, help: "Print JSON.") var json = false

    func validate() throws {
        try validateRepositoryOption(repo)
    }

    struct Output: Encodable {
        var node: MeshStatus?
        var snapshots: [SnapshotInfo]
        var store: StoreStatistics
    }

    func run() async throws {
        try await reportingErrors {
            let store = try storeOptions.open()
            let client = ControlClient(storeRoot: storeOptions.path)
            // Inside a checkout, the snapshots of its repository are the interesting ones.
            let repo =
                all
                ? nil
                : (self.repo
                    ?? (try? GitCheckout(containing: FileManager.default.currentDirectoryPath))?.repositoryName())
            // A checkout's name that no manifest could carry has no snapshots (the option was validated already).
            let name = repo.flatMap { try? RepositoryName($0) }
            var node: MeshStatus?
            var snapshots: [SnapshotInfo] = []
            if repo != nil && name == nil {
                if client.isNodeRunning { node = try client.send(ControlRequest(op: .status)).status }
            } else if client.isNodeRunning {
                node = try client.send(ControlRequest(op: .status)).status
                snapshots = try client.send(ControlRequest(op: .snapshots, repository: name)).snapshots ?? []
            } else {
                snapshots = try store.manifestSummaries(repository: name).map { summary in
                    SnapshotInfo(
                        id: summary.id.hex, repository: summary.header.repositoryName, commit: summary.header.commit,
                        createdAt: summary.header.createdAt, cacheKey: summary.header.cacheKey,
                        bytes: summary.header.fileByteCount, local: summary.hasBody, holders: 0)
                }
            }
            let output = Output(node: node, snapshots: snapshots, store: try store.statistics())
            if json {
                print(Format.json(output))
                return
            }
            if let node {
                print("node       \(node.nodeID), port \(node.listenPort)")
                print("mesh       \(node.transport)")
                print("peers      \(node.peers.count) connected, \(node.bannedPeers) banned")
                print(
                    "gossip     \(node.gossip.accepted) accepted, \(node.gossip.relayed) relayed, "
                        + "\(node.gossip.rejected) rejected"
                )
                if !node.downloads.isEmpty {
                    print("fetching   \(node.downloads.map { String($0.prefix(12)) }.joined(separator: ", "))")
                }
                print("trust      \(node.trustKeys) publisher keys in the policy in force")
                if let trust = node.trust { printTrustStatus(trust) }
                if let problem = node.trustProblem { print("WARNING    \(escapedPeerText(problem))") }
                printHeadRecords((node.heads ?? []).filter { repo == nil || $0.repository == repo })
                for equivocation in node.equivocations {
                    // Already escaped by the node; escaped again in case another program answered on the socket.
                    print("EQUIVOCATION \(escapedPeerText(equivocation.message, limit: 4096))")
                }
            } else {
                print("node       not running (start one with 'kindling node')")
            }
            print("store      \(output.store.chunkCount) chunks, \(Format.bytes(output.store.storedBytes)) on disk")
            print("snapshots  \(snapshots.count)\(repo.map { " of \($0)" } ?? "")")
            for snapshot in snapshots.prefix(20) {
                let holders = snapshot.holders > 0 ? ", \(snapshot.holders) peers hold it" : ""
                print(
                    "  \(snapshot.id.prefix(12))  \(escapedPeerText(snapshot.repository.text))@"
                        + "\(escapedPeerText(String(snapshot.commit.prefix(12))))  "
                        + "\(Format.date(nanoseconds: snapshot.createdAt))  \(Format.bytes(snapshot.bytes))"
                        + "\(snapshot.local ? "  local" : "")\(holders)")
            }
        }
    }
}

/// The root-signed trust document lines of `kindling status`.
func printTrustStatus(_ trust: TrustDocumentStatus) {
    if let version = trust.version {
        let expired = trust.expired ? " (EXPIRED)" : ""
        print("document   trust document version \(version), expires \(trust.expires ?? "?")\(expired)")
    } else {
        print("document   no trust document yet")
    }
    print("roots      \(trust.roots)")
    if let warning = trust.warning { Terminal.printWarning(warning) }
    if let refusal = trust.lastRefusal { print("refused    \(escapedPeerText(refusal))") }
}

/// The head record lines of `kindling status` (Specs/freshness.md): the newest builds bors vouched for, and a
/// warning when the newest record of a repository expired.
func printHeadRecords(_ heads: [HeadRecordStatus]) {
    for head in heads.prefix(20) {
        let expired = head.expired ? " (EXPIRED)" : ""
        print(
            "head       \(escapedPeerText(head.repository)) record \(head.sequence), issued \(head.issued), expires "
                + "\(head.expires)\(expired)")
        for entry in head.entries.prefix(10) {
            print(
                "  \(escapedPeerText(entry.branch)) (\(escapedPeerText(entry.profile)))  "
                    + "\(escapedPeerText(String(entry.commit.prefix(12))))  \(entry.manifest.prefix(12))")
        }
        if let warning = head.warning { Terminal.printWarning(escapedPeerText(warning, limit: 4096)) }
    }
}

struct Peers: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the running node's peers.")

    @OptionGroup var storeOptions: StoreOptions
    @Flag(name: .long, help: "Print JSON.") var json = false

    func run() async throws {
        try await reportingErrors {
            let status = try ControlClient(storeRoot: storeOptions.path).send(ControlRequest(op: .peers)).status
            let peers = status?.peers ?? []
            if json {
                print(Format.json(peers))
                return
            }
            if peers.isEmpty { print("(no peers)") }
            // The agent is the peer's own text, escaped by the node (escapedPeerText) before it got here.
            for peer in peers {
                print(
                    "\(peer.nodeID)  \(peer.address)  \(peer.direction)  up \(Format.bytes(peer.uploaded))  "
                        + "down \(Format.bytes(peer.downloaded))  \(peer.agent)")
            }
        }
    }
}

struct Fetch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fetch a snapshot through the mesh into the store (via the running node).")

    @OptionGroup var storeOptions: StoreOptions
    @Option(name: .long, help: "The repository.") var repo: String?
    @Option(name: .long, help: "The commit.") var commit: String?
    @Option(name: .long, help: "A manifest id instead of --repo and --commit.") var manifest: String?
    @Option(name: .long, parsing: .singleValue, help: "Only snapshots whose cache key has KEY=VALUE (repeatable).")
    var keyValue: [String] = []
    @Flag(name: .long, help: "Print JSON.") var json = false

    func validate() throws {
        try validateRepositoryOption(repo)
        if manifest == nil && (repo == nil || commit == nil) {
            throw ValidationError("give --repo and --commit, or --manifest")
        }
    }

    func run() async throws {
        try await reportingErrors {
            let result = try fetchThroughNode(
                storeRoot: storeOptions.path,
                request: ControlRequest(
                    op: .fetch, manifest: manifest, repository: try repositoryOption(repo), commit: commit,
                    cacheKey: try parseKeyValues(keyValue)),
                quiet: json)
            // The node picked the manifest; what it names is signed, and must be what was asked for.
            if repo != nil || commit != nil {
                try requireFetched(result, repository: repo, commit: commit, storeRoot: storeOptions.path)
            }
            if json {
                print(Format.json(result))
            } else {
                printFetchSummary(result)
            }
        }
    }
}

/// Refuses a fetched manifest whose signed repository or commit is not the one asked for: a node (or whatever
/// answers on its socket) must not swap in another snapshot.
func requireFetched(_ result: FetchResult, repository: String?, commit: String?, storeRoot: String) throws {
    guard let manifest = try ChunkStore(root: storeRoot).manifest(result.manifest) else {
        throw CommandFailure("manifest \(result.manifest.short) is missing from the store after the fetch")
    }
    if let repository, manifest.header.repository != repository {
        throw CommandFailure(
            "the node fetched manifest \(result.manifest.short) of \(manifest.header.repository.debugDescription), "
                + "not of \(repository); it was not used")
    }
    if let commit, manifest.header.commit != commit {
        throw CommandFailure(
            "the node fetched manifest \(result.manifest.short) of commit \(manifest.header.commit.debugDescription), "
                + "not of \(commit); it was not used")
    }
}

/// Asks the local node to fetch, drawing progress; returns what it did.
func fetchThroughNode(storeRoot: String, request: ControlRequest, quiet: Bool = false) throws -> FetchResult {
    let (bar, _) = quiet ? (nil, nil) : ProgressBar.handler(label: "fetching")
    let final = try ControlClient(storeRoot: storeRoot).send(request) { event in
        if let progress = event.progress { bar?.update(done: progress.doneBytes, total: progress.totalBytes) }
    }
    bar?.finish()
    guard final.event == .result, let result = final.fetch else {
        throw CommandFailure(final.message ?? "the node did not complete the fetch")
    }
    return result
}

func printFetchSummary(_ result: FetchResult) {
    print(
        "fetched \(result.manifest.short): \(Format.bytes(result.fetchedBytes)) from the mesh, "
            + "\(Format.bytes(result.alreadyLocalBytes)) already local, in \(Format.seconds(result.seconds)) "
            + "(\(Format.rate(bytes: result.fetchedBytes, seconds: result.seconds)))")
    for (peer, bytes) in result.wireBytesByPeer.sorted(by: { $0.value > $1.value }) {
        print("  \(Format.bytes(bytes)) from \(peer.prefix(20))")
    }
    if result.peersBanned > 0 { print("  \(result.peersBanned) peers banned for sending bad data") }
}
