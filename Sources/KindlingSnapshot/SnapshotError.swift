public import KindlingManifest
public import KindlingStore
public import KindlingSystem

/// What can go wrong capturing or restoring a tree. Each message says what to do next.
public enum SnapshotError: Error, Sendable, CustomStringConvertible {
    case notADirectory(path: String)
    case destinationNotEmpty(path: String)
    /// The destination is the store or a directory above it: a restore there would replace the store.
    case destinationHoldsStore(path: String, store: String)
    case destinationInStore(path: String, store: String)
    case missingChunks(count: Int, bytes: Int)
    case pathNotUTF8(parent: String)
    case changedDuringCapture(path: String)
    case store(StoreError)
    case file(FileError)
    case format(FormatError)
    /// The caller's preparation of the staging folder failed (its own error, described).
    case preparation(String)

    public var description: String {
        switch self {
        case .notADirectory(let path):
            return "\(path) is not a directory"
        case .destinationNotEmpty(let path):
            return "\(path) is not empty; pass --replace to replace its contents"
        case .destinationHoldsStore(let path, let store):
            return "\(path) holds the store \(store); restoring there would replace the store. Choose another directory"
        case .destinationInStore(let path, let store):
            return "\(path) is inside the store \(store); choose a directory outside the store"
        case .missingChunks(let count, let bytes):
            return
                "the store lacks \(count) chunks (\(bytes) bytes) of this snapshot; fetch it first ('kindling fetch')"
        case .pathNotUTF8(let parent):
            return "a file name in \(parent) is not valid UTF-8 and cannot be captured; rename it"
        case .changedDuringCapture(let path):
            return "\(path) changed while it was being captured; capture again once the build has finished"
        case .store(let error):
            return error.description
        case .file(let error):
            return error.description
        case .preparation(let detail):
            return detail
        case .format(let error):
            return error.description
        }
    }

    public var isDiskFull: Bool {
        switch self {
        case .file(let error): return error.isDiskFull
        case .store(let error): return error.isDiskFull
        default: return false
        }
    }
}
