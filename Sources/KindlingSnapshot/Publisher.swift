import Foundation
public import KindlingCrypto
public import KindlingManifest
public import KindlingStore

/// What to publish: a directory, and what it is the build state of.
public struct PublishRequest: Sendable {
    public var repository: String
    public var commit: String
    public var directory: String
    public var cacheKey: [String: String]
    public var extra: [String: [UInt8]]
    /// Nanoseconds since the epoch; now by default.
    public var createdAt: UInt64?
    /// Pin the snapshot so that `gc` never evicts its chunks (a seeding publisher wants this).
    public var pin: Bool

    public init(
        repository: String, commit: String, directory: String, cacheKey: [String: String] = [:],
        extra: [String: [UInt8]] = [:], createdAt: UInt64? = nil, pin: Bool = false
    ) {
        self.repository = repository
        self.commit = commit
        self.directory = directory
        self.cacheKey = cacheKey
        self.extra = extra
        self.createdAt = createdAt
        self.pin = pin
    }
}

/// Captures a directory into the store and signs its manifest: the local half of `kindling publish`.
public struct Publisher: Sendable {
    public let store: ChunkStore
    public let key: SigningKey
    public var capture: TreeCapture

    public init(store: ChunkStore, key: SigningKey, capture: TreeCapture = TreeCapture()) {
        self.store = store
        self.key = key
        self.capture = capture
    }

    public func publish(
        _ request: PublishRequest, progress: ProgressHandler? = nil
    ) throws(SnapshotError) -> (manifest: Manifest, summary: CaptureSummary) {
        // Check names before spending minutes on a capture.
        do throws(FormatError) {
            _ = try RepositoryName(request.repository)
            try ManifestHeader.validateCommit(request.commit)
        } catch {
            throw .format(error)
        }
        // Held until the manifest is saved: gc must not evict a reused chunk the new manifest names.
        let lease: StoreLease
        do throws(StoreError) { lease = try store.lease() } catch { throw .store(error) }
        defer { withExtendedLifetime(lease) {} }
        let (entries, summary) = try capture.capture(directory: request.directory, into: store, progress: progress)
        let manifest: Manifest
        do throws(FormatError) {
            manifest = try Manifest.sign(
                repository: request.repository, commit: request.commit,
                createdAt: request.createdAt ?? Date().nanosecondsSinceEpoch, cacheKey: request.cacheKey,
                body: ManifestBody(entries: entries, extra: request.extra), with: key)
        } catch {
            throw .format(error)
        }
        do throws(StoreError) {
            // The publisher's own manifest passes the same gate as everyone else's.
            guard let trusted = try? TrustPolicy.trustingOwnKey(key).verify(manifest) else {
                throw .corruptManifest(manifest.id, reason: "the new signature does not verify")
            }
            try store.saveManifest(trusted)
            if request.pin { try store.pin(manifest.id, reason: "published here") }
        } catch {
            throw .store(error)
        }
        return (manifest, summary)
    }
}
