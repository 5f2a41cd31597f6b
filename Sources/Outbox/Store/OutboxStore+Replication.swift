extension OutboxStore {
    /// Appends a destination change, filling a missing failure count or retry interval in from the destination's
    /// stored record, and deletes the changes older than the newest `keep`.
    func recordDestinationChange(destination: String, state: String, retryIntervalMS: Int64?, failureCount: Int64?,
                                 lastSuccessfulStreamOrdering: Int64, keep: Int64) throws(SQLiteError) -> DestinationChange {
        let insert = try database.statement("""
            INSERT INTO destination_changes
                (destination, state, retry_interval_ms, failure_count, last_successful_stream_ordering, changed_ts)
            SELECT ?1, ?2,
                   coalesce(?3, (SELECT retry_interval_ms FROM destinations WHERE destination = ?1), 0),
                   coalesce(?4, (SELECT failure_count FROM destinations WHERE destination = ?1), 0),
                   max(?5, coalesce((SELECT last_successful_stream_ordering FROM destinations WHERE destination = ?1), 0)),
                   ?6
            RETURNING change_id, retry_interval_ms, failure_count, last_successful_stream_ordering
            """)
        try insert.bind(destination, at: 1)
        try insert.bind(state, at: 2)
        try insert.bind(retryIntervalMS, at: 3)
        try insert.bind(failureCount, at: 4)
        try insert.bind(max(lastSuccessfulStreamOrdering, unsavedProgress[destination] ?? 0), at: 5)
        try insert.bind(currentTimestamp, at: 6)
        let change = try insert.firstRow { row in
            DestinationChange(changeID: row.int64(at: 0), destination: destination, state: state,
                              retryIntervalMS: row.int64(at: 1), failureCount: row.int64(at: 2),
                              lastSuccessfulStreamOrdering: row.int64(at: 3))
        }!
        let trim = try database.statement("DELETE FROM destination_changes WHERE change_id <= ?1")
        try trim.bind(change.changeID - keep, at: 1)
        try trim.run()
        return change
    }

    /// The highest destination change id ever handed out.
    func maxDestinationChangeID() throws(SQLiteError) -> Int64 {
        try database.statement("""
            SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'destination_changes'), 0),
                       coalesce((SELECT max(change_id) FROM destination_changes), 0))
            """).firstRow { $0.int64(at: 0) } ?? 0
    }
}
