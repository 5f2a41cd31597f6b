import CSQLite

/// A failed SQLite call: the (extended) result code, `sqlite3_errmsg`'s text and the SQL that was running.
///
/// Values of this type are what the Outbox's storage layer throws; `OutboxError.storage` carries one to callers.
public struct SQLiteError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The extended result code, e.g. 19 for a constraint failure or 18 for a value that is too big.
    public let code: Int32
    /// The message SQLite gave for the failure.
    public let message: String
    /// The statement that failed, or the operation when no statement was involved (open, close).
    public let sql: String

    public init(code: Int32, message: String, sql: String) {
        self.code = code
        self.message = message
        self.sql = sql
    }

    /// Reads the error SQLite recorded on a connection, e.g. right after a call returned something other than OK.
    init(code: Int32, connection: OpaquePointer?, sql: String) {
        let message: String
        if let connection, let text = sqlite3_errmsg(connection) {
            message = String(cString: text)
        } else if let text = sqlite3_errstr(code) {
            message = String(cString: text)
        } else {
            message = "unknown error"
        }
        self.init(code: code, message: message, sql: sql)
    }

    /// The primary result code (the low byte of the extended one), e.g. `SQLITE_CONSTRAINT`.
    public var primaryCode: Int32 { code & 0xFF }

    /// Whether the operating system failed a read or write (`SQLITE_IOERR`): the storage, not the request.
    public var isIOError: Bool { primaryCode == SQLITE_IOERR }

    public var description: String {
        "SQLite error \(code) (\(message)) in `\(sql)`"
    }
}
