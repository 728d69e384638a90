import Foundation
import KindlingCrypto
import KindlingManifest
import Synchronization

/// The SQLite index of the store (Specs/store.md): chunks, manifests and pins. One connection, guarded by a mutex;
/// other processes share the file through WAL mode and a busy timeout.
final class StoreIndex: Sendable {
    static let schemaVersion: Int64 = 1

    private let database: Mutex<Database>

    init(path: String) throws(StoreError) {
        let database = try Database(path: path)
        try Self.enableWriteAheadLog(database)
        // FULL: a committed index row survives power loss, which is what makes "indexed implies on disk" hold.
        try database.execute("PRAGMA synchronous=FULL")
        try database.execute("PRAGMA foreign_keys=ON")
        try database.transaction { () throws(StoreError) in
            try database.execute(
                """
                CREATE TABLE IF NOT EXISTS chunks(
                    id BLOB PRIMARY KEY,
                    plain_size INTEGER NOT NULL,
                    stored_size INTEGER NOT NULL,
                    last_used INTEGER NOT NULL
                ) WITHOUT ROWID;
                CREATE INDEX IF NOT EXISTS chunks_by_last_use ON chunks(last_used);
                CREATE TABLE IF NOT EXISTS manifests(
                    id BLOB PRIMARY KEY,
                    header BLOB NOT NULL,
                    signature BLOB NOT NULL,
                    body BLOB,
                    repository TEXT NOT NULL,
                    revision TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    received_at INTEGER NOT NULL
                ) WITHOUT ROWID;
                CREATE INDEX IF NOT EXISTS manifests_by_commit ON manifests(repository, revision, created_at);
                CREATE TABLE IF NOT EXISTS pins(
                    manifest_id BLOB PRIMARY KEY REFERENCES manifests(id) ON DELETE CASCADE,
                    pinned_at INTEGER NOT NULL,
                    reason TEXT NOT NULL
                ) WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS wanted(
                    manifest_id BLOB PRIMARY KEY,
                    since INTEGER NOT NULL
                ) WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS peers(
                    address TEXT PRIMARY KEY,
                    node_id BLOB,
                    last_seen INTEGER NOT NULL,
                    banned_until INTEGER NOT NULL DEFAULT 0
                ) WITHOUT ROWID;
                """)
            let version = try database.statement("PRAGMA user_version")
            let current = try version.step() ? version.int(0) : 0
            if current == 0 {
                try database.execute("PRAGMA user_version=\(Self.schemaVersion)")
            } else if current > Self.schemaVersion {
                throw .cannotOpen(
                    path: database.path,
                    reason: "index schema \(current) is newer than this kindling understands; upgrade kindling")
            }
        }
        database.resetStatements()
        self.database = Mutex(database)
    }

    /// WAL lets the node and CLI commands use the store at once. The mode is stored in the file, so only a new
    /// store switches; that switch ignores SQLite's busy handler, so a race between two first openers is retried.
    private static func enableWriteAheadLog(_ database: Database) throws(StoreError) {
        var attempt = 0
        while true {
            let mode = try database.statement("PRAGMA journal_mode")
            let current = try mode.step() ? mode.text(0).lowercased() : ""
            // An active statement holds a read transaction, in which the mode cannot change.
            mode.reset()
            if current == "wal" { return }
            do {
                try database.execute("PRAGMA journal_mode=WAL")
                return
            } catch {
                attempt += 1
                guard attempt < 100 else { throw error }
                usleep(50_000)
            }
        }
    }

    /// Runs `body` with the connection held; keep it short (no file I/O inside).
    func with<R: Sendable>(_ body: (Database) throws(StoreError) -> R) throws(StoreError) -> R {
        try database.withLock { (database: inout Database) throws(StoreError) -> R in
            defer { database.resetStatements() }
            return try body(database)
        }
    }

    // MARK: Chunks

    func chunkSize(_ id: Digest) throws(StoreError) -> (plain: Int, stored: Int)? {
        try with { (db) throws(StoreError) in
            let statement = try db.statement("SELECT plain_size, stored_size FROM chunks WHERE id = ?")
            statement.bind(.blob(id.bytes))
            return try statement.step() ? (Int(statement.int(0)), Int(statement.int(1))) : nil
        }
    }

    func insertChunks(_ chunks: [PendingChunk], now: Int64) throws(StoreError) {
        guard !chunks.isEmpty else { return }
        try with { (db) throws(StoreError) in
            try db.transaction { () throws(StoreError) in
                let statement = try db.statement(
                    "INSERT INTO chunks(id, plain_size, stored_size, last_used) VALUES (?, ?, ?, ?) "
                        + "ON CONFLICT(id) DO UPDATE SET last_used = excluded.last_used")
                for chunk in chunks {
                    statement.reset()
                    statement.bind(.blob(chunk.id.bytes), .int(chunk.plainSize), .int(chunk.storedSize), .integer(now))
                    try statement.run()
                }
            }
        }
    }

    func touchChunks(_ ids: Set<Digest>, now: Int64) throws(StoreError) {
        guard !ids.isEmpty else { return }
        try with { (db) throws(StoreError) in
            try db.transaction { () throws(StoreError) in
                let statement = try db.statement("UPDATE chunks SET last_used = ? WHERE id = ?")
                for id in ids {
                    statement.reset()
                    statement.bind(.integer(now), .blob(id.bytes))
                    try statement.run()
                }
            }
        }
    }

    func deleteChunks(_ ids: [Digest]) throws(StoreError) {
        guard !ids.isEmpty else { return }
        try with { (db) throws(StoreError) in
            try db.transaction { () throws(StoreError) in
                let statement = try db.statement("DELETE FROM chunks WHERE id = ?")
                for id in ids {
                    statement.reset()
                    statement.bind(.blob(id.bytes))
                    try statement.run()
                }
            }
        }
    }

    /// Every indexed chunk with its sizes, least recently used first.
    func chunksByLastUse() throws(StoreError) -> [(id: Digest, plain: Int, stored: Int)] {
        try with { (db) throws(StoreError) in
            let statement = try db.statement("SELECT id, plain_size, stored_size FROM chunks ORDER BY last_used, id")
            var rows: [(Digest, Int, Int)] = []
            while try statement.step() {
                if let id = Digest(bytes: statement.blob(0)) {
                    rows.append((id, Int(statement.int(1)), Int(statement.int(2))))
                }
            }
            return rows
        }
    }

    func chunkTotals() throws(StoreError) -> (count: Int, plain: Int, stored: Int) {
        try with { (db) throws(StoreError) in
            let statement = try db.statement(
                "SELECT COUNT(*), COALESCE(SUM(plain_size), 0), COALESCE(SUM(stored_size), 0) FROM chunks")
            _ = try statement.step()
            return (Int(statement.int(0)), Int(statement.int(1)), Int(statement.int(2)))
        }
    }

    /// Which of `ids` are indexed, in one pass under one lock.
    func presentChunks(_ ids: [Digest]) throws(StoreError) -> Set<Digest> {
        try with { (db) throws(StoreError) in
            let statement = try db.statement("SELECT 1 FROM chunks WHERE id = ?")
            var present = Set<Digest>()
            for id in ids {
                statement.reset()
                statement.bind(.blob(id.bytes))
                if try statement.step() { present.insert(id) }
            }
            return present
        }
    }

    // MARK: Manifests

    func insertHeader(_ signed: SignedHeader, body: [UInt8]?, now: Int64) throws(StoreError) {
        try with { (db) throws(StoreError) in
            let statement = try db.statement(
                """
                INSERT INTO manifests(id, header, signature, body, repository, revision, created_at, received_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(id) DO UPDATE SET body = COALESCE(manifests.body, excluded.body)
                """)
            statement.bind(
                .blob(signed.id.bytes), .blob(signed.headerBytes), .blob(signed.signature.bytes),
                body.map { .blob($0) } ?? .null, .text(signed.header.repositoryName.text), .text(signed.header.commit),
                .integer(Int64(clamping: signed.header.createdAt)), .integer(now))
            try statement.run()
        }
    }

    func manifestRow(_ id: Digest) throws(StoreError) -> ManifestRow? {
        try with { (db) throws(StoreError) in
            let statement = try db.statement("SELECT header, signature, body, received_at FROM manifests WHERE id = ?")
            statement.bind(.blob(id.bytes))
            guard try statement.step() else { return nil }
            return ManifestRow(
                id: id, header: statement.blob(0), signature: statement.blob(1),
                body: statement.isNull(2) ? nil : statement.blob(2), receivedAt: statement.int(3))
        }
    }

    /// Rows matching the filters, newest first; `nil` filters match everything. Bodies are not loaded.
    func manifestRows(repository: String?, commit: String?) throws(StoreError) -> [ManifestRow] {
        try with { (db) throws(StoreError) in
            let statement = try db.statement(
                """
                SELECT id, header, signature, body IS NOT NULL, received_at FROM manifests
                WHERE (?1 IS NULL OR repository = ?1) AND (?2 IS NULL OR revision = ?2)
                ORDER BY created_at DESC, id DESC
                """)
            statement.bind(repository.map { .text($0) } ?? .null, commit.map { .text($0) } ?? .null)
            var rows: [ManifestRow] = []
            while try statement.step() {
                guard let id = Digest(bytes: statement.blob(0)) else { continue }
                rows.append(
                    ManifestRow(
                        id: id, header: statement.blob(1), signature: statement.blob(2),
                        body: statement.int(3) != 0 ? [] : nil, receivedAt: statement.int(4)))
            }
            return rows
        }
    }

    func deleteManifest(_ id: Digest) throws(StoreError) {
        try with { (db) throws(StoreError) in
            let statement = try db.statement("DELETE FROM manifests WHERE id = ?")
            statement.bind(.blob(id.bytes))
            try statement.run()
        }
    }

    // MARK: Pins

    func setPinned(_ id: Digest, pinned: Bool, reason: String, now: Int64) throws(StoreError) {
        try with { (db) throws(StoreError) in
            if pinned {
                let statement = try db.statement(
                    "INSERT INTO pins(manifest_id, pinned_at, reason) VALUES (?, ?, ?) "
                        + "ON CONFLICT(manifest_id) DO UPDATE SET reason = excluded.reason")
                statement.bind(.blob(id.bytes), .integer(now), .text(reason))
                try statement.run()
            } else {
                let statement = try db.statement("DELETE FROM pins WHERE manifest_id = ?")
                statement.bind(.blob(id.bytes))
                try statement.run()
            }
        }
    }

    func setWanted(_ id: Digest, wanted: Bool, now: Int64) throws(StoreError) {
        try with { (db) throws(StoreError) in
            let statement = try db.statement(
                wanted
                    ? "INSERT OR IGNORE INTO wanted(manifest_id, since) VALUES (?, ?)"
                    : "DELETE FROM wanted WHERE manifest_id = ?")
            if wanted { statement.bind(.blob(id.bytes), .integer(now)) } else { statement.bind(.blob(id.bytes)) }
            try statement.run()
        }
    }

    func wanted() throws(StoreError) -> [Digest] {
        try with { (db) throws(StoreError) in
            let statement = try db.statement("SELECT manifest_id FROM wanted ORDER BY since")
            var ids: [Digest] = []
            while try statement.step() {
                if let id = Digest(bytes: statement.blob(0)) { ids.append(id) }
            }
            return ids
        }
    }

    func pins() throws(StoreError) -> [Digest: String] {
        try with { (db) throws(StoreError) in
            let statement = try db.statement("SELECT manifest_id, reason FROM pins")
            var pins: [Digest: String] = [:]
            while try statement.step() {
                if let id = Digest(bytes: statement.blob(0)) { pins[id] = statement.text(1) }
            }
            return pins
        }
    }
}

/// A chunk file that is on disk but not yet in the index.
struct PendingChunk: Sendable {
    var id: Digest
    var plainSize: Int
    var storedSize: Int
}

/// A manifest row as stored. `body` is nil when only the signed header is known.
struct ManifestRow: Sendable {
    var id: Digest
    var header: [UInt8]
    var signature: [UInt8]
    var body: [UInt8]?
    var receivedAt: Int64
}
