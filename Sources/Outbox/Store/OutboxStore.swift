import CSQLite

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Every SQL statement the Outbox runs, over one open connection; owned and used by the writer thread only.
///
/// `allocatedStreamOrdering` is the highest stream ordering handed out, including by the transaction in progress;
/// stream orderings are allocated here, one past it, so a batch's PDUs get consecutive values and none is ever
/// reused (the `pdus` table is AUTOINCREMENT, whose `sqlite_sequence` row survives pruning).
final class OutboxStore {
    let path: String
    let database: SQLiteDatabase
    private let now: @Sendable () -> Int64
    private(set) var allocatedStreamOrdering: Int64 = 0
    /// Destination sets by the SHA-256 of their sorted members, so a PDU for a room already seen needs no read.
    var destinationSetIDs: [[UInt8]: Int64] = [:]
    /// When each set was last handed to a PDU (ms, `now`): a set no PDU refers to any more is kept for
    /// `OutboxLimits.unusedDestinationSetGraceMS` after, so a quiet room's next PDU finds its set instead of
    /// writing a row per server again.
    var destinationSetLastUsedMS: [Int64: Int64] = [:]
    var unusedDestinationSetGraceMS: Int64 = 0
    /// Sets created by the transaction in progress, in order: forgotten again if it is rolled back.
    var uncommittedDestinationSets: [[UInt8]] = []
    /// Where accepted PDU bodies go (`SegmentLog`); set by `open`.
    var log: SegmentLog!
    /// The PDUs the group commit in progress accepted, written to the log as one record when its writes are done.
    var roundRecord = IngestLogRecord()
    /// Where the last round's record went, so that a round whose SQLite commit fails can give its place back.
    var lastRoundLogPosition: UInt64?
    /// Whether the last round's record (or its rows, when too large for the log) needed an SQLite commit.
    var lastRoundNeededIndexCommit = false
    /// PDUs `open` found in the log and indexed again.
    var reindexedAtOpen = 0
    /// The highest stream ordering handed out when SQLite last committed: rows above it are the open
    /// transaction's, and those already delivered everywhere are deleted before it commits.
    var committedStreamOrdering: Int64 = 0
    /// Set by `Outbox.flush` for the commit it asks for, which keeps those rows for the replication history.
    var keepsDeliveredRowsAtNextCommit = false
    /// Delivered marks not written yet (`recordDelivered`, `saveProgress`); reads on this connection see them.
    var unsavedProgress: [String: Int64] = [:]
    /// Marks `saveProgress` wrote in the transaction in progress: given back to `unsavedProgress` if it is
    /// rolled back, forgotten once it commits.
    var progressInTransaction: [String: Int64] = [:]
    /// When the oldest of them was recorded (monotonic ns), and how long it may wait.
    var oldestUnsavedProgressNS: UInt64 = 0
    var progressSaveIntervalNS: UInt64 = 0

    private init(path: String, database: SQLiteDatabase, now: @escaping @Sendable () -> Int64) {
        self.path = path
        self.database = database
        self.now = now
    }

    /// Opens or creates the database at `path`, configures durability and brings the schema up to date.
    static func open(
        path: String,
        limits: OutboxLimits,
        now: @escaping @Sendable () -> Int64
    ) throws(OutboxError) -> OutboxStore {
        let directory = parentDirectory(of: path)
        guard isDirectory(directory) else {
            throw .missingDirectory(path: path, directory: directory)
        }
        let database: SQLiteDatabase
        do throws(SQLiteError) {
            database = try SQLiteDatabase(path: path)
            try database.setBusyTimeout(milliseconds: limits.busyTimeoutMS)
            // Room ids, event ids and row headers fit comfortably in the extra 4 KiB.
            try database.setMaximumValueLength(Int32(clamping: limits.maxPDUBytes + 4_096))
        } catch {
            throw .openFailed(path: path, error)
        }
        let journalMode: String
        do throws(SQLiteError) {
            // Takes effect only on a new, empty file, before WAL mode fixes it.
            try database.execute("PRAGMA page_size = \(Self.pageSize)")
            journalMode = try database.statement("PRAGMA journal_mode = WAL").firstRow { $0.text(at: 0) } ?? ""
            // FULL: a commit returns only after the WAL is fsync'd, so an acknowledged batch survives power loss.
            try database.execute("PRAGMA synchronous = \(limits.synchronous.rawValue)")
            try database.execute("PRAGMA wal_autocheckpoint = \(limits.walAutocheckpointPages)")
            try database.execute("PRAGMA foreign_keys = ON")
            // Savepoints' journals and sorts stay in memory (bounded by a prune step's rows) instead of spilling
            // to temporary files past 64 KiB, which are written like any other file.
            try database.execute("PRAGMA temp_store = MEMORY")
            // Keep the WAL from staying large on the SD card after a burst.
            try database.execute("PRAGMA journal_size_limit = 67108864")
        } catch {
            database.close()
            throw .openFailed(path: path, error)
        }
        guard journalMode.lowercased() == "wal" else {
            database.close()
            throw .walUnavailable(path: path, journalMode: journalMode)
        }
        do throws(OutboxSchemaError) {
            _ = try OutboxSchema.migrate(database)
        } catch {
            database.close()
            switch error {
            case let .storage(sqliteError):
                throw .openFailed(path: path, sqliteError)
            case let .tooNew(found, supported):
                throw .schemaTooNew(path: path, found: found, supported: supported)
            case let .migrationFailed(version, sqliteError):
                throw .migrationFailed(path: path, version: version, sqliteError)
            }
        }
        let store = OutboxStore(path: path, database: database, now: now)
        store.progressSaveIntervalNS = UInt64(max(0, limits.progressSaveIntervalMS)) * 1_000_000
        store.unusedDestinationSetGraceMS = Int64(max(0, limits.unusedDestinationSetGraceMS))
        do throws(SQLiteError) {
            try store.reloadAllocatedStreamOrdering()
            store.committedStreamOrdering = store.allocatedStreamOrdering
            try store.openLog(limits: limits)
            try store.reloadAllocatedStreamOrdering()
        } catch {
            database.close()
            throw .openFailed(path: path, error)
        }
        return store
    }

    /// The page size of a new Outbox file. Every commit writes each page it touched again, whole, into the WAL,
    /// and accepting a PDU touched about four (its table leaf, the set index, the txn id and, before schema v6,
    /// the txn ids' time index): with 1 KiB pages that was about 8 KiB of writes per commit of one PDU against
    /// 20–24 KiB with SQLite's default 4 KiB (BENCHMARKS.md, `southbridge-benchmark storage-writes`).
    static let pageSize = 1_024

    func close() {
        database.close()
    }

    /// Reads the highest stream ordering ever handed out from what is committed.
    func reloadAllocatedStreamOrdering() throws(SQLiteError) {
        allocatedStreamOrdering = try database.statement("""
            SELECT max(
                coalesce((SELECT value FROM outbox_meta WHERE name = 'allocated_stream_ordering'), 0),
                coalesce((SELECT max(stream_ordering) FROM pdus), 0),
                coalesce((SELECT max(stream_ordering) FROM ingest_transactions), 0),
                coalesce((SELECT max(stream_ordering) FROM edus), 0))
            """).firstRow { $0.int64(at: 0) } ?? 0
    }

    /// Writes the highest stream ordering handed out where pruning cannot take it away; called before PDUs are
    /// deleted, so a restart never hands out a stream ordering again.
    func persistAllocatedStreamOrdering() throws(SQLiteError) {
        let update = try database.statement("""
            UPDATE outbox_meta SET value = ?1 WHERE name = 'allocated_stream_ordering' AND value < ?1
            """)
        try update.bind(allocatedStreamOrdering, at: 1)
        try update.run()
    }

    var isInTransaction: Bool {
        guard let connection = database.connection else { return false }
        return sqlite3_get_autocommit(connection) == 0
    }

    /// Starts a write transaction, taking the write lock now rather than at the first write.
    func beginImmediate() throws(SQLiteError) {
        try database.statement("BEGIN IMMEDIATE").run()
    }

    func commit() throws(SQLiteError) {
        try database.statement("COMMIT").run()
        uncommittedDestinationSets.removeAll()
        progressInTransaction = [:]
    }

    /// Abandons the transaction in progress and forgets the stream orderings and destination sets it allocated;
    /// the delivered marks it wrote wait to be written again.
    func rollback() {
        if isInTransaction {
            try? database.statement("ROLLBACK").run()
        }
        forgetDestinationSets(createdAfter: 0)
        try? reloadAllocatedStreamOrdering()
        keepUnsaved(progressInTransaction)
        progressInTransaction = [:]
    }

    /// Puts `marks`, which a rollback took out of the file, back among those waiting to be written.
    func keepUnsaved(_ marks: [String: Int64]) {
        guard !marks.isEmpty else { return }
        if unsavedProgress.isEmpty { oldestUnsavedProgressNS = ConditionLock.monotonicNS() }
        unsavedProgress.merge(marks, uniquingKeysWith: max)
    }

    /// Drops from the cache the sets the transaction created after the first `count`, which are rolled back.
    private func forgetDestinationSets(createdAfter count: Int) {
        for hash in uncommittedDestinationSets[count...] { destinationSetIDs[hash] = nil }
        uncommittedDestinationSets.removeSubrange(count...)
    }

    /// Runs `body` under a savepoint: if it throws, what it wrote (and the stream orderings it took) are undone
    /// while the surrounding transaction goes on.
    func withSavepoint<T>(_ body: () throws(SQLiteError) -> T) throws(SQLiteError) -> T {
        let allocatedBefore = allocatedStreamOrdering
        let setsBefore = uncommittedDestinationSets.count
        let recordBefore = roundRecord
        let progressBefore = progressInTransaction
        try database.statement("SAVEPOINT outbox_write").run()
        do throws(SQLiteError) {
            let result = try body()
            try database.statement("RELEASE outbox_write").run()
            return result
        } catch {
            try? database.statement("ROLLBACK TO outbox_write").run()
            try? database.statement("RELEASE outbox_write").run()
            allocatedStreamOrdering = allocatedBefore
            forgetDestinationSets(createdAfter: setsBefore)
            roundRecord = recordBefore
            keepUnsaved(progressInTransaction.filter { progressBefore[$0.key] != $0.value })
            progressInTransaction = progressBefore
            throw error
        }
    }

    /// Current wall-clock or injected time in ms, for `received_ts`.
    var currentTimestamp: Int64 { now() }

    /// Never hands out `value` or any stream ordering below it again.
    func reserveStreamOrderings(through value: Int64) {
        allocatedStreamOrdering = max(allocatedStreamOrdering, value)
    }

    /// Hands out the next stream ordering.
    func allocateStreamOrdering() -> Int64 {
        allocatedStreamOrdering += 1
        return allocatedStreamOrdering
    }

    private static func parentDirectory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let parent = String(path[..<slash])
        return parent.isEmpty ? "/" : parent
    }

    private static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        guard stat(path, &info) == 0 else { return false }
        return (info.st_mode & S_IFMT) == S_IFDIR
    }
}
