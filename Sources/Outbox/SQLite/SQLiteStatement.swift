import CSQLite

/// Tells SQLite to copy bound text and blobs, so the Swift buffers may go away before the statement steps.
private let transientDestructor = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// One prepared SQLite statement, owned by the `SQLiteDatabase` that prepared it and used on that database's thread only.
///
/// Parameters are 1-based and columns 0-based, as in the C API. `run`, `rows` and `firstRow` always reset the
/// statement afterwards, so a cached statement never holds a read snapshot open between uses.
final class SQLiteStatement {
    let sql: String
    private let handle: OpaquePointer
    private unowned let database: SQLiteDatabase

    init(handle: OpaquePointer, sql: String, database: SQLiteDatabase) {
        self.handle = handle
        self.sql = sql
        self.database = database
    }

    func finalize() {
        sqlite3_finalize(handle)
    }

    /// Clears any earlier bindings and state, ready for a new use.
    func prepareForReuse() {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
    }

    func bind(_ value: Int64, at index: Int32) throws(SQLiteError) {
        try check(sqlite3_bind_int64(handle, index, value))
    }

    func bind(_ value: Int64?, at index: Int32) throws(SQLiteError) {
        if let value { try bind(value, at: index) } else { try bindNull(at: index) }
    }

    func bind(_ value: String, at index: Int32) throws(SQLiteError) {
        var value = value
        let code = value.withUTF8 { bytes -> Int32 in
            // An empty buffer may have no base address, which SQLite would store as NULL instead of ''.
            guard let base = bytes.baseAddress, !bytes.isEmpty else {
                return sqlite3_bind_text(handle, index, "", 0, transientDestructor)
            }
            return base.withMemoryRebound(to: CChar.self, capacity: bytes.count) {
                sqlite3_bind_text(handle, index, $0, Int32(clamping: bytes.count), transientDestructor)
            }
        }
        try check(code)
    }

    func bind(_ value: String?, at index: Int32) throws(SQLiteError) {
        if let value { try bind(value, at: index) } else { try bindNull(at: index) }
    }

    func bind(_ value: [UInt8], at index: Int32) throws(SQLiteError) {
        let code = value.withUnsafeBytes { bytes -> Int32 in
            guard let base = bytes.baseAddress, !bytes.isEmpty else {
                return sqlite3_bind_zeroblob(handle, index, 0)
            }
            return sqlite3_bind_blob64(handle, index, base, sqlite3_uint64(bytes.count), transientDestructor)
        }
        try check(code)
    }

    func bindNull(at index: Int32) throws(SQLiteError) {
        try check(sqlite3_bind_null(handle, index))
    }

    /// Advances to the next row: `true` when a row is available, `false` when the statement is done.
    func step() throws(SQLiteError) -> Bool {
        let code = sqlite3_step(handle)
        switch code {
        case SQLITE_ROW:
            return true
        case SQLITE_DONE:
            return false
        default:
            let error = SQLiteError(code: code, connection: database.connection, sql: sql)
            sqlite3_reset(handle)
            throw error
        }
    }

    /// Steps the statement to completion, ignoring any rows, then resets it.
    func run() throws(SQLiteError) {
        defer { sqlite3_reset(handle) }
        while try step() {}
    }

    /// Reads every row through `row`, then resets the statement.
    func rows<Row>(_ row: (SQLiteStatement) -> Row) throws(SQLiteError) -> [Row] {
        defer { sqlite3_reset(handle) }
        var result: [Row] = []
        while try step() {
            result.append(row(self))
        }
        return result
    }

    /// Reads the first row through `row` (nil when there is none), then resets the statement.
    func firstRow<Row>(_ row: (SQLiteStatement) -> Row) throws(SQLiteError) -> Row? {
        defer { sqlite3_reset(handle) }
        return try step() ? row(self) : nil
    }

    func isNull(at column: Int32) -> Bool {
        sqlite3_column_type(handle, column) == SQLITE_NULL
    }

    func int64(at column: Int32) -> Int64 {
        sqlite3_column_int64(handle, column)
    }

    func optionalInt64(at column: Int32) -> Int64? {
        isNull(at: column) ? nil : int64(at: column)
    }

    func text(at column: Int32) -> String {
        guard let text = sqlite3_column_text(handle, column) else { return "" }
        let count = Int(sqlite3_column_bytes(handle, column))
        return String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self)
    }

    func optionalText(at column: Int32) -> String? {
        isNull(at: column) ? nil : text(at: column)
    }

    func blob(at column: Int32) -> [UInt8] {
        guard let bytes = sqlite3_column_blob(handle, column) else { return [] }
        let count = Int(sqlite3_column_bytes(handle, column))
        return [UInt8](UnsafeRawBufferPointer(start: bytes, count: count))
    }

    private func check(_ code: Int32) throws(SQLiteError) {
        guard code == SQLITE_OK else {
            throw SQLiteError(code: code, connection: database.connection, sql: sql)
        }
    }
}
