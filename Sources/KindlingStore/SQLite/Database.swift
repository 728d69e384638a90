import CSQLite

/// A thin SQLite connection: prepared, cached statements and typed errors. Not Sendable; `StoreIndex` guards it.
final class Database {
    private let handle: OpaquePointer
    private var statements: [String: Statement] = [:]
    let path: String

    init(path: String) throws(StoreError) {
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let status = sqlite3_open_v2(path, &handle, flags, nil)
        guard status == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close_v2(handle)
            throw .cannotOpen(path: path, reason: message)
        }
        self.handle = handle
        self.path = path
        sqlite3_busy_timeout(handle, 30_000)
    }

    deinit {
        statements.removeAll()
        sqlite3_close_v2(handle)
    }

    func execute(_ sql: String) throws(StoreError) {
        var message: UnsafeMutablePointer<CChar>?
        let status = sqlite3_exec(handle, sql, nil, nil, &message)
        if status != SQLITE_OK {
            let text = message.map { String(cString: $0) } ?? lastError
            sqlite3_free(message)
            throw .database(operation: "running '\(sql.prefix(60))'", message: text)
        }
    }

    /// A cached prepared statement, reset and ready for new bindings.
    func statement(_ sql: String) throws(StoreError) -> Statement {
        if let cached = statements[sql] {
            cached.reset()
            return cached
        }
        var raw: OpaquePointer?
        guard sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &raw, nil) == SQLITE_OK,
            let raw
        else {
            throw .database(operation: "preparing '\(sql.prefix(60))'", message: lastError)
        }
        let statement = Statement(raw, database: self)
        statements[sql] = statement
        return statement
    }

    /// Runs `body` in an IMMEDIATE transaction: all of it is committed, or none of it.
    func transaction<R>(_ body: () throws(StoreError) -> R) throws(StoreError) -> R {
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    /// Resets every cached statement. A statement left mid-result holds a read transaction open, and under WAL
    /// such a connection keeps reading an old snapshot: it would never see what other processes commit.
    func resetStatements() {
        for statement in statements.values { statement.reset() }
    }

    var lastError: String { String(cString: sqlite3_errmsg(handle)) }
    var changes: Int { Int(sqlite3_changes(handle)) }
}

/// A prepared statement. Bind with 1-based indexes, step through rows, read 0-based columns.
final class Statement {
    private let raw: OpaquePointer
    private unowned let database: Database

    init(_ raw: OpaquePointer, database: Database) {
        self.raw = raw
        self.database = database
    }

    deinit {
        sqlite3_finalize(raw)
    }

    func reset() {
        sqlite3_reset(raw)
        sqlite3_clear_bindings(raw)
    }

    @discardableResult
    func bind(_ values: SQLValue...) -> Statement {
        for (offset, value) in values.enumerated() {
            let index = Int32(offset + 1)
            switch value {
            case .integer(let number): sqlite3_bind_int64(raw, index, number)
            case .text(let text): sqlite3_bind_text(raw, index, text, -1, csqlite_transient())
            case .blob(let bytes):
                bytes.withUnsafeBytes { buffer in
                    // An empty blob still needs a non-null pointer to be a blob rather than NULL.
                    let dummy: UInt8 = 0
                    if let base = buffer.baseAddress {
                        sqlite3_bind_blob(raw, index, base, Int32(buffer.count), csqlite_transient())
                    } else {
                        _ = withUnsafePointer(to: dummy) { sqlite3_bind_blob(raw, index, $0, 0, csqlite_transient()) }
                    }
                }
            case .null: sqlite3_bind_null(raw, index)
            }
        }
        return self
    }

    /// Advances to the next row; false when there are no more.
    func step() throws(StoreError) -> Bool {
        switch sqlite3_step(raw) {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default:
            throw .database(
                operation: "running '\(String(cString: sqlite3_sql(raw)).prefix(60))'", message: database.lastError)
        }
    }

    /// Runs a statement that returns no rows.
    func run() throws(StoreError) {
        _ = try step()
    }

    func int(_ column: Int32) -> Int64 { sqlite3_column_int64(raw, column) }

    func text(_ column: Int32) -> String {
        guard let pointer = sqlite3_column_text(raw, column) else { return "" }
        return String(cString: pointer)
    }

    func blob(_ column: Int32) -> [UInt8] {
        let count = Int(sqlite3_column_bytes(raw, column))
        guard count > 0, let pointer = sqlite3_column_blob(raw, column) else { return [] }
        return Array(UnsafeRawBufferPointer(start: pointer, count: count))
    }

    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(raw, column) == SQLITE_NULL }
}

enum SQLValue {
    case integer(Int64)
    case text(String)
    case blob([UInt8])
    case null

    static func int(_ value: Int) -> SQLValue { .integer(Int64(value)) }
}
