import KindlingCrypto
import KindlingManifest
import KindlingSnapshot
import KindlingStore
import KindlingTesting
import Testing

@Suite("Snapshot selection: the one rule for the store, the node and the cargo integration")
struct SnapshotSelectionTests {
    func candidate(
        _ byte: UInt8, commit: String, at time: UInt64, key: [String: String] = ["p": "dev"]
    ) throws
        -> SnapshotCandidate
    {
        SnapshotCandidate(
            id: try #require(Digest(bytes: [UInt8](repeating: byte, count: 32))), repository: try RepositoryName("a/b"),
            commit: commit, cacheKey: key, createdAt: time)
    }

    @Test("The nearest commit wins over a newer snapshot further back; the distance is its position")
    func nearestCommit() throws {
        let far = try candidate(1, commit: "c3", at: 900)
        let near = try candidate(2, commit: "c2", at: 100)
        let outcome = SnapshotSelection.select(
            [far, near], commits: ["c1", "c2", "c3"], cacheKey: .exactly(["p": "dev"]))
        guard case .found(let chosen, let distance, let rejected) = outcome else {
            Issue.record("\(outcome)")
            return
        }
        #expect(chosen.id == near.id && distance == 1 && rejected.isEmpty)
    }

    @Test("At one commit the newest wins; a tie on time goes to the larger id (as the store orders them)")
    func newestAtCommit() throws {
        let old = try candidate(9, commit: "c", at: 1)
        let tieLow = try candidate(3, commit: "c", at: 5)
        let tieHigh = try candidate(4, commit: "c", at: 5)
        let outcome = SnapshotSelection.select([old, tieLow, tieHigh], commits: ["c"], cacheKey: .including([:]))
        guard case .found(let chosen, 0, _) = outcome else {
            Issue.record("\(outcome)")
            return
        }
        #expect(chosen.id == tieHigh.id)
    }

    @Test("exactly wants every entry equal; including only the entries named; each miss is a reason")
    func keys() throws {
        let extra = try candidate(1, commit: "c", at: 2, key: ["p": "dev", "t": "x86"])
        let plain = try candidate(2, commit: "c", at: 1, key: ["p": "dev"])
        let exact = SnapshotSelection.select([extra, plain], commits: ["c"], cacheKey: .exactly(["p": "dev"]))
        guard case .found(let chosen, _, let rejected) = exact else {
            Issue.record("\(exact)")
            return
        }
        #expect(chosen.id == plain.id)
        #expect(rejected.map(\.reason) == ["cache key differs (t=x86)"])
        let including = SnapshotSelection.select([extra, plain], commits: ["c"], cacheKey: .including(["p": "dev"]))
        guard case .found(let first, _, _) = including else {
            Issue.record("\(including)")
            return
        }
        #expect(first.id == extra.id)
        let none = SnapshotSelection.select([extra, plain], commits: ["c"], cacheKey: .including(["q": "1"]))
        guard case .none(let count, let reasons) = none else {
            Issue.record("\(none)")
            return
        }
        #expect(count == 2 && reasons.map(\.reason) == Array(repeating: "cache key differs (q=<absent>)", count: 2))
    }

    @Test("A rejected candidate (untrusted, say) passes the choice on to the next; none counts only the commits asked")
    func rejecting() throws {
        let newest = try candidate(1, commit: "c", at: 3)
        let older = try candidate(2, commit: "c", at: 2)
        let elsewhere = try candidate(3, commit: "d", at: 9)
        let outcome = SnapshotSelection.select([newest, older, elsewhere], commits: ["c"], cacheKey: .including([:])) {
            $0.id == newest.id ? "untrusted" : nil
        }
        guard case .found(let chosen, _, let rejected) = outcome else {
            Issue.record("\(outcome)")
            return
        }
        #expect(chosen.id == older.id && rejected.map(\.description) == ["\(newest.id.short): untrusted"])
        let none = SnapshotSelection.select([newest, older, elsewhere], commits: ["c"], cacheKey: .including([:])) {
            _ in "no"
        }
        guard case .none(let count, let reasons) = none else {
            Issue.record("\(none)")
            return
        }
        #expect(count == 2 && reasons.count == 2)
    }

    @Test("The store as a source lists its signed headers; a snapshot missing a chunk is not available")
    func storeSource() throws {
        let directory = TemporaryDirectory("selection-store")
        let store = try ChunkStore(root: directory.file("store"))
        try Fixtures.write(Fixtures.bytes(count: 100_000, seed: 1), to: directory.file("tree/a.bin"))
        let (manifest, _) = try Publisher(store: store, key: Fixtures.key(5)).publish(
            PublishRequest(repository: "a/b", commit: "c", directory: directory.file("tree")))
        let source = StoreSnapshotSource(store: store)
        let listed = try source.candidates(of: try RepositoryName("a/b"))
        #expect(listed.map(\.id) == [manifest.id] && listed.first?.signed == manifest.signed)
        #expect(try source.candidates(of: try RepositoryName("a--b")).isEmpty)
        let transfer = try source.makeAvailable(manifest.id, in: store, progress: nil)
        #expect(transfer.fetchedBytes == 0 && transfer.alreadyLocalBytes == 100_000)
        let unknown = try #require(Digest(bytes: [UInt8](repeating: 1, count: 32)))
        #expect(throws: SnapshotSourceError.self) { try source.makeAvailable(unknown, in: store, progress: nil) }
    }
}
