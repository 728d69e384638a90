import ArgumentParser
import Foundation
import KindlingCrypto
import KindlingMesh
import KindlingNode
import KindlingStore
import KindlingWire
import Logging

struct Node: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a mesh node in the foreground until SIGINT or SIGTERM.",
        discussion: """
            The node gossips signed snapshot announcements with its peers, serves the chunks it holds, fetches what \
            it is asked for (and every new snapshot of the repositories it follows), and answers 'kindling status', \
            'peers', 'fetch', 'restore' and 'publish' on the control socket <store>/node.sock. \
            Settings may also live in <store>/node.json (same names as the flags); flags win.
            """)

    @OptionGroup var storeOptions: StoreOptions
    @Option(
        name: .long,
        help: "Address to accept peers on (default 127.0.0.1:7341, this machine only; port 0 picks one).")
    var listen: String?
    @Flag(
        name: .long,
        help: """
            Allow listening beyond loopback without --mesh-secret: anyone who can reach the node can fetch every \
            snapshot it holds.
            """)
    var `public` = false
    @Option(name: .long, parsing: .singleValue, help: "A peer to keep connected to, HOST:PORT (repeatable).")
    var peer: [String] = []
    @Option(name: .long, help: "The trust file of accepted publisher keys (without --root).") var trust: String?
    @Option(
        name: .customLong("root"), parsing: .singleValue,
        help: "A trust root's public key, ed25519:HEX (repeatable): trust the root-signed trust documents instead.")
    var roots: [String] = []
    @Option(name: .long, help: "How many of the --root keys must sign a trust document.") var threshold: Int?
    @Option(
        name: .long, parsing: .singleValue,
        help: "Prefetch every new snapshot of repositories matching this glob (repeatable).")
    var follow: [String] = []
    @Flag(name: .long, help: "Find peers of the same mesh on the local network by UDP multicast.") var lan = false
    @Option(name: .long, help: "A shared secret file: only nodes holding it can connect; all traffic is encrypted.")
    var meshSecret: String?
    @Option(name: .long, help: "The name of an open mesh (default 'kindling').") var meshName: String?
    @Option(name: .long, help: "Keep the store at or below this size, evicting least recently used chunks.")
    var maxSize: String?
    @Option(name: .long, help: "Upload at most this many bytes per second (e.g. 10M).") var uploadLimit: String?
    @Option(name: .long, help: "Most peers to be connected to at once (default 32).") var maxPeers: Int?
    @Flag(name: .long, help: "Do not learn peers from other peers (keep the topology as configured).")
    var noPeerExchange = false
    @Option(name: .long, help: "trace, debug, info, notice, warning or error (default info).") var logLevel: String?

    func run() async throws {
        try await reportingErrors {
            let root = storeOptions.path
            let store = try storeOptions.open()
            var flags = NodeSettings()
            flags.listen = listen
            flags.peers = peer
            flags.trust = trust
            flags.roots = roots
            flags.threshold = threshold
            flags.follow = follow
            flags.lan = lan ? true : nil
            flags.meshSecret = meshSecret
            flags.meshName = meshName
            flags.maxSize = maxSize
            flags.uploadLimit = uploadLimit
            flags.maxPeers = maxPeers
            flags.peerExchange = noPeerExchange ? false : nil
            flags.logLevel = logLevel
            flags.public = self.public ? true : nil
            let settings = try NodeSettings.load(storeRoot: root).overridden(by: flags)
            let level = Logger.Level(rawValue: settings.logLevel ?? "info") ?? .info
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
            let logger = Logger(label: "kindling.node")
            if ControlClient(storeRoot: root).isNodeRunning {
                throw CommandFailure("a node is already running for the store \(root)")
            }
            let nodeKey = try loadOrCreateNodeKey(storeRoot: root)
            let (configuration, maxStoreBytes) = try settings.meshConfiguration(nodeKey: nodeKey, storeRoot: root)
            for warning in exposureWarnings(configuration) { logger.warning("\(warning)") }
            // With roots, the trust documents decide; a trust file beside them would be a second, unsigned source.
            let trustFile = configuration.trustRoots == nil ? settings.trust : nil
            if configuration.trustRoots != nil, let path = settings.trust {
                let message =
                    "trust roots are configured, so the trust file \(path) is not used: trust comes from the "
                    + "root-signed trust documents"
                logger.warning("\(message)")
            }
            // Descriptors: the soft limit is often 1024; a node serving many peers needs more, and a reserve.
            let limits = DescriptorLimit.raiseSoftToHard()
            if limits.after != limits.before {
                logger.info(
                    "raised the open-files limit", metadata: ["from": "\(limits.before)", "to": "\(limits.after)"])
            }
            let service = NodeService(
                store: store, configuration: configuration, maxStoreBytes: maxStoreBytes, logger: logger,
                trustFile: trustFile)
            try await service.run { port in
                print(
                    "kindling node \(nodeKey.publicKey.text) listening on \(configuration.listen.host):\(port)"
                        + "\(configuration.mesh.isPrivate ? " (private mesh)" : ""); control socket \(root)/node.sock")
                fflush(nil)
            }
            print("node stopped")
        }
    }
}

struct MeshSecret: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mesh-secret", abstract: "Create a shared secret for a private mesh (give it to every node).")

    @Option(name: .long, help: "Where to write the secret (mode 0600; never overwritten).") var out: String

    func run() async throws {
        try await reportingErrors {
            try MeshIdentity.createSecretFile(path: out)
            print("wrote a new mesh secret to \(out); start every node of the mesh with --mesh-secret \(out)")
        }
    }
}
