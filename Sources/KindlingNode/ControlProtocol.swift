public import KindlingManifest
public import KindlingMesh

/// The control socket's protocol (Specs/control.md): one JSON request per connection, answered by JSON lines.
public struct ControlRequest: Codable, Sendable {
    public enum Operation: String, Codable, Sendable {
        case status, peers, fetch, announce, snapshots
        case trustPublish = "trust-publish"
        case headPublish = "head-publish"
    }

    public var op: Operation
    /// For fetch and announce: a manifest id.
    public var manifest: String?
    /// For fetch (the newest trusted snapshot of this repository and commit) and snapshots.
    public var repository: RepositoryName?
    public var commit: String?
    public var cacheKey: [String: String]?
    /// For trust-publish: the trust document file's bytes, in base64; for head-publish, the head record's.
    public var document: String?

    public init(
        op: Operation, manifest: String? = nil, repository: RepositoryName? = nil, commit: String? = nil,
        cacheKey: [String: String]? = nil, document: String? = nil
    ) {
        self.op = op
        self.document = document
        self.manifest = manifest
        self.repository = repository
        self.commit = commit
        self.cacheKey = cacheKey
    }
}

/// One line of a control reply.
public struct ControlEvent: Codable, Sendable {
    public enum Kind: String, Codable, Sendable {
        case progress, result, error
    }

    public var event: Kind
    public var message: String?
    public var progress: FetchProgress?
    public var fetch: FetchResult?
    public var status: MeshStatus?
    public var snapshots: [SnapshotInfo]?
    public var manifest: String?
    /// For trust-publish: the version of the trust document the node holds afterwards.
    public var trustVersion: UInt64?

    public init(
        event: Kind, message: String? = nil, progress: FetchProgress? = nil, fetch: FetchResult? = nil,
        status: MeshStatus? = nil, snapshots: [SnapshotInfo]? = nil, manifest: String? = nil,
        trustVersion: UInt64? = nil
    ) {
        self.event = event
        self.trustVersion = trustVersion
        self.message = message
        self.progress = progress
        self.fetch = fetch
        self.status = status
        self.snapshots = snapshots
        self.manifest = manifest
    }
}

/// A snapshot the node knows of, for `kindling status` and the cargo integration's ancestor search.
public struct SnapshotInfo: Codable, Sendable {
    public var id: String
    public var repository: RepositoryName
    public var commit: String
    public var createdAt: UInt64
    public var cacheKey: [String: String]
    public var bytes: Int
    public var local: Bool
    public var holders: Int

    public init(
        id: String, repository: RepositoryName, commit: String, createdAt: UInt64, cacheKey: [String: String],
        bytes: Int, local: Bool, holders: Int
    ) {
        self.id = id
        self.repository = repository
        self.commit = commit
        self.createdAt = createdAt
        self.cacheKey = cacheKey
        self.bytes = bytes
        self.local = local
        self.holders = holders
    }
}
