public import KindlingCrypto
public import KindlingManifest
import KindlingMesh
public import KindlingSnapshot
public import KindlingStore

/// A running node, reached through its control socket, as a snapshot source: it lists the trusted snapshots the
/// mesh announced and fetches one into the store it shares with the CLI.
///
/// Here, not in KindlingCargo: the cargo integration does no networking and must not depend on the node (and so
/// the mesh); the CLI hands this source to `CargoRestoreSession`.
public struct NodeSnapshotSource: SnapshotSource {
    public let client: ControlClient

    public init(client: ControlClient) {
        self.client = client
    }

    /// The node that serves the store at `storeRoot`, if one is listening.
    public static func running(storeRoot: String) -> NodeSnapshotSource? {
        let client = ControlClient(storeRoot: storeRoot)
        return client.isNodeRunning ? NodeSnapshotSource(client: client) : nil
    }

    public var name: String { "the node" }

    public func candidates(of repository: RepositoryName) throws -> [SnapshotCandidate] {
        let reply = try client.send(ControlRequest(op: .snapshots, repository: repository))
        guard reply.event == .result, let snapshots = reply.snapshots else {
            throw SnapshotSourceError.failed(
                source: name, reason: reply.message ?? "the node did not list its snapshots")
        }
        // Ids that do not parse are skipped: the list only proposes; the manifest is verified when it arrives.
        return snapshots.compactMap { info in
            guard let id = Digest(hex: info.id), info.repository == repository else { return nil }
            return SnapshotCandidate(
                id: id, repository: info.repository, commit: info.commit, cacheKey: info.cacheKey,
                createdAt: info.createdAt)
        }
    }

    /// Asks the node to fetch `id` into its store (which must be `store`: the node writes, the CLI reads).
    public func makeAvailable(
        _ id: Digest, in store: ChunkStore, progress: ProgressHandler?
    ) throws -> SnapshotTransfer {
        let final = try client.send(ControlRequest(op: .fetch, manifest: id.hex)) { event in
            if let update = event.progress { progress?(update.doneBytes, update.totalBytes) }
        }
        guard final.event == .result, let result = final.fetch else {
            throw SnapshotSourceError.failed(
                source: name, reason: final.message ?? "the node did not complete the fetch")
        }
        return SnapshotTransfer(
            fetchedBytes: result.fetchedBytes, alreadyLocalBytes: result.alreadyLocalBytes,
            wireBytesBySource: result.wireBytesByPeer)
    }
}
