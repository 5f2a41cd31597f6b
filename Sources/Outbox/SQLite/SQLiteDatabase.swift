import CSQLite

/// One SQLite connection with a cache of prepared statements.
///
/// Not thread-safe by design: the connection is opened in multi-thread mode (no SQLite mutexes) and must be
/// used from one thread only, which in southbridge is the Outbox writer thread.
final class SQLiteDatabase {
    let path: String
    private(set) var connection: OpaquePointer?
    private var statements: [String: SQLiteStatement] = [:]

    /// Opens (and creates, when missing) the database file at `path`; `readOnly` opens an existing file for reads.
    init(path: String, readOnly: Bool = false) throws(SQLiteError) {
        self.path = path
        var connection: OpaquePointer?
        let flags = (readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) | SQLITE_OPEN_NOMUTEX
        let code = sqlite3_open_v2(path, &connection, flags, nil)
        guard code == SQLITE_OK, let connection else {
            let error = SQLiteError(code: code, connection: connection, sql: "open \(path)")
            sqlite3_close_v2(connection)
            throw error
        }
        sqlite3_extended_result_codes(connection, 1)
        self.connection = connection
    }

    deinit {
        close()
    }

    /// Finalizes every cached statement and closes the connection; later calls fail with SQLITE_MISUSE.
    func close() {
        for statement in statements.values {
            statement.finalize()
        }
        statements.removeAll()
        if let connection {
            sqlite3_close_v2(connection)
        }
        connection = nil
    }

    /// Waits up to `milliseconds` for another connection's lock before answering SQLITE_BUSY.
    func setBusyTimeout(milliseconds: Int32) throws(SQLiteError) {
        let connection = try openConnection(for: "busy_timeout")
        let code = sqlite3_busy_timeout(connection, milliseconds)
        guard code == SQLITE_OK else {
            throw SQLiteError(code: code, connection: connection, sql: "busy_timeout \(milliseconds)")
        }
    }

    /// Caps the size of any string, blob or row SQLite will accept on this connection.
    func setMaximumValueLength(_ bytes: Int32) throws(SQLiteError) {
        let connection = try openConnection(for: "limit length")
        sqlite3_limit(connection, SQLITE_LIMIT_LENGTH, bytes)
    }

    /// Runs one or more statements that take no parameters and whose rows are not needed.
    func execute(_ sql: String) throws(SQLiteError) {
        let connection = try openConnection(for: sql)
        var message: UnsafeMutablePointer<CChar>?
        let code = sqlite3_exec(connection, sql, nil, nil, &message)
        guard code == SQLITE_OK else {
            let text = message.map { String(cString: $0) }
            sqlite3_free(message)
            var error = SQLiteError(code: code, connection: connection, sql: sql)
            if let text { error = SQLiteError(code: code, message: text, sql: sql) }
            throw error
        }
    }

    /// The cached prepared statement for `sql` (prepared on first use), reset and with its bindings cleared.
    func statement(_ sql: String) throws(SQLiteError) -> SQLiteStatement {
        if let cached = statements[sql] {
            cached.prepareForReuse()
            return cached
        }
        let connection = try openConnection(for: sql)
        var handle: OpaquePointer?
        let code = sqlite3_prepare_v3(connection, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &handle, nil)
        guard code == SQLITE_OK, let handle else {
            throw SQLiteError(code: code, connection: connection, sql: sql)
        }
        let statement = SQLiteStatement(handle: handle, sql: sql, database: self)
        statements[sql] = statement
        return statement
    }

    /// Rows changed by the last INSERT, UPDATE or DELETE.
    var changes: Int {
        connection.map { Int(sqlite3_changes64($0)) } ?? 0
    }

    /// The rowid of the last row inserted on this connection, e.g. the `INTEGER PRIMARY KEY` SQLite chose.
    var lastInsertRowID: Int64 {
        connection.map { sqlite3_last_insert_rowid($0) } ?? 0
    }

    private func openConnection(for sql: String) throws(SQLiteError) -> OpaquePointer {
        guard let connection else {
            throw SQLiteError(code: SQLITE_MISUSE, message: "database \(path) is closed", sql: sql)
        }
        return connection
    }
}
