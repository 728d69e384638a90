import ArgumentParser
import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingStore

/// `--store DIR`, shared by every command that touches the store.
struct StoreOptions: ParsableArguments {
    @Option(name: .long, help: "The store folder (default: $KINDLING_HOME, else ~/.cache/kindling).")
    var store: String?

    var path: String { store ?? ChunkStore.defaultRoot }

    func open() throws -> ChunkStore {
        try ChunkStore(root: path)
    }

    /// For commands that only read or tidy a store: a mistyped --store must not create an empty store and
    /// report it healthy.
    func openExisting() throws -> ChunkStore {
        guard FileManager.default.fileExists(atPath: path + "/index.sqlite") else {
            throw CommandFailure(
                "there is no store at \(path) (nothing was published or fetched into it); check --store or "
                    + "$KINDLING_HOME"
            )
        }
        return try ChunkStore(root: path)
    }
}

/// Repeated `--key-value K=V` options as a map.
func parseKeyValues(_ pairs: [String], option: String = "--key-value") throws -> [String: String] {
    var map: [String: String] = [:]
    for pair in pairs {
        guard let equals = pair.firstIndex(of: "="), equals != pair.startIndex else {
            throw ValidationError("\(option) '\(pair)' is not of the form KEY=VALUE")
        }
        let key = String(pair[..<equals])
        guard map[key] == nil else { throw ValidationError("\(option) sets '\(key)' twice") }
        map[key] = String(pair[pair.index(after: equals)...])
    }
    return map
}

/// Finds a manifest by full id or a unique hex prefix of at least 8 digits.
func resolveManifestID(_ text: String, in store: ChunkStore) throws -> Digest {
    if let id = Digest(hex: text) { return id }
    let prefix = text.lowercased()
    guard prefix.count >= 8, prefix.allSatisfy(\.isHexDigit) else {
        throw CommandFailure("'\(text)' is not a manifest id (64 hex digits, or a unique prefix of at least 8)")
    }
    let matches = try store.manifestSummaries().filter { $0.id.hex.hasPrefix(prefix) }
    guard matches.count == 1, let only = matches.first else {
        throw CommandFailure(
            matches.isEmpty
                ? "no manifest in the store starts with \(prefix)"
                : "\(prefix) matches \(matches.count) manifests; give more digits")
    }
    return only.id
}

func loadTrustPolicy(_ path: String) throws -> TrustPolicy {
    TrustPolicy(trust: try TrustFile.load(path: path))
}
