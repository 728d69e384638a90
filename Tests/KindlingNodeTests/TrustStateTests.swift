import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingMesh
import KindlingTesting
import Testing

@testable import KindlingNode

/// The node's trust roots and its persisted trust documents (`TrustDocumentKeeper`), on real files.
@Suite("Node trust roots and trust state")
struct TrustStateTests {
    let directory = TemporaryDirectory("trust-state")
    static let roots = [Fixtures.key(101), Fixtures.key(102), Fixtures.key(103)]
    static let rootSet = try? TrustRoots(keys: roots.map(\.publicKey), threshold: 2)

    static func document(
        _ version: UInt64, roots: TrustRoots? = rootSet, signers: [Int] = [0, 1]
    ) throws
        -> SignedTrustDocument
    {
        let expires = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 + 86400).rounded(.down))
        var signed = SignedTrustDocument(
            document: TrustDocument(
                version: version, expires: expires, roots: try #require(roots),
                keys: [TrustedKey(name: "bors", publicKey: Fixtures.key(1).publicKey)]))
        for index in signers { signed = signed.signed(with: Self.roots[index]) }
        return signed
    }

    @Test("node.json roots and threshold parse; a bad key, a missing or impossible threshold are refused")
    func rootsSettings() throws {
        var settings = NodeSettings()
        #expect(try settings.trustRoots() == nil)
        settings.roots = Self.roots.map(\.publicKey.text)
        #expect(throws: NodeError.self) { try settings.trustRoots() }
        settings.threshold = 2
        #expect(try settings.trustRoots()?.threshold == 2)
        #expect(try settings.trustRoots()?.keys.count == 3)
        for bad in [0, 4] {
            settings.threshold = bad
            #expect(throws: NodeError.self, "threshold \(bad)") { try settings.trustRoots() }
        }
        settings.threshold = 1
        settings.roots = ["ed25519:1234"]
        #expect(throws: NodeError.self) { try settings.trustRoots() }
        var thresholdOnly = NodeSettings()
        thresholdOnly.threshold = 1
        #expect(throws: NodeError.self) { try thresholdOnly.trustRoots() }
        let decoded = try NodeSettings.decode(
            Data(#"{"roots": ["\#(Self.roots[0].publicKey.text)"], "threshold": 1}"#.utf8), path: "node.json")
        #expect(try decoded.trustRoots()?.keys == [Self.roots[0].publicKey])
    }

    @Test("With roots the node needs no trust file; it trusts nothing until a document, then the persisted one")
    func rootsConfiguration() throws {
        var settings = NodeSettings()
        settings.listen = "127.0.0.1:0"
        settings.roots = Self.roots.map(\.publicKey.text)
        settings.threshold = 2
        let store = directory.file("store")
        try FileManager.default.createDirectory(atPath: store, withIntermediateDirectories: true)
        let (empty, _) = try settings.meshConfiguration(nodeKey: Fixtures.key(2), storeRoot: store)
        #expect(empty.trust.trust.keys.isEmpty)
        let keeper = try #require(empty.trustRoots?.keeper)
        try keeper.persist(try Self.document(1))
        let (configured, _) = try settings.meshConfiguration(nodeKey: Fixtures.key(2), storeRoot: store)
        #expect(configured.trust.trust.keys.map(\.name) == ["bors"])
    }

    @Test("Persisted documents survive a reopen; a lower version never replaces current; files 0600, folder 0700")
    func persistence() throws {
        let folder = directory.file("state")
        let keeper = try TrustDocumentKeeper(directory: folder)
        #expect(try keeper.current() == nil)
        let (first, second) = (try Self.document(1), try Self.document(2))
        try keeper.persist(second)
        try keeper.persist(first)
        let reopened = try TrustDocumentKeeper(directory: folder)
        #expect(try reopened.current()?.document.version == 2)
        #expect(reopened.archived().map(\.document.version) == [1, 2])
        #expect(reopened.bytes(version: 1) == first.encoded())
        #expect(reopened.bytes(version: 0) == second.encoded())
        #expect(reopened.bytes(version: 7) == nil)
        let names = try FileManager.default.contentsOfDirectory(atPath: folder)
        #expect(Set(names) == ["current", "v1", "v2"], "no temporary file is left")
        for name in names {
            let mode = try FileManager.default.attributesOfItem(atPath: folder + "/" + name)[.posixPermissions] as? Int
            #expect(mode == 0o600, "\(name)")
        }
        #expect(try FileManager.default.attributesOfItem(atPath: folder)[.posixPermissions] as? Int == 0o700)
    }

    @Test("A folder others can write, or a link in its place, is refused")
    func notPrivate() throws {
        let open = directory.file("open")
        try FileManager.default.createDirectory(atPath: open, withIntermediateDirectories: true)
        chmod(open, 0o770)
        #expect(throws: TrustStateError.self) { _ = try TrustDocumentKeeper(directory: open) }
        let real = directory.file("real")
        _ = try TrustDocumentKeeper(directory: real)
        let link = directory.file("link")
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: real)
        #expect(throws: TrustStateError.self) { _ = try TrustDocumentKeeper(directory: link) }
    }

    @Test("The CLI's check: the current document is accepted from the configured roots, not from others")
    func verifiedCurrent() throws {
        let keeper = try TrustDocumentKeeper(directory: directory.file("cli"))
        try keeper.persist(try Self.document(1))
        let roots = try #require(Self.rootSet)
        #expect(try keeper.verifiedCurrent(configuredRoots: roots)?.document.version == 1)
        let others = try TrustRoots(keys: [Fixtures.key(120).publicKey, Fixtures.key(121).publicKey], threshold: 1)
        #expect(throws: TrustStateError.self) { _ = try keeper.verifiedCurrent(configuredRoots: others) }
    }
}
