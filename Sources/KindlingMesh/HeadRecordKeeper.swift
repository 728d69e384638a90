public import Foundation
import Glibc
public import KindlingCrypto
public import KindlingManifest
import KindlingSystem
import Synchronization

/// The head records a node (or a publisher) holds, on disk (Specs/freshness.md, "The node's head records"):
/// `<store>/head-state/`, a private folder (0700) like `trust-state`, with one file per (repository, key) named
/// `<repository folder name>.<key hex>` holding the newest record accepted. Its sequence is the highest the node
/// ever accepted for that pair; a lower one is a rollback. Written to a temporary name (0600), synced, renamed,
/// folder synced: a crash leaves the old record or the new one. A write never replaces a higher sequence.
public final class HeadRecordKeeper: Sendable {
    public let directory: String
    /// (repository, key) pairs kept; beyond it new pairs are refused (only trusted keys get this far).
    public static let maxRecords = 4096
    /// Check and write as one step, so that two writers of one pair never put the lower sequence last.
    private let writing = Mutex(())

    public init(directory: String) throws(TrustStateError) {
        self.directory = directory
        try TrustDocumentKeeper.preparePrivate(directory)
    }

    static func fileName(repository: RepositoryName, publisher: PublicKey) -> String {
        // The folder name is injective and the key hex has a fixed length, so the pair maps to one name.
        repository.folderName + "." + Hex.encode(publisher.bytes)
    }

    /// Every record on disk that decodes (one that does not is skipped: the folder is ours, so that is a torn disk).
    public func all() -> [SignedHeadRecord] {
        let names = (try? FileSystem.contents(of: directory)) ?? []
        return names.filter { !$0.hasPrefix(".") }.compactMap { name in
            guard let bytes = Self.read(directory + "/" + name) else { return nil }
            guard let signed = try? SignedHeadRecord.decode(bytes),
                Self.fileName(repository: signed.record.repository, publisher: signed.record.publisher) == name
            else { return nil }
            return signed
        }
    }

    /// The record held for `repository` and `publisher`, if any.
    public func record(repository: RepositoryName, publisher: PublicKey) -> SignedHeadRecord? {
        let path = directory + "/" + Self.fileName(repository: repository, publisher: publisher)
        return Self.read(path).flatMap { try? SignedHeadRecord.decode($0) }
    }

    static func read(_ path: String) -> [UInt8]? {
        guard let data = FileManager.default.contents(atPath: path), data.count <= SignedHeadRecord.maximumEncodedSize
        else { return nil }
        return Array(data)
    }

    /// Writes `signed` durably unless the file already holds a sequence at least as high. Returns once it is on disk.
    public func persist(_ signed: SignedHeadRecord) throws(TrustStateError) {
        let record = signed.record
        try writing.withLock { (_: inout ()) throws(TrustStateError) in
            if let held = self.record(repository: record.repository, publisher: record.publisher),
                held.record.sequence >= record.sequence
            {
                return
            }
            try TrustDocumentKeeper.checkPrivate(directory)
            let name = Self.fileName(repository: record.repository, publisher: record.publisher)
            try writeDurably(signed.encoded(), name: name)
        }
    }

    private func writeDurably(_ bytes: [UInt8], name: String) throws(TrustStateError) {
        try TrustDocumentKeeper.writeDurably(bytes, name: name, in: directory)
    }
}

extension HeadRecordKeeper {
    /// What `kindling publish` signs: the record held for `repository` and `key`'s public key with `entry` added
    /// (replacing the one of its branch and profile), the next sequence, issued `now`, expiring after `lifetime`.
    /// Throws a `FormatError` for a branch or profile a record cannot carry, a `TrustStateError` when it cannot be
    /// kept. It is kept here before it is returned, so the next publish goes on from it even when no node runs.
    public func signNext(
        repository: RepositoryName, entry: HeadEntry, key: SigningKey, lifetime: TimeInterval, now: Date = Date()
    ) throws -> SignedHeadRecord {
        let previous = record(repository: repository, publisher: key.publicKey)
        var entries = previous?.record.merging(entry) ?? [entry]
        // A record names at most maximumEntryCount builds: the new one stays, the first others in order go.
        while entries.count > HeadRecord.maximumEntryCount, let index = entries.firstIndex(where: { $0 != entry }) {
            entries.remove(at: index)
        }
        let record = HeadRecord(
            repository: repository, publisher: key.publicKey,
            sequence: HeadRecordUpdate.nextSequence(after: previous?.record.sequence, now: now), issued: now,
            expires: now.addingTimeInterval(max(1, lifetime)), entries: entries)
        try record.validate()
        let signed = SignedHeadRecord.sign(record, with: key)
        try persist(signed)
        return signed
    }
}
