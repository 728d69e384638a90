import ArgumentParser
import Foundation
import KindlingCargo
import KindlingCrypto
import KindlingManifest
import KindlingMesh
import KindlingNode
import KindlingSnapshot
import KindlingStore
import KindlingSystem

struct Restore: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Materialise a trusted snapshot into a directory, atomically.",
        discussion: """
            Restores the newest manifest for --repo and --commit that the trust file accepts (or the manifest file \
            given with --manifest). Files are written into a staging folder beside --into and swapped in at the \
            end, so an interrupted restore leaves --into as it was.
            """)

    @OptionGroup var storeOptions: StoreOptions
    @Option(name: .long, help: "The trust file (default: $KINDLING_TRUST, else the node's node.json).")
    var trust: String?
    @Option(name: .long, help: "The repository name.") var repo: String?
    @Option(name: .long, help: "The commit.") var commit: String?
    @Option(name: .long, help: "The destination directory.") var into: String?
    @Flag(name: .long, help: "Restore the nearest ancestor's build state into this cargo workspace's target/.")
    var cargo = false
    @Option(name: .long, help: "With --cargo: the workspace's Cargo.toml.") var manifestPath: String?
    @Option(name: .long, help: "With --cargo: the profile to restore (default dev).") var profile: String = "dev"
    @Option(name: .long, help: "With --cargo: the --target triple, if any.") var target: String?
    @Option(name: .long, help: "With --cargo: how many first-parent commits back to look.") var maxDistance: Int = 200
    @Option(name: .long, help: "Restore this manifest file (from 'kindling manifest export') instead of searching.")
    var manifest: String?
    @Option(name: .long, parsing: .singleValue, help: "Only use snapshots whose cache key has KEY=VALUE (repeatable).")
    var keyValue: [String] = []
    @Flag(name: .long, help: "Replace the contents of a non-empty destination.") var replace = false
    @Flag(name: .long, help: "Keep the snapshot's file modes exactly (like tar -p); by default the umask applies.")
    var samePermissions = false
    @Flag(name: .long, help: "Never fetch through a running node; use only what the store holds.") var noFetch = false

    func validate() throws {
        try validateRepositoryOption(repo)
        if cargo {
            guard manifest == nil, commit == nil, into == nil else {
                throw ValidationError(
                    "--cargo finds the commit and the target directory itself; drop --manifest, --commit and --into")
            }
            // A target directory is cargo's: the umask keeps what it needs (build scripts stay executable).
            guard !samePermissions else {
                throw ValidationError("--same-permissions is for --into; drop it with --cargo")
            }
        } else {
            if manifest == nil && (repo == nil || commit == nil) {
                throw ValidationError("give --repo and --commit, or --manifest FILE")
            }
            if into == nil { throw ValidationError("give --into DIR") }
        }
    }

    func run() async throws {
        try await reportingErrors {
            guard let policy = try resolveTrustPolicy(trust, storeRoot: storeOptions.path) else {
                throw ValidationError("give --trust FILE (or set KINDLING_TRUST)")
            }
            if cargo {
                let repo = try repositoryOption(self.repo)
                let workspace = try CargoWorkspace.locate(
                    directory: FileManager.default.currentDirectoryPath, manifestPath: manifestPath, repository: repo)
                print(
                    try restoreCargoSnapshot(
                        workspace: workspace, root: BuildRoot.forRepository(workspace.repository),
                        storeRoot: storeOptions.path,
                        policy: policy, profile: profile, target: target, maxDistance: maxDistance, replace: replace,
                        fetch: !noFetch))
                // `kindling cargo` must build at the same build root, or the restored state is of no use.
                if let repo, repo.text != workspace.checkout.repositoryName() {
                    try workspace.checkout.rememberRepositoryName(repo)
                    Terminal.printNote(
                        "this checkout is now known as \(repo) (git config \(GitCheckout.repositoryConfigKey))")
                }
                return
            }
            guard let into else { throw ValidationError("give --into DIR") }
            let store = try storeOptions.open()
            let chosen =
                try manifest.map { try loadManifestFile($0, policy: policy, store: store) }
                ?? findOrFetch(store: store, policy: policy)
            let (bar, progress) = ProgressBar.handler(label: "restoring")
            let summary = try TreeRestore().restore(
                chosen, from: store, into: into, replace: replace, samePermissions: samePermissions, progress: progress)
            bar?.finish()
            print(
                "restored \(chosen.header.repository)@\(chosen.header.commit) (manifest \(chosen.id.short)): "
                    + "\(summary.files) files, \(summary.directories) directories, \(summary.symlinks) symlinks, "
                    + "\(Format.bytes(summary.bytes)) in \(Format.seconds(summary.seconds)) "
                    + "(\(Format.rate(bytes: summary.bytes, seconds: summary.seconds)))"
                    + (summary.replaced ? ", replacing the previous contents" : ""))
        }
    }

    /// The snapshot from the store; when the store lacks it (or some of its chunks) and a node runs for this
    /// store, fetch it through the mesh first.
    private func findOrFetch(store: ChunkStore, policy: TrustPolicy) throws -> Manifest {
        let client = ControlClient(storeRoot: storeOptions.path)
        if let local = try? findInStore(store: store, policy: policy), try store.missingChunks(of: local).isEmpty {
            return local
        }
        guard !noFetch, client.isNodeRunning, let repo = try repositoryOption(self.repo), let commit else {
            return try findInStore(store: store, policy: policy)
        }
        let result = try fetchThroughNode(
            storeRoot: storeOptions.path,
            request: ControlRequest(
                op: .fetch, repository: repo, commit: commit, cacheKey: try parseKeyValues(keyValue)))
        printFetchSummary(result)
        try requireFetched(result, repository: repo.text, commit: commit, storeRoot: storeOptions.path)
        return try findInStore(store: store, policy: policy)
    }

    private func findInStore(store: ChunkStore, policy: TrustPolicy) throws -> Manifest {
        guard let repo = try repositoryOption(self.repo), let commit else {
            throw ValidationError("give --repo and --commit")
        }
        let wanted = try parseKeyValues(keyValue)
        let stored = try StoreSnapshotSource(store: store).candidates(of: repo)
        let equivocal = StoreSnapshotSource.equivocal(stored, policy: policy)
        let outcome = SnapshotSelection.select(stored, commits: [commit], cacheKey: .including(wanted)) { candidate in
            guard let signed = candidate.signed else { return "the store has no signed header" }
            do throws(TrustError) {
                _ = try policy.verify(signed)
            } catch {
                return error.description
            }
            // Its key signed another manifest of the same build: neither is used (Specs/trust.md, "Equivocation").
            if equivocal.contains(candidate.id) {
                return (try? StoreSnapshotSource.equivocation(of: signed, in: store, policy: policy))
                    .flatMap { $0.map { EquivocationError($0).description } } ?? "equivocation"
            }
            return nil
        }
        switch outcome {
        case .found(let candidate, _, _):
            guard let manifest = try store.manifest(candidate.id) else {
                throw CommandFailure(
                    "the store knows manifest \(candidate.id.short) only by its header; "
                        + "fetch it first ('kindling fetch')")
            }
            return manifest
        case .none(let candidates, let rejected):
            if candidates == 0 {
                throw CommandFailure("no snapshot of \(repo) at commit \(commit) in the store \(store.root)")
            }
            let reasons = rejected.map(\.description).joined(separator: "; ")
            throw CommandFailure("none of the \(candidates) snapshots of \(repo)@\(commit) can be used: \(reasons)")
        }
    }
}

/// Reads a manifest file and passes it through the trust gate.
func loadManifestFile(_ path: String, policy: TrustPolicy?, store: ChunkStore? = nil) throws -> Manifest {
    // Bounded before decoding: a manifest file is at most a header, a signature and a body, with their lengths.
    let limit = ManifestLimits.maxHeaderBytes + ManifestLimits.maxBodyBytes + 1024
    let data: [UInt8]
    do {
        data = try PosixFile(opening: path, flags: O_RDONLY).readAll(limit: limit)
    } catch {
        if error.code == EFBIG {
            throw CommandFailure("manifest file \(path) is larger than any manifest can be (\(limit) bytes)")
        }
        throw CommandFailure("cannot read manifest file \(path): \(error)")
    }
    let manifest: Manifest
    do {
        manifest = try ManifestFile.decode(data)
    } catch {
        throw CommandFailure("manifest file \(path) is unusable: \(error)")
    }
    if let policy {
        _ = try policy.verify(manifest)
        if let store { try StoreSnapshotSource.refuseEquivocation(manifest.signed, in: store, policy: policy) }
    }
    return manifest
}
