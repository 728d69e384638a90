import Foundation
import KindlingManifest
import KindlingMesh
import KindlingTesting
import Testing

@testable import KindlingNode

@Suite("Node configuration: node.json parsing and the settings' checks")
struct NodeConfigurationTests {
    let directory = TemporaryDirectory("node-config")

    /// A trust file on disk, for settings that get as far as building the mesh configuration.
    func trustFile() throws -> String {
        let path = directory.file("trust.json")
        try Fixtures.trust([("bors", Fixtures.key(1))]).save(path: path)
        return path
    }

    func load(_ json: String) throws(NodeError) -> NodeSettings {
        try NodeSettings.decode(Data(json.utf8), path: "node.json")
    }

    @Test("The shipped example parses, every key of it")
    func example() throws {
        let package = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let text = try String(
            contentsOf: package.appendingPathComponent("tools/systemd/node.json.example"), encoding: .utf8)
        let settings = try load(text)
        #expect(settings.listen == "0.0.0.0:7341")
        #expect(settings.follow == ["rust-lang/rust"])
        #expect(settings.lan == true && settings.maxSize == "20G" && settings.uploadLimit == "20M")
    }

    @Test("knownKeys is exactly what the settings encode to, so strictness cannot drift from the fields")
    func knownKeysMatchFields() throws {
        var all = NodeSettings()
        all.listen = "a"
        all.peers = []
        all.trust = "t"
        all.follow = []
        all.lan = true
        all.meshSecret = "s"
        all.meshName = "n"
        all.maxSize = "1"
        all.uploadLimit = "1"
        all.maxPeers = 1
        all.peerExchange = true
        all.logLevel = "info"
        all.public = false
        all.roots = []
        all.threshold = 1
        let object = try JSONSerialization.jsonObject(with: JSONEncoder().encode(all)) as? [String: Any]
        #expect(Set(object?.keys.map { $0 } ?? []) == NodeSettings.knownKeys)
    }

    @Test(
        "Unknown keys, wrong types and broken JSON are refused with the file named",
        arguments: [
            (#"{"folow": ["a/*"]}"#, "unknown setting \"folow\""),
            (#"{"trust": "t", "Trust": "u"}"#, "unknown setting \"Trust\""),
            (#"{"maxPeers": "many"}"#, "node.json"),
            (#"{"lan": "yes"}"#, "node.json"),
            (#"{"peers": "a:1"}"#, "node.json"),
            (#"{"listen": "#, "node.json"),
            (#"["listen"]"#, "node.json"),
        ])
    func refused(json: String, mentioning: String) {
        #expect {
            try load(json)
        } throws: { error in
            guard case .badConfiguration(let message) = error as? NodeError else { return false }
            return message.contains(mentioning) && message.hasPrefix("node.json")
        }
    }

    @Test("A missing node.json is no settings; a broken one in a store is refused at load")
    func loadFromStore() throws {
        #expect(try NodeSettings.load(storeRoot: directory.path).trust == nil)
        try Data(#"{"trust": 3}"#.utf8).write(to: URL(fileURLWithPath: directory.file("node.json")))
        #expect(throws: NodeError.self) { try NodeSettings.load(storeRoot: directory.path) }
    }

    @Test("The CLI's lenient read (for the trust file only) ignores unknown keys; the node's strict one refuses them")
    func lenientForTheCLI() throws {
        try Data(#"{"trust": "/t.json", "future": 1}"#.utf8).write(
            to: URL(fileURLWithPath: directory.file("node.json")))
        #expect(try NodeSettings.load(storeRoot: directory.path, strict: false).trust == "/t.json")
        #expect(throws: NodeError.self) { try NodeSettings.load(storeRoot: directory.path) }
    }

    @Test("Flags override node.json field by field; empty lists do not erase the file's")
    func overriding() {
        var file = NodeSettings()
        file.listen = "127.0.0.1:1"
        file.peers = ["a:1"]
        file.follow = ["x/*"]
        file.maxPeers = 4
        var flags = NodeSettings()
        flags.listen = "127.0.0.1:2"
        flags.peers = []
        flags.follow = ["y/*"]
        let merged = file.overridden(by: flags)
        #expect(merged.listen == "127.0.0.1:2")
        #expect(merged.peers == ["a:1"])
        #expect(merged.follow == ["y/*"])
        #expect(merged.maxPeers == 4)
    }

    @Test(
        "meshConfiguration refuses each bad setting with a message that says what to do",
        arguments: [
            ("trust", "no trust file: pass --trust FILE"),
            ("listen", "--listen 'nowhere' is not HOST:PORT"),
            ("peer", "--peer '127.0.0.1:0' is not HOST:PORT"),
            ("open", "refusing to listen on 0.0.0.0:7341 in an open mesh"),
            ("size", "--max-size 'lots' is not a size"),
            ("upload", "--upload-limit '0' is not a rate"),
        ])
    func meshConfigurationErrors(setting: String, message: String) throws {
        var settings = NodeSettings()
        settings.trust = try trustFile()
        settings.listen = "127.0.0.1:0"
        switch setting {
        case "trust": settings.trust = nil
        case "listen": settings.listen = "nowhere"
        case "peer": settings.peers = ["127.0.0.1:0"]
        case "open": settings.listen = "0.0.0.0:7341"
        case "size": settings.maxSize = "lots"
        default: settings.uploadLimit = "0"
        }
        #expect {
            try settings.meshConfiguration(nodeKey: Fixtures.key(2))
        } throws: { error in
            "\(error)".contains(message)
        }
    }

    @Test("Valid settings build the configuration they say; --public allows an open mesh beyond loopback")
    func meshConfigurationBuilt() throws {
        var settings = NodeSettings()
        settings.trust = try trustFile()
        settings.listen = "0.0.0.0:7341"
        settings.public = true
        settings.peers = ["127.0.0.1:9"]
        settings.follow = ["rust-lang/*"]
        settings.maxSize = "1.5G"
        settings.uploadLimit = "10M"
        settings.lan = true
        let (configuration, maxStore) = try settings.meshConfiguration(nodeKey: Fixtures.key(2))
        #expect(configuration.isPublic)
        #expect(configuration.bootstrapPeers == [HostPort(host: "127.0.0.1", port: 9)])
        #expect(configuration.follow.map(\.pattern) == ["rust-lang/*"])
        #expect(configuration.uploadLimit == 10 << 20)
        #expect(maxStore == 1_610_612_736)
        #expect(configuration.lan?.announce == true)
        #expect(exposureWarnings(configuration).count == 1, "an open mesh beyond loopback is warned about")
    }

    @Test(
        "Sizes: powers of 1024, optional B or iB, fractions; anything else is nil",
        arguments: [
            ("123456", 123_456), ("1K", 1024), ("10M", 10 << 20), ("1.5GiB", 1_610_612_736), ("2 t", nil),
            ("2T", 2 << 40), ("20gb", 20 << 30), ("", nil), ("-1", nil), ("1X", nil), ("G", nil),
        ] as [(String, Int?)])
    func sizes(text: String, value: Int?) {
        #expect(parseSize(text) == value)
    }
}
