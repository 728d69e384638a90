public import KindlingCrypto
public import KindlingManifest
public import KindlingStore

/// Somewhere snapshots come from: the local store, a running node (KindlingNode's `NodeSnapshotSource`), later an
/// HTTP origin. Small on purpose: list what there is, and make one snapshot complete in the local store.
///
/// A source's word is never trusted: candidates are claims, and whoever restores verifies the complete manifest
/// against its own trust file and checks it is the snapshot that was chosen.
public protocol SnapshotSource: Sendable {
    /// Names the source in messages ("the store", "the node").
    var name: String { get }

    /// The snapshots of `repository` the source can provide.
    func candidates(of repository: RepositoryName) throws -> [SnapshotCandidate]

    /// Makes snapshot `id`'s manifest and every chunk it names present in `store`, reporting bytes held so far and
    /// the total as it goes. Throws, saying what to do, when it cannot.
    func makeAvailable(_ id: Digest, in store: ChunkStore, progress: ProgressHandler?) throws -> SnapshotTransfer
}

/// What making a snapshot available cost, for the summary a user sees.
public struct SnapshotTransfer: Sendable {
    /// Plain bytes that had to come from elsewhere.
    public var fetchedBytes: Int
    /// Plain bytes the store held already.
    public var alreadyLocalBytes: Int
    /// Bytes on the wire (compressed), per peer or server.
    public var wireBytesBySource: [String: Int]

    public init(fetchedBytes: Int, alreadyLocalBytes: Int, wireBytesBySource: [String: Int] = [:]) {
        self.fetchedBytes = fetchedBytes
        self.alreadyLocalBytes = alreadyLocalBytes
        self.wireBytesBySource = wireBytesBySource
    }
}

/// The local store as a source: it lists what it holds and can only confirm that a snapshot is complete.
public struct StoreSnapshotSource: SnapshotSource {
    public let store: ChunkStore

    public init(store: ChunkStore) {
        self.store = store
    }

    public var name: String { "the store" }

    public func candidates(of repository: RepositoryName) throws -> [SnapshotCandidate] {
        try store.manifestSummaries(repository: repository).map { SnapshotCandidate($0.signed) }
    }

    /// The manifest, when it and every chunk it names are in `store`.
    public static func completeManifest(_ id: Digest, in store: ChunkStore) throws(StoreError) -> Manifest? {
        guard let manifest = try store.manifest(id), try store.missingChunks(of: manifest).isEmpty else { return nil }
        return manifest
    }

    public func makeAvailable(
        _ id: Digest, in store: ChunkStore, progress: ProgressHandler?
    ) throws -> SnapshotTransfer {
        guard let manifest = try Self.completeManifest(id, in: store) else {
            throw SnapshotSourceError.incomplete(id: id)
        }
        // Every unique chunk came from the store.
        let chunks = manifest.body.entries.flatMap(\.chunks)
        let unique = Dictionary(chunks.map { ($0.id, $0.length) }) { first, _ in first }
        return SnapshotTransfer(fetchedBytes: 0, alreadyLocalBytes: unique.values.reduce(0, +))
    }
}

public enum SnapshotSourceError: Error, Sendable, CustomStringConvertible {
    /// The store lacks the manifest or some of its chunks, and nothing can fetch them.
    case incomplete(id: Digest)
    /// A source answered, but not with what was asked for.
    case failed(source: String, reason: String)

    public var description: String {
        switch self {
        case .incomplete(let id):
            return "the snapshot \(id.short) is not complete in the store and no node runs to fetch it; "
                + "start 'kindling node'"
        case .failed(_, let reason):
            return reason
        }
    }
}
