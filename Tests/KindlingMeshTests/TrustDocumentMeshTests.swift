import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingTesting
import Testing

@testable import KindlingMesh

/// Trust documents between in-process nodes over loopback sockets: rotation across the mesh, and disagreement that
/// bans nobody.
@Suite("Mesh: trust documents between nodes", .serialized)
struct TrustDocumentMeshTests {
    static let oldRootKeys = [Fixtures.key(101), Fixtures.key(102), Fixtures.key(103)]
    static let newRootKeys = [Fixtures.key(111), Fixtures.key(112)]

    static func roots(_ keys: [SigningKey], threshold: Int) throws -> TrustRoots {
        try TrustRoots(keys: keys.map(\.publicKey), threshold: threshold)
    }

    static func document(
        _ version: UInt64, roots: TrustRoots, signers: [SigningKey], publisher: SigningKey = TestTrust.bors
    ) -> [UInt8] {
        let expires = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 + 86400).rounded(.down))
        var signed = SignedTrustDocument(
            document: TrustDocument(
                version: version, expires: expires, roots: roots,
                keys: [TrustedKey(name: "bors-\(version)", publicKey: publisher.publicKey)]))
        for key in signers { signed = signed.signed(with: key) }
        return signed.encoded()
    }

    /// A node configured with `roots`, keeping its documents in a folder of its own (kept while the test runs).
    static func node(
        _ name: String, roots: TrustRoots, peers: [HostPort] = [], follow: [String] = []
    ) async throws -> (TestNode, TemporaryDirectory) {
        let folder = TemporaryDirectory("trust-\(name)")
        let keeper = try TrustDocumentKeeper(directory: folder.file("trust-state"))
        let node = try await TestNode(
            name: name, peers: peers, follow: follow, policy: TrustPolicy(trust: TrustFile())
        ) {
            $0.trustRoots = TrustRootsSetting(roots: roots, keeper: keeper)
        }
        return (node, folder)
    }

    @Test("A node that missed a root rotation walks the chain: it fetches the versions in between, then the newest")
    func rotationAcrossTheMesh() async throws {
        let old = try Self.roots(Self.oldRootKeys, threshold: 2)
        let new = try Self.roots(Self.newRootKeys, threshold: 2)
        let (holder, holderState) = try await Self.node("holder", roots: old)
        defer { withExtendedLifetime(holderState) {} }
        // Published before the late node exists: v1 under the old roots, v2 hands over to the new roots (signed by
        // both thresholds), v3 under the new roots only.
        let v1 = Self.document(1, roots: old, signers: Array(Self.oldRootKeys.prefix(2)))
        let v2 = Self.document(2, roots: new, signers: Array(Self.oldRootKeys.suffix(2)) + Self.newRootKeys)
        let v3 = Self.document(3, roots: new, signers: Self.newRootKeys)
        #expect(await holder.node.publishTrustDocument(v1) == .accepted(version: 1))
        #expect(await holder.node.publishTrustDocument(v2) == .accepted(version: 2))
        #expect(await holder.node.publishTrustDocument(v3) == .accepted(version: 3))
        // A v4 signed by the old roots only: the new roots govern now, and none of them signed it.
        let forged = Self.document(4, roots: new, signers: Self.oldRootKeys)
        guard case .refused = await holder.node.publishTrustDocument(forged) else {
            Issue.record("a document its own roots did not sign was accepted")
            return
        }
        let (late, lateState) = try await Self.node("late", roots: old, peers: [holder.address])
        defer { withExtendedLifetime(lateState) {} }
        try await withRunningNodes([holder, late]) {
            try await eventually("the late node reached version 3", timeout: .seconds(20)) {
                await late.node.currentTrustDocument?.document.version == 3
            }
            #expect(await late.node.trust.trust.keys.map(\.name) == ["bors-3"])
            #expect(await late.node.status().bannedPeers == 0)
            #expect(await holder.node.status().bannedPeers == 0)
        }
    }

    @Test("A revocation rolls through a line of six nodes that all hold A's snapshot: no bans, all end on v2")
    func revocationRollsThrough() async throws {
        let roots = try Self.roots(Self.oldRootKeys, threshold: 2)
        let signers = Array(Self.oldRootKeys.prefix(2))
        var line: [(TestNode, TemporaryDirectory)] = []
        for index in 0..<6 {
            let peers = line.last.map { [$0.0.address] } ?? []
            // Every node follows the repository, so each holds (and announces, serves) A's snapshot.
            line.append(try await Self.node("n\(index)", roots: roots, peers: peers, follow: ["demo/*"]))
        }
        let nodes = line.map(\.0)
        let source = TemporaryDirectory("rollout")
        defer { withExtendedLifetime((line, source)) {} }
        let tree = try makeTree(source, files: 2, bytesPerFile: 200_000)
        try await withRunningNodes(nodes) {
            #expect(
                await nodes[0].node.publishTrustDocument(Self.document(1, roots: roots, signers: signers))
                    == .accepted(version: 1))
            try await eventually("v1 everywhere") {
                for node in nodes where await node.node.currentTrustDocument?.document.version != 1 { return false }
                return true
            }
            let manifest = try await nodes[0].publish(tree, commit: "a1")
            try await eventually("A's snapshot held everywhere") {
                for node in nodes where await node.node.knownSnapshots().first?.local != true { return false }
                return true
            }
            // v2 trusts another key only: A's snapshot is no longer trusted. Published at the far end: while it
            // spreads, nodes still on v1 keep announcing and serving A's snapshot to nodes already on v2.
            let v2 = Self.document(2, roots: roots, signers: signers, publisher: Fixtures.key(77))
            #expect(await nodes[5].node.publishTrustDocument(v2) == .accepted(version: 2))
            try await eventually("v2 everywhere, A's snapshot nowhere", timeout: .seconds(10)) {
                for node in nodes {
                    if await node.node.currentTrustDocument?.document.version != 2 { return false }
                    if await node.catalogContains(manifest.id) { return false }
                }
                return true
            }
            for node in nodes {
                let status = await node.node.status()
                #expect(status.bannedPeers == 0)
                #expect(status.gossip.strikes == 0)
                #expect(status.peers.count >= 1)
            }
        }
    }

    @Test("A node that refuses a peer's document (other roots) does not ban it and stays connected")
    func disagreementIsNoBan() async throws {
        let old = try Self.roots(Self.oldRootKeys, threshold: 2)
        let other = try Self.roots(Self.newRootKeys, threshold: 1)
        let (holder, holderState) = try await Self.node("holder", roots: old)
        defer { withExtendedLifetime(holderState) {} }
        #expect(
            await holder.node.publishTrustDocument(
                Self.document(1, roots: old, signers: Array(Self.oldRootKeys.prefix(2)))) == .accepted(version: 1))
        let (stranger, strangerState) = try await Self.node("stranger", roots: other, peers: [holder.address])
        defer { withExtendedLifetime(strangerState) {} }
        try await withRunningNodes([holder, stranger]) {
            try await eventually("the stranger refused the document") {
                await stranger.node.status().trust?.lastRefusal != nil
            }
            #expect(await stranger.node.currentTrustDocument == nil)
            // Given time to misbehave: still connected, nobody banned or struck.
            try await Task.sleep(for: .seconds(1))
            #expect(await stranger.node.connectedPeers.count == 1)
            #expect(await holder.node.connectedPeers.count == 1)
            #expect(await stranger.node.status().bannedPeers == 0)
            #expect(await holder.node.status().bannedPeers == 0)
            #expect(await stranger.node.status().gossip.strikes == 0)
        }
    }

    @Test("A node without roots ignores trust messages, as a node that predates them does")
    func noRootsIgnores() async throws {
        let old = try Self.roots(Self.oldRootKeys, threshold: 2)
        let (holder, holderState) = try await Self.node("holder", roots: old)
        defer { withExtendedLifetime(holderState) {} }
        _ = await holder.node.publishTrustDocument(Self.document(1, roots: old, signers: Self.oldRootKeys))
        let plain = try await TestNode(name: "plain", peers: [holder.address])
        try await withRunningNodes([holder, plain]) {
            try await eventually("connected") { await plain.node.connectedPeers.count == 1 }
            try await Task.sleep(for: .milliseconds(500))
            #expect(await plain.node.currentTrustDocument == nil)
            #expect(await plain.node.status().trust == nil)
            #expect(await plain.node.status().bannedPeers == 0)
            #expect(await holder.node.status().bannedPeers == 0)
            guard
                case .refused(let reason) = await plain.node.publishTrustDocument(
                    Self.document(1, roots: old, signers: Self.oldRootKeys))
            else {
                Issue.record("a node without roots took a trust document")
                return
            }
            #expect(reason.contains("no trust roots"))
        }
    }
}
