/// A second, read-only connection to the Outbox file for the replication endpoint's history: followers read
/// pages of the `federation` and `destinations` streams here, in WAL snapshots of their own, so a follower
/// asking for a million rows never waits for the writer thread nor holds up ingest and delivery.
///
/// Every call blocks on SQLite: run them on a thread of their own (the replication endpoint has one), never on
/// an event loop or the cooperative pool. Calls are serialised by a lock.
public final class OutboxReader: @unchecked Sendable {
    public let path: String
    private let lock = ConditionLock()
    // Guarded by `lock`.
    private var database: SQLiteDatabase?

    /// Opens the existing Outbox at `path` (an `Outbox` must have created and migrated it) for reading.
    public init(path: String, busyTimeoutMS: Int32 = 5_000) throws(OutboxError) {
        self.path = path
        let database: SQLiteDatabase
        do throws(SQLiteError) {
            database = try SQLiteDatabase(path: path, readOnly: true)
            try database.setBusyTimeout(milliseconds: busyTimeoutMS)
        } catch {
            throw .openFailed(path: path, error)
        }
        self.database = database
    }

    public func close() {
        lock.lock()
        defer { lock.unlock() }
        database?.close()
        database = nil
    }

    /// Up to `limit` stored units with a stream ordering in `(after, upTo]`, in stream order: PDUs with their room,
    /// event and destination set's size, persistent EDUs with their type and destination count.
    public func federationRows(after: Int64, upTo: Int64, limit: Int) throws(OutboxError) -> [FederationStreamRow] {
        try read { database throws(SQLiteError) in
            let query = try database.statement("""
                SELECT stream_ordering, kind, room_id, event_id, destination_count FROM (
                    SELECT p.stream_ordering AS stream_ordering, 'pdu' AS kind, p.room_id AS room_id,
                           p.event_id AS event_id, coalesce(s.member_count, 0) AS destination_count
                    FROM pdus AS p LEFT JOIN destination_sets AS s ON s.set_id = p.destination_set
                    WHERE p.stream_ordering > ?1 AND p.stream_ordering <= ?2
                    UNION ALL
                    SELECT stream_ordering, edu_type, NULL, NULL, destination_count
                    FROM edus
                    WHERE stream_ordering IS NOT NULL AND stream_ordering > ?1 AND stream_ordering <= ?2
                )
                ORDER BY stream_ordering
                LIMIT ?3
                """)
            try query.bind(after, at: 1)
            try query.bind(upTo, at: 2)
            try query.bind(Int64(max(0, limit)), at: 3)
            return try query.rows { row in
                FederationStreamRow(streamOrdering: row.int64(at: 0), kind: row.text(at: 1), roomID: row.optionalText(at: 2),
                                    eventID: row.optionalText(at: 3), destinationCount: Int(row.int64(at: 4)))
            }
        }
    }

    /// Up to `limit` kept destination changes with an id in `(after, upTo]`, in id order.
    public func destinationChanges(after: Int64, upTo: Int64, limit: Int) throws(OutboxError) -> [DestinationChange] {
        try read { database throws(SQLiteError) in
            let query = try database.statement("""
                SELECT change_id, destination, state, retry_interval_ms, failure_count, last_successful_stream_ordering
                FROM destination_changes
                WHERE change_id > ?1 AND change_id <= ?2
                ORDER BY change_id
                LIMIT ?3
                """)
            try query.bind(after, at: 1)
            try query.bind(upTo, at: 2)
            try query.bind(Int64(max(0, limit)), at: 3)
            return try query.rows { row in
                DestinationChange(changeID: row.int64(at: 0), destination: row.text(at: 1), state: row.text(at: 2),
                                  retryIntervalMS: row.int64(at: 3), failureCount: row.int64(at: 4),
                                  lastSuccessfulStreamOrdering: row.int64(at: 5))
            }
        }
    }

    /// The id of the oldest destination change still kept, or nil when none is.
    public func oldestDestinationChangeID() throws(OutboxError) -> Int64? {
        try read { database throws(SQLiteError) in
            try database.statement("SELECT min(change_id) FROM destination_changes").firstRow { $0.optionalInt64(at: 0) } ?? nil
        }
    }

    /// Up to `limit` destinations after `name`, sorted by name, as stored now: what a follower whose
    /// `destinations` token is older than the changes kept gets instead of them.
    public func destinations(after name: String, limit: Int) throws(OutboxError) -> [DestinationRecord] {
        try read { database throws(SQLiteError) in
            let query = try database.statement("""
                SELECT destination, last_successful_stream_ordering, retry_last_ts, retry_interval_ms, failure_count
                FROM destinations
                WHERE destination > ?1
                ORDER BY destination
                LIMIT ?2
                """)
            try query.bind(name, at: 1)
            try query.bind(Int64(max(0, limit)), at: 2)
            return try query.rows { row in
                DestinationRecord(name: row.text(at: 0), lastSuccessfulStreamOrdering: row.int64(at: 1),
                                  retryLastTS: row.optionalInt64(at: 2), retryIntervalMS: row.int64(at: 3),
                                  failureCount: row.int64(at: 4))
            }
        }
    }

    private func read<T>(_ body: (SQLiteDatabase) throws(SQLiteError) -> T) throws(OutboxError) -> T {
        lock.lock()
        defer { lock.unlock() }
        guard let database else { throw .closed(path: path) }
        do throws(SQLiteError) {
            return try body(database)
        } catch {
            throw .storage(path: path, error)
        }
    }
}
