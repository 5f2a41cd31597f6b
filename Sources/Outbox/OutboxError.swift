/// Everything the Outbox can refuse or fail with; each description names the input and the rule it broke.
public enum OutboxError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The directory that should hold the database file does not exist (the Outbox creates the file, not directories).
    case missingDirectory(path: String, directory: String)
    /// The database file could not be opened or configured (WAL, synchronous, foreign keys).
    case openFailed(path: String, SQLiteError)
    /// SQLite refused WAL mode, which the Outbox needs for durable group commit alongside readers.
    case walUnavailable(path: String, journalMode: String)
    /// The file was written by a newer southbridge whose schema this one does not know.
    case schemaTooNew(path: String, found: Int64, supported: Int64)
    /// A schema migration failed and was rolled back; the file is still at the previous version.
    case migrationFailed(path: String, version: Int64, SQLiteError)
    /// The writer thread could not be started (`pthread_create` returned `code`).
    case writerThreadFailed(code: Int32)
    /// A batch broke a structural rule; nothing of it was stored. `field` is a path such as `pdus[3].room_id`.
    case invalidBatch(txnID: String, field: String, rule: String)
    /// `recordDelivered` named a stream ordering that has never been handed out.
    case streamOrderingBeyondMaximum(destination: String, streamOrdering: Int64, maximum: Int64)
    /// The writer already holds `queuedBytes` of batches waiting to be committed; try again shortly.
    case overloaded(queuedBytes: Int, limit: Int)
    /// The file's pages in use reached `OutboxLimits.maxBytes` and pruning could drop nothing more: every unit
    /// left is owed to a destination that is not backing off. Nothing of the batch was stored.
    case storageLimitReached(path: String, usedBytes: Int64, limit: Int64)
    /// The filesystem holding the file is full (SQLite's `SQLITE_FULL`); what the request wrote was rolled back
    /// and everything committed before is intact.
    case diskFull(path: String, SQLiteError)
    /// The Outbox was closed; no further work is accepted.
    case closed(path: String)
    /// A statement failed while running a request; what that request wrote was rolled back.
    case storage(path: String, SQLiteError)

    public var description: String {
        switch self {
        case let .missingDirectory(path, directory):
            return "outbox \(path): directory \(directory) does not exist; create it before starting southbridge"
        case let .openFailed(path, error):
            return "outbox \(path): could not open the database: \(error)"
        case let .walUnavailable(path, journalMode):
            return "outbox \(path): journal_mode must be wal, SQLite left it at \(journalMode)"
        case let .schemaTooNew(path, found, supported):
            return "outbox \(path): schema version \(found) is newer than the \(supported) this southbridge supports"
        case let .migrationFailed(path, version, error):
            return "outbox \(path): schema migration \(version) failed and was rolled back: \(error)"
        case let .writerThreadFailed(code):
            return "outbox: could not start the writer thread (pthread_create returned \(code))"
        case let .invalidBatch(txnID, field, rule):
            return "ingest transaction \(txnID): \(field): \(rule)"
        case let .streamOrderingBeyondMaximum(destination, streamOrdering, maximum):
            return "destination \(destination): delivered stream ordering \(streamOrdering) is beyond the highest accepted, \(maximum)"
        case let .overloaded(queuedBytes, limit):
            return "outbox writer queue holds \(queuedBytes) bytes, at its limit of \(limit); retry later"
        case let .storageLimitReached(path, usedBytes, limit):
            return "outbox \(path) holds \(usedBytes) bytes, at its limit of \(limit), all owed to reachable destinations; retry once they have it"
        case let .diskFull(path, error):
            return "outbox \(path): the filesystem is full, nothing of this request was stored (\(error.message)); retry once space is freed"
        case let .closed(path):
            return "outbox \(path) is closed"
        case let .storage(path, error):
            return "outbox \(path): \(error)"
        }
    }
}
