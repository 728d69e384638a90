public import KindlingCrypto
public import KindlingSystem

/// What can go wrong in the store. Each message names the object and says what to do next.
public enum StoreError: Error, Equatable, Sendable, CustomStringConvertible {
    case cannotOpen(path: String, reason: String)
    case database(operation: String, message: String)
    case file(FileError)
    case corruptChunk(Digest, reason: String)
    case missingChunk(Digest)
    case chunkTooLarge(Digest, size: Int)
    case manifestNotFound(String)
    case corruptManifest(Digest, reason: String)

    public var isDiskFull: Bool {
        if case .file(let error) = self { return error.isDiskFull }
        return false
    }

    public var description: String {
        switch self {
        case .cannotOpen(let path, let reason):
            return "cannot open the store at \(path): \(reason)"
        case .database(let operation, let message):
            return "store index error while \(operation): \(message); run 'kindling verify' to check the store"
        case .file(let error):
            return error.description
        case .corruptChunk(let id, let reason):
            return "chunk \(id.short) in the store is corrupt (\(reason)); "
                + "run 'kindling verify --repair' so that it is fetched again"
        case .missingChunk(let id):
            return "chunk \(id.short) is not in the store; fetch the snapshot again ('kindling fetch')"
        case .chunkTooLarge(let id, let size):
            return "chunk \(id.short) would inflate beyond the limit (\(size) bytes); it is treated as corrupt"
        case .manifestNotFound(let what):
            return "no manifest \(what) in the store"
        case .corruptManifest(let id, let reason):
            return "manifest \(id.short) in the store is unreadable (\(reason)); fetch it again"
        }
    }
}
