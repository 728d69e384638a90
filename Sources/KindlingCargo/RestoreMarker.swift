import Foundation
import KindlingStore
import KindlingSystem

/// `target/.kindling-restored`: which snapshot a target directory was restored from, and when. A target with
/// files newer than its marker, or with no marker at all, holds local work that a restore must not discard.
public struct RestoreMarker: Codable, Sendable {
    public static let fileName = ".kindling-restored"

    public var manifest: String
    public var commit: String
    /// Nanoseconds since the epoch, when the restore finished (or, while `complete` is false, when it was staged).
    public var restoredAt: UInt64
    /// False from the swap until the freshness repair has finished: a target left like that by a crash holds
    /// nothing of the user's and may be restored over.
    public var complete: Bool

    public init(manifest: String, commit: String, restoredAt: UInt64, complete: Bool = true) {
        self.manifest = manifest
        self.commit = commit
        self.restoredAt = restoredAt
        self.complete = complete
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        manifest = try container.decode(String.self, forKey: .manifest)
        commit = try container.decode(String.self, forKey: .commit)
        restoredAt = try container.decode(UInt64.self, forKey: .restoredAt)
        complete = try container.decodeIfPresent(Bool.self, forKey: .complete) ?? true
    }

    public static func read(targetDirectory: String) -> RestoreMarker? {
        // Not through a symlink a snapshot could have put at the marker's name.
        guard let target = try? DirectoryDescriptor(opening: targetDirectory),
            let bytes = target.read(fileName, limit: 1 << 16)
        else { return nil }
        return try? JSONDecoder().decode(RestoreMarker.self, from: Data(bytes))
    }

    public func write(targetDirectory: String) throws {
        try JSONEncoder().encode(self).write(
            to: URL(fileURLWithPath: targetDirectory + "/" + Self.fileName), options: .atomic)
    }

    /// What a target directory holds, as far as a restore is concerned.
    public enum TargetState: Equatable, Sendable {
        case missingOrEmpty
        /// Restored and not built into since.
        case pristine(RestoreMarker)
        /// A restore swapped in but its repair never finished (a crash), and nothing was built since.
        case interrupted(RestoreMarker)
        /// Built into after a restore, or never restored.
        case localWork(marker: RestoreMarker?)

        /// True when a restore may replace the target without `--replace`: nothing in it is the user's.
        public var isReplaceable: Bool {
            switch self {
            case .missingOrEmpty, .pristine, .interrupted: return true
            case .localWork: return false
            }
        }

        public static func == (lhs: TargetState, rhs: TargetState) -> Bool {
            switch (lhs, rhs) {
            case (.missingOrEmpty, .missingOrEmpty): return true
            case (.pristine(let a), .pristine(let b)), (.interrupted(let a), .interrupted(let b)):
                return a.manifest == b.manifest
            case (.localWork(let a), .localWork(let b)): return a?.manifest == b?.manifest
            default: return false
            }
        }
    }

    public static func state(of targetDirectory: String) -> TargetState {
        let names = (try? FileSystem.contents(of: targetDirectory)) ?? []
        if names.isEmpty { return .missingOrEmpty }
        guard let marker = read(targetDirectory: targetDirectory) else { return .localWork(marker: nil) }
        // Any file written after the restore means someone built here.
        var stack = [targetDirectory]
        while let directory = stack.popLast() {
            for name in (try? FileSystem.contents(of: directory)) ?? [] where name != fileName {
                let path = directory + "/" + name
                if FileSystem.isDirectory(path) {
                    stack.append(path)
                } else if let mtime = modificationTime(path), mtime > marker.restoredAt {
                    return .localWork(marker: marker)
                }
            }
        }
        return marker.complete ? .pristine(marker) : .interrupted(marker)
    }

}
