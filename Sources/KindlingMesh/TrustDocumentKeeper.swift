import Foundation
import Glibc
public import KindlingManifest
import KindlingSystem
import Synchronization

/// The trust documents a node with roots has accepted, on disk (Specs/trust.md, "The node's trust state"):
/// `<store>/trust-state/`, a private folder (0700) that no other user may write, holding `current` (the newest
/// accepted document, whose version is the highest the node ever accepted: a lower one is a rollback) and
/// `v<version>` for every accepted document, so that the node can serve the versions a peer needs on the way
/// (the last `maxArchived`, and every one whose roots differ from its predecessor's). Every file is written to a
/// temporary name with mode 0600, synced, renamed into place and its folder synced: a crash leaves the old state or
/// the new one. Persisting comes before use: `MeshNode` applies a document only once `persist` returned.
public final class TrustDocumentKeeper: Sendable {
    public let directory: String
    /// Documents kept besides the root chain.
    public static let maxArchived = 64
    /// The highest version persisted as `current`, so that a slower writer never puts an older one back.
    private let persistedVersion: Mutex<UInt64>

    /// Opens (creating it if missing) the folder, refusing one that another user could write.
    public init(directory: String) throws(TrustStateError) {
        self.directory = directory
        try Self.preparePrivate(directory)
        persistedVersion = Mutex(0)
        let current = try Self.readCurrent(directory)
        persistedVersion.withLock { $0 = current?.document.version ?? 0 }
    }

    /// Opens an existing folder read-only, for the CLI; nil when the node never accepted a document.
    public static func existing(directory: String) throws(TrustStateError) -> TrustDocumentKeeper? {
        guard FileSystem.exists(directory) else { return nil }
        return try TrustDocumentKeeper(directory: directory)
    }

    /// Makes the state folder (0700) when it is missing, then checks it as `checkPrivate` does.
    static func preparePrivate(_ directory: String) throws(TrustStateError) {
        if !FileSystem.exists(directory) {
            guard mkdir(directory, 0o700) == 0 || errno == EEXIST else {
                throw .cannotCreate(path: directory, errno: errno)
            }
        }
        try checkPrivate(directory)
    }

    /// The folder must be ours, a real folder (not a link), and writable by no one else; so must the folders above
    /// it (the same rule as for the trust file).
    static func checkPrivate(_ directory: String) throws(TrustStateError) {
        var info = stat()
        guard lstat(directory, &info) == 0 else { throw .cannotCreate(path: directory, errno: errno) }
        guard info.st_mode & S_IFMT == S_IFDIR else { throw .notPrivate(path: directory, reason: "it is not a folder") }
        guard info.st_uid == ProcessControl.userID else {
            throw .notPrivate(path: directory, reason: "it belongs to user \(info.st_uid)")
        }
        guard info.st_mode & 0o077 == 0 else {
            throw .notPrivate(
                path: directory,
                reason: "its mode is \(String(info.st_mode & 0o777, radix: 8)); run 'chmod 700 \(directory)'")
        }
        do throws(GuardedFileError) { try GuardedFile.check(directory, what: "trust state folder") } catch {
            throw .notPrivate(path: directory, reason: error.description)
        }
    }

    // MARK: Reading

    /// The newest accepted document, nil when there is none.
    public func current() throws(TrustStateError) -> SignedTrustDocument? {
        try Self.readCurrent(directory)
    }

    /// The bytes of the document of `version` (0: the current one), if the node keeps it.
    public func bytes(version: UInt64) -> [UInt8]? {
        let name = version == 0 ? "current" : "v\(version)"
        return try? Self.read(directory + "/" + name)
    }

    /// Every kept document, oldest first (those that do not decode are skipped: the folder is ours, so that is a
    /// torn disk, not an attack, and the current document alone is enough to go on).
    public func archived() -> [SignedTrustDocument] {
        let names = (try? FileSystem.contents(of: directory)) ?? []
        return names.compactMap { name -> SignedTrustDocument? in
            guard name.hasPrefix("v"), UInt64(name.dropFirst()) != nil,
                let bytes = try? Self.read(directory + "/" + name)
            else { return nil }
            return try? SignedTrustDocument.decode(bytes)
        }
        .sorted { $0.document.version < $1.document.version }
    }

    static func readCurrent(_ directory: String) throws(TrustStateError) -> SignedTrustDocument? {
        let path = directory + "/current"
        guard FileSystem.exists(path) else { return nil }
        let bytes: [UInt8]
        do { bytes = try read(path) } catch { throw .unreadable(path: path, reason: "\(error)") }
        do throws(TrustDocumentError) { return try SignedTrustDocument.decode(bytes) } catch {
            throw .unreadable(path: path, reason: error.description)
        }
    }

    static func read(_ path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TrustStateError.unreadable(path: path, reason: "cannot read it")
        }
        guard data.count <= SignedTrustDocument.maximumEncodedSize else {
            throw TrustStateError.unreadable(path: path, reason: "larger than a trust document may be")
        }
        return Array(data)
    }

    // MARK: Writing

    /// Writes `document` durably as `v<version>` and, unless a newer one is already there, as `current`. Returns
    /// only once both are on disk. Older documents beyond `maxArchived` that did not change the roots are removed.
    public func persist(_ document: SignedTrustDocument) throws(TrustStateError) {
        let bytes = document.encoded()
        let version = document.document.version
        try Self.checkPrivate(directory)
        try writeDurably(bytes, name: "v\(version)")
        try persistedVersion.withLock { (persisted: inout UInt64) throws(TrustStateError) in
            guard version >= persisted else { return }
            try writeDurably(bytes, name: "current")
            persisted = version
        }
        prune()
    }

    private func writeDurably(_ bytes: [UInt8], name: String) throws(TrustStateError) {
        try Self.writeDurably(bytes, name: name, in: directory)
    }

    /// Replaces `name` in the (already checked) state folder: written beside it, fsynced, renamed, folder fsynced.
    static func writeDurably(_ bytes: [UInt8], name: String, in directory: String) throws(TrustStateError) {
        do throws(FileError) {
            try DirectoryDescriptor(opening: directory).replaceDurably(named: name, with: bytes)
        } catch {
            throw .cannotWrite(path: directory + "/" + name, errno: error.code)
        }
    }

    /// Keeps the newest `maxArchived` documents and every one whose roots differ from its predecessor's.
    private func prune() {
        let documents = archived()
        guard documents.count > Self.maxArchived else { return }
        var previousRoots: TrustRoots?
        for (index, signed) in documents.enumerated() {
            defer { previousRoots = signed.document.roots }
            let isRootChange = previousRoots != nil && previousRoots != signed.document.roots
            if index < documents.count - Self.maxArchived && !isRootChange && index > 0 {
                unlink(directory + "/v\(signed.document.version)")
            }
        }
    }
}

/// What went wrong with the node's trust state folder; each says what to do.
public enum TrustStateError: Error, Equatable, Sendable, CustomStringConvertible {
    case cannotCreate(path: String, errno: Int32)
    case notPrivate(path: String, reason: String)
    case unreadable(path: String, reason: String)
    case cannotWrite(path: String, errno: Int32)

    public var description: String {
        switch self {
        case .cannotCreate(let path, let code):
            return "cannot create the trust state folder \(path): \(String(cString: strerror(code))); check that the "
                + "store folder is writable"
        case .notPrivate(let path, let reason):
            return "refusing the trust state folder \(path): \(reason). It decides what this node trusts, so only "
                + "its user may write it"
        case .unreadable(let path, let reason):
            return "cannot read the trust document \(path): \(reason); remove it and let the node fetch the current "
                + "document from its peers (or 'kindling trust publish' it again)"
        case .cannotWrite(let path, let code):
            return "cannot write \(path): \(String(cString: strerror(code))); the document was not applied"
        }
    }
}

extension TrustDocumentKeeper {
    /// The current document, checked again from `configuredRoots` along the kept documents (for the CLI, which
    /// reads what the node persisted): each root change must be signed by a threshold of the roots before it and of
    /// its own, and the current document by a threshold of the roots the chain ends on. Nil when there is none.
    public func verifiedCurrent(configuredRoots: TrustRoots) throws(TrustStateError) -> SignedTrustDocument? {
        guard let current = try current() else { return nil }
        var governing = configuredRoots
        for signed in archived() where signed.document.version < current.document.version {
            let roots = signed.document.roots
            guard roots != governing, signed.validSigners(among: governing).count >= governing.threshold,
                signed.validSigners(among: roots).count >= roots.threshold
            else { continue }
            governing = roots
        }
        guard current.validSigners(among: governing).count >= governing.threshold,
            current.document.roots == governing
                || current.validSigners(among: current.document.roots).count >= current.document.roots.threshold
        else {
            throw .unreadable(
                path: directory + "/current",
                reason: "version \(current.document.version) is not signed by a threshold of the configured roots "
                    + "(or of roots they handed over to); check the roots in node.json")
        }
        return current
    }
}
