public import Foundation
public import KindlingCrypto
public import KindlingManifest
public import KindlingMesh
import KindlingStore
import KindlingWire

/// The settings of `kindling node`, from `<store>/node.json` and command-line flags (flags win).
public struct NodeSettings: Codable, Sendable {
    public var listen: String?
    public var peers: [String]?
    public var trust: String?
    public var follow: [String]?
    public var lan: Bool?
    public var meshSecret: String?
    public var meshName: String?
    public var maxSize: String?
    public var uploadLimit: String?
    public var maxPeers: Int?
    public var peerExchange: Bool?
    public var logLevel: String?
    /// Allows listening beyond loopback in an open mesh (no secret): every held snapshot is served to anyone.
    public var `public`: Bool?
    /// Trust roots (`ed25519:<hex>`) and how many must sign: the node then trusts the newest root-signed trust
    /// document it has accepted (Specs/trust.md, "Trust documents"), never a list of publisher keys of its own.
    public var roots: [String]?
    public var threshold: Int?

    /// Where a node listens unless told otherwise: this machine only.
    public static let defaultListen = "127.0.0.1:7341"

    public init() {}

    /// The keys of node.json, as the JSON spells them (a test checks this against the encoder).
    public static let knownKeys: Set<String> = [
        "listen", "peers", "trust", "follow", "lan", "meshSecret", "meshName", "maxSize", "uploadLimit", "maxPeers",
        "peerExchange", "logLevel", "public", "roots", "threshold",
    ]

    /// Reads `<store>/node.json` if it exists. `kindling node` reads it strictly; the CLI, which only looks up the
    /// trust file in it, reads it as it always has (unknown keys ignored), so that a key a newer node knows does
    /// not stop a restore.
    public static func load(storeRoot: String, strict: Bool = true) throws(NodeError) -> NodeSettings {
        let path = storeRoot + "/node.json"
        guard let data = FileManager.default.contents(atPath: path) else { return NodeSettings() }
        return try decode(data, path: path, strict: strict)
    }

    /// Strict: a key this node does not know (a typo such as "folow") is an error, not a setting silently ignored.
    public static func decode(_ data: Data, path: String, strict: Bool = true) throws(NodeError) -> NodeSettings {
        let settings: NodeSettings
        let keys: [String]
        do {
            settings = try JSONDecoder().decode(NodeSettings.self, from: data)
            keys = (try JSONSerialization.jsonObject(with: data) as? [String: Any]).map { Array($0.keys) } ?? []
        } catch {
            throw .badConfiguration("\(path): \(error)")
        }
        if strict, let unknown = keys.filter({ !knownKeys.contains($0) }).sorted().first {
            throw .badConfiguration(
                "\(path): unknown setting \(unknown.debugDescription); the settings are "
                    + knownKeys.sorted().joined(separator: ", "))
        }
        return settings
    }

    /// `other`'s values where set, ours otherwise.
    public func overridden(by other: NodeSettings) -> NodeSettings {
        var merged = self
        merged.listen = other.listen ?? listen
        merged.peers = (other.peers?.isEmpty == false) ? other.peers : peers
        merged.trust = other.trust ?? trust
        merged.follow = (other.follow?.isEmpty == false) ? other.follow : follow
        merged.lan = other.lan ?? lan
        merged.meshSecret = other.meshSecret ?? meshSecret
        merged.meshName = other.meshName ?? meshName
        merged.maxSize = other.maxSize ?? maxSize
        merged.uploadLimit = other.uploadLimit ?? uploadLimit
        merged.maxPeers = other.maxPeers ?? maxPeers
        merged.peerExchange = other.peerExchange ?? peerExchange
        merged.logLevel = other.logLevel ?? logLevel
        merged.public = other.public ?? self.public
        merged.roots = (other.roots?.isEmpty == false) ? other.roots : roots
        merged.threshold = other.threshold ?? threshold
        return merged
    }

    /// The configured trust roots, nil when there are none. Throws for a key that does not parse or a threshold
    /// that is missing, below 1 or above the number of distinct keys.
    public func trustRoots() throws(NodeError) -> TrustRoots? {
        guard let texts = roots, !texts.isEmpty else {
            if threshold != nil {
                throw .badConfiguration("--threshold (\"threshold\") is set but no --root (\"roots\") is")
            }
            return nil
        }
        var keys: [PublicKey] = []
        for text in texts {
            guard let key = try? PublicKey(text: text) else {
                throw .badConfiguration("--root '\(text)' is not a public key (ed25519: and 64 hex digits)")
            }
            keys.append(key)
        }
        guard let threshold else {
            throw .badConfiguration(
                "--root is given but not --threshold: say how many of the \(keys.count) roots must sign a trust "
                    + "document")
        }
        do throws(TrustDocumentError) { return try TrustRoots(keys: keys, threshold: threshold) } catch {
            throw .badConfiguration("the trust roots: \(error)")
        }
    }

    /// The node's trust state folder in a store.
    public static func trustStateDirectory(storeRoot: String) -> String { storeRoot + "/trust-state" }

    /// Validates everything and builds the mesh configuration. With roots, the node's trust is its current trust
    /// document from `<storeRoot>/trust-state` (none yet: nothing is trusted), and the trust file is not used.
    public func meshConfiguration(
        nodeKey: SigningKey, storeRoot: String? = nil
    ) throws -> (MeshConfiguration, maxStoreBytes: Int?) {
        let policy: TrustPolicy
        var rootsSetting: TrustRootsSetting?
        if let roots = try trustRoots() {
            guard let storeRoot else { throw NodeError.badConfiguration("trust roots need the node's store folder") }
            let keeper = try TrustDocumentKeeper(directory: Self.trustStateDirectory(storeRoot: storeRoot))
            rootsSetting = TrustRootsSetting(roots: roots, keeper: keeper)
            policy = try keeper.current()?.document.policy ?? TrustPolicy(trust: TrustFile(keys: []))
        } else {
            guard let trustPath = trust else {
                throw NodeError.badConfiguration(
                    "no trust file: pass --trust FILE (\"trust\" in node.json), or trust roots with --root PUB ... "
                        + "--threshold N (\"roots\" and \"threshold\")")
            }
            policy = TrustPolicy(trust: try TrustFile.load(path: trustPath))
        }
        let listenText = listen ?? Self.defaultListen
        guard let listenAddress = HostPort(listenText) else {
            throw NodeError.badConfiguration("--listen '\(listenText)' is not HOST:PORT")
        }
        let isPublic = self.public ?? false
        var bootstrap: [HostPort] = []
        for text in peers ?? [] {
            guard let address = HostPort(text), address.port > 0 else {
                throw NodeError.badConfiguration("--peer '\(text)' is not HOST:PORT")
            }
            bootstrap.append(address)
        }
        let mesh = try meshSecret.map { try MeshIdentity.load(secretFile: $0) } ?? .open(name: meshName ?? "kindling")
        if !listenAddress.isLoopback && !mesh.isPrivate && !isPublic {
            throw NodeError.badConfiguration(
                "refusing to listen on \(listenAddress) in an open mesh: anyone who can reach it could fetch every "
                    + "snapshot this node holds, unencrypted. Give --mesh-secret FILE (a private mesh), or --public "
                    + "(\"public\": true in node.json) if that is intended, or listen on 127.0.0.1")
        }
        let maxStore = try maxSize.map { text in
            guard let value = parseSize(text) else {
                throw NodeError.badConfiguration("--max-size '\(text)' is not a size like 20G")
            }
            return value
        }
        let upload = try uploadLimit.map { text in
            guard let value = parseSize(text), value > 0 else {
                throw NodeError.badConfiguration("--upload-limit '\(text)' is not a rate like 10M (bytes per second)")
            }
            return value
        }
        var lanConfiguration: LANConfiguration?
        if lan ?? false {
            var discovery = LANConfiguration()
            // Nobody on the LAN could connect to a loopback listener: announcing it would only make them fail.
            discovery.announce = !listenAddress.isLoopback
            lanConfiguration = discovery
        }
        var configuration = MeshConfiguration(
            nodeKey: nodeKey, mesh: mesh, listen: listenAddress, bootstrapPeers: bootstrap, trust: policy,
            follow: (follow ?? []).map(RepositoryGlob.init), peerExchange: peerExchange ?? true,
            maxPeers: maxPeers ?? 32, uploadLimit: upload, lan: lanConfiguration)
        configuration.isPublic = isPublic
        configuration.trustRoots = rootsSetting
        return (configuration, maxStore)
    }
}

/// What a node's settings expose, in words for its log: an open mesh listening beyond loopback, or LAN discovery
/// that cannot announce a loopback listener.
public func exposureWarnings(_ configuration: MeshConfiguration) -> [String] {
    var warnings: [String] = []
    if !configuration.listen.isLoopback && !configuration.mesh.isPrivate {
        warnings.append(
            "public node: listening on \(configuration.listen) in an open mesh, so anyone who can reach this address "
                + "can fetch every snapshot this node holds (private repositories' build state included), and the "
                + "traffic is not encrypted; use --mesh-secret to restrict and encrypt it")
    }
    if let lan = configuration.lan, !lan.announce {
        warnings.append(
            "LAN discovery cannot announce this node: it listens on \(configuration.listen), which other machines "
                + "cannot reach; it still dials nodes that announce themselves. To be found, listen on a LAN "
                + "address (with --mesh-secret, or --public)")
    }
    return warnings
}

/// Parses sizes like `500M`, `10G`, `1.5GiB`, `123456` (K/M/G/T are powers of 1024).
public func parseSize(_ text: String) -> Int? {
    let trimmed = text.trimmingCharacters(in: .whitespaces)
    let digits = trimmed.prefix(while: { $0.isNumber || $0 == "." })
    guard !digits.isEmpty, let number = Double(digits), number >= 0 else { return nil }
    var suffix = trimmed.dropFirst(digits.count).lowercased()
    for tail in ["ib", "b"] where suffix.hasSuffix(tail) {
        suffix = String(suffix.dropLast(tail.count))
        break
    }
    let multipliers: [String: Double] = ["": 1, "k": 1024, "m": 1_048_576, "g": 1_073_741_824, "t": 1_099_511_627_776]
    guard let multiplier = multipliers[suffix] else { return nil }
    let value = number * multiplier
    return value < Double(Int.max) ? Int(value) : nil
}

/// The node's own identity key, `<store>/node.key`, made on first start.
public func loadOrCreateNodeKey(storeRoot: String) throws -> SigningKey {
    let path = storeRoot + "/node.key"
    if FileManager.default.fileExists(atPath: path) { return try SecretKeyFile.load(path: path) }
    let key = SigningKey.generate()
    try SecretKeyFile.create(path: path, key: key)
    return key
}

public enum NodeError: Error, Sendable, CustomStringConvertible {
    case badConfiguration(String)
    case cannotListen(String)

    public var description: String {
        switch self {
        case .badConfiguration(let message): return message
        case .cannotListen(let message): return message
        }
    }
}
