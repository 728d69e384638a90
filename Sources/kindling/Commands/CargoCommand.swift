import ArgumentParser
import Foundation
import KindlingCargo
import KindlingCrypto
import KindlingManifest
import KindlingMesh
import KindlingNode
import KindlingSnapshot
import KindlingStore

struct CargoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cargo",
        abstract:
            "Run cargo at the repository's build root, restoring a snapshot first when target/ is empty or far behind.",
        discussion: """
            Every argument goes to cargo ('kindling cargo build --release'). Cargo runs in a private mount namespace \
            where the checkout, target/ and CARGO_HOME appear at the build root that bors builds at, so compiled \
            dependencies and rustc's incremental state are both reused. Settings come from the environment: \
            KINDLING_HOME (the store), KINDLING_TRUST (the trust file; else the node's node.json), \
            KINDLING_NO_RESTORE=1 (never restore), KINDLING_BUILD_ROOT (the root's parent, default /tmp/kindling-build).
            """)

    @Argument(parsing: .captureForPassthrough, help: "Arguments for cargo.") var arguments: [String] = []

    static let buildCommands: Set<String> = [
        "build", "b", "check", "c", "test", "t", "run", "r", "bench", "clippy", "doc", "rustc",
    ]
    /// A target whose restore is more than this many commits behind HEAD is replaced by a nearer snapshot.
    static let farBehind = 50

    func run() async throws {
        // Nothing this command starts (cargo, its build scripts, git, rustc) sees a variable that names a key.
        BuildEnvironment.scrubProcess()
        let directory = FileManager.default.currentDirectoryPath
        let workspace: CargoWorkspace
        do {
            workspace = try CargoWorkspace.locate(directory: directory)
        } catch {
            switch error {
            case .toolchainByPath, .invalidRepository:
                // A toolchain the checkout names by path is never run, and a name that would make a bad build root
                // is not silently built elsewhere: both are refused rather than handed to the plain cargo below.
                throw CommandFailure(error.description)
            default:
                break
            }
            // Not a workspace in a git checkout: plain cargo (with the user's toolchain pinned when it resolves).
            if let pin = try? ToolchainPin.resolve(directory: directory) { setenv("RUSTUP_TOOLCHAIN", pin.name, 1) }
            execvp("cargo", (["cargo"] + arguments).map { strdup($0) } + [nil])
            throw ExitCode.failure
        }
        let root = BuildRoot.forRepository(workspace.repository)
        // Before anything is restored: a refused build needs no restore.
        if !CargoLauncher.namespacesAvailable {
            Terminal.printWarning(CargoLauncher.unavailableMessage)
            let writable: [String]
            do {
                writable = try CargoLauncher.checkInPlace(
                    directory: directory, checkoutTop: workspace.checkout.toplevel)
            } catch {
                throw CommandFailure(error.description)
            }
            if let first = writable.first {
                Terminal.printWarning(
                    "cargo runs in place under \(first), which other users can write: a .cargo/config.toml or "
                        + "rust-toolchain.toml planted there after this check would still be read; build in a "
                        + "directory only you can write, or where user namespaces work")
            }
        }
        let environment = ProcessInfo.processInfo.environment
        if let command = arguments.first(where: { !$0.hasPrefix("-") }), Self.buildCommands.contains(command),
            environment["KINDLING_NO_RESTORE"] == nil
        {
            autoRestore(workspace: workspace, root: root)
        }
        do {
            try CargoLauncher(workspace: workspace, root: root).exec(cargo: arguments, directory: directory)
        } catch let error as CargoError {
            throw CommandFailure(error.description)
        }
    }

    /// Restores when target/ is empty, or far behind HEAD and a nearer snapshot exists; never fails the build.
    private func autoRestore(workspace: CargoWorkspace, root: BuildRoot) {
        let storeRoot = ChunkStore.defaultRoot
        let policy: TrustPolicy
        do {
            guard let resolved = try resolveTrustPolicy(nil, storeRoot: storeRoot) else {
                Terminal.printWarning("no trust file (set KINDLING_TRUST): not restoring a snapshot")
                return
            }
            policy = resolved
        } catch {
            Terminal.printWarning("not restoring a snapshot: \(error)")
            return
        }
        let state = RestoreMarker.state(of: workspace.targetDirectory)
        var replace = false
        switch state {
        case .missingOrEmpty:
            break
        case .interrupted:
            // A restore that crashed before its repair finished: nothing in it is the user's.
            replace = true
        case .pristine(let marker):
            guard isFarBehind(marker, workspace: workspace) else { return }
            replace = true
        case .localWork(let marker?):
            // Never thrown away on the user's behalf: say what would help instead.
            if isFarBehind(marker, workspace: workspace) {
                Terminal.printNote(
                    "target/ was restored from \(marker.commit.prefix(12)), more than \(Self.farBehind) commits "
                        + "behind HEAD, and has local builds since; 'kindling restore --cargo --replace' would "
                        + "bring a nearer snapshot"
                )
            }
            return
        case .localWork(nil):
            return
        }
        do {
            let profile = arguments.contains("--release") ? "release" : profileArgument() ?? "dev"
            let target = optionValue("--target")
            let summary = try restoreCargoSnapshot(
                workspace: workspace, root: root, storeRoot: storeRoot, policy: policy, profile: profile,
                target: target,
                maxDistance: 200, replace: replace, fetch: true,
                announce: { FileHandle.standardError.write(Data("kindling: \($0)\n".utf8)) })
            FileHandle.standardError.write(Data("kindling: \(summary)\n".utf8))
        } catch {
            Terminal.printWarning("not restoring a snapshot: \(error)")
        }
    }

    private func isFarBehind(_ marker: RestoreMarker, workspace: CargoWorkspace) -> Bool {
        let history = (try? workspace.checkout.firstParentHistory(limit: Self.farBehind + 1)) ?? []
        return !history.contains(marker.commit)
    }

    private func optionValue(_ name: String) -> String? {
        if let index = arguments.firstIndex(of: name), index + 1 < arguments.count { return arguments[index + 1] }
        return arguments.first { $0.hasPrefix(name + "=") }.map { String($0.dropFirst(name.count + 1)) }
    }

    private func profileArgument() -> String? { optionValue("--profile") }
}

/// Finds, fetches (through the node when needed), restores and repairs (`CargoRestoreSession`); returns a one-line
/// summary.
func restoreCargoSnapshot(
    workspace: CargoWorkspace, root: BuildRoot, storeRoot: String, policy: TrustPolicy, profile: String,
    target: String?,
    maxDistance: Int, replace: Bool, fetch: Bool, announce: (String) -> Void = { print($0) }
) throws -> String {
    let started = ContinuousClock.now
    let store = try ChunkStore(root: storeRoot)
    let key = try CargoCacheKey.compute(
        workspace: workspace, root: root, profile: CargoCacheKey.profileDirectory(profile), target: target)
    // The node lists what the mesh announced even with --no-fetch; `fetch` only decides whether it may fetch.
    let session = CargoRestoreSession(
        workspace: workspace, root: root, key: key, store: store, policy: policy,
        remotes: [NodeSnapshotSource.running(storeRoot: storeRoot)].compactMap { $0 })
    let choice = try chooseConsultingHeads(
        session, storeRoot: storeRoot, profile: profile, maxDistance: maxDistance, announce: announce)
    let candidate = choice.candidate
    announce("restoring \(workspace.repository)@\(candidate.commit.prefix(12)), \(choice.distance) commits behind HEAD")

    let (fetchBar, fetchProgress) = ProgressBar.handler(label: "fetching")
    let fetched = try session.makeAvailable(choice, fetch: fetch, progress: fetchProgress)
    if fetched != nil { fetchBar?.finish() }
    let (bar, progress) = ProgressBar.handler(label: "restoring")
    let restored = try session.restore(choice, replace: replace, progress: progress)
    bar?.finish()
    let manifest = restored.manifest
    let outcome = restored.outcome
    let seconds = (ContinuousClock.now - started).components
    let elapsed = Double(seconds.seconds) + Double(seconds.attoseconds) / 1e18
    let fetchedBytes = fetched?.fetchedBytes ?? 0
    // Without a fetch, every unique chunk came from the store.
    let uniqueBytes = Dictionary(
        manifest.body.entries.flatMap(\.chunks).map { ($0.id, $0.length) }, uniquingKeysWith: { first, _ in first }
    )
    .values.reduce(0, +)
    // Plain bytes fetched, and what crossed the wire (compressed) from each peer.
    let sources =
        fetched.map { result in
            let wire = result.wireBytesBySource.values.reduce(0, +)
            return "\(Format.bytes(wire)) on the wire: "
                + result.wireBytesBySource.sorted { $0.value > $1.value }.map {
                    "\(Format.bytes($0.value)) from \($0.key.dropFirst(8).prefix(12))"
                }
                .joined(separator: ", ")
        } ?? ""
    return
        "restored \(workspace.repository)@\(candidate.commit.prefix(12)) (\(choice.distance) commits behind HEAD) into "
        + "\(workspace.targetDirectory): \(Format.bytes(fetchedBytes)) fetched"
        + (sources.isEmpty ? "" : " (\(sources))") + ", "
        + "\(Format.bytes(fetched?.alreadyLocalBytes ?? uniqueBytes)) already in the store, "
        + "\(Format.seconds(elapsed)); sources: \(outcome.repair.unchanged) unchanged, "
        + "\(outcome.repair.changed) changed, "
        + "\(outcome.repair.added) new, \(outcome.repair.untrackedTouched) untracked"
        + (outcome.repair.unitsInvalidated > 0 ? ", \(outcome.repair.unitsInvalidated) units invalidated" : "")
        + (outcome.atBuildRoot ? "" : " (no namespaces: incremental state will not be reused)")
}

/// How long `kindling cargo` waits for the node to learn a newer build that a head record names.
let headWaitSeconds = 10.0

/// `session.choose`, after asking the node for bors's head records (Specs/freshness.md, "Uses"): when one names a
/// build of this profile nearer to HEAD than the best snapshot known, the node was told to fetch its announcement
/// when the record arrived; wait a little for it rather than silently restore an older one, and say so either way.
func chooseConsultingHeads(
    _ session: CargoRestoreSession, storeRoot: String, profile: String, maxDistance: Int,
    announce: (String) -> Void
) throws -> CargoRestoreSession.Choice {
    let first = Result { try session.choose(maxDistance: maxDistance) }
    let client = ControlClient(storeRoot: storeRoot)
    guard client.isNodeRunning, let status = try? client.send(ControlRequest(op: .status)).status else {
        return try first.get()
    }
    let repository = session.workspace.repository
    let heads = (status.heads ?? []).filter { $0.repository == repository.text && !$0.expired }.flatMap { record in
        record.entries.map {
            HeadPointer(
                branch: $0.branch, profile: $0.profile, commit: $0.commit, manifest: $0.manifest,
                issued: record.issued)
        }
    }
    let history = try session.workspace.checkout.firstParentHistory(limit: maxDistance + 1)
    guard
        let newer = HeadAdvice.newer(
            than: (try? first.get())?.distance, history: history, heads: heads, profile: profile,
            branch: session.workspace.checkout.currentBranch())
    else { return try first.get() }
    let what =
        "bors's head record (issued \(newer.head.issued)) names a newer build of "
        + "\(escapedPeerText(newer.head.branch)): "
        + "\(newer.head.commit.prefix(12)), \(newer.distance) commits behind HEAD"
    // Listed already with another cache key (another toolchain or flags): waiting would not make it usable.
    if let listed = try? session.remotes.first?.candidates(of: repository),
        let other = listed.first(where: { $0.id.hex == newer.head.manifest }), other.cacheKey != session.key.entries
    {
        Terminal.printWarning(
            "\(what), but built with another cache key ("
                + session.key.differences(from: other.cacheKey).joined(separator: "; ") + "); "
                + "restoring the nearest snapshot of this build's key")
        return try first.get()
    }
    announce("\(what); waiting up to \(Int(headWaitSeconds)) s for this node to receive it")
    let deadline = ContinuousClock.now + .seconds(headWaitSeconds)
    while ContinuousClock.now < deadline {
        Thread.sleep(forTimeInterval: 0.5)
        if let again = try? session.choose(maxDistance: maxDistance), again.distance <= newer.distance { return again }
    }
    Terminal.printWarning(
        "\(what), but its announcement has not reached this node: "
            + ((try? first.get()).map { "restoring the older snapshot \($0.distance) commits behind HEAD. " } ?? "")
            + "Check 'kindling peers' (is the node connected to the mesh?) and run 'kindling restore --cargo' again "
            + "later")
    return try first.get()
}
