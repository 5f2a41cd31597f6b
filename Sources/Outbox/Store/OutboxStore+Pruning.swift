extension OutboxStore {
    /// Deletes up to `limit` `pdu_destinations` rows at or below their destination's last successful stream
    /// ordering; returns how many went. CROSS JOIN keeps SQLite walking destinations and seeking each one's range,
    /// instead of scanning all of `pdu_destinations` (it has no statistics to choose well by itself).
    func pruneDeliveredPDUDestinations(limit: Int) throws(SQLiteError) -> Int {
        let delete = try database.statement("""
            DELETE FROM pdu_destinations WHERE (destination, stream_ordering) IN (
                SELECT pd.destination, pd.stream_ordering
                FROM destinations AS d CROSS JOIN pdu_destinations AS pd
                    ON pd.destination = d.destination AND pd.stream_ordering <= d.last_successful_stream_ordering
                WHERE d.last_successful_stream_ordering > 0
                LIMIT ?1)
            """)
        try delete.bind(Int64(limit), at: 1)
        try delete.run()
        return database.changes
    }

    /// Looks at up to `limit` PDUs after `cursor` and deletes those no destination still needs. Returns the rows
    /// deleted and where the next step starts, or nil for the cursor once every PDU has been looked at.
    ///
    /// This also keeps every PDU catch-up can ask for: ingest writes a `destination_rooms` row's stream ordering
    /// together with a `pdu_destinations` row for the same destination and PDU, and that row only goes once the
    /// destination's last successful stream ordering has reached the PDU, when catch-up no longer looks at it.
    func pruneUnneededPDUs(after cursor: Int64, limit: Int) throws(SQLiteError) -> (deleted: Int, next: Int64?) {
        let window = try database.statement("""
            SELECT max(stream_ordering) FROM (
                SELECT stream_ordering FROM pdus WHERE stream_ordering > ?1 ORDER BY stream_ordering LIMIT ?2)
            """)
        try window.bind(cursor, at: 1)
        try window.bind(Int64(limit), at: 2)
        guard let end = try window.firstRow({ $0.optionalInt64(at: 0) }) ?? nil else {
            return (0, nil)
        }
        let delete = try database.statement("""
            DELETE FROM pdus
            WHERE stream_ordering > ?1 AND stream_ordering <= ?2
              AND NOT EXISTS (SELECT 1 FROM pdu_destinations AS pd WHERE pd.stream_ordering = pdus.stream_ordering)
            """)
        try delete.bind(cursor, at: 1)
        try delete.bind(end, at: 2)
        try delete.run()
        return (database.changes, end)
    }

    /// Looks at up to `limit` EDUs after `cursor` and deletes those no destination still needs (delivery already
    /// removed their `edu_destinations` rows). Returns the rows deleted and where the next step starts, or nil for
    /// the cursor once every EDU has been looked at.
    func pruneUnneededEDUs(after cursor: Int64, limit: Int) throws(SQLiteError) -> (deleted: Int, next: Int64?) {
        let window = try database.statement("""
            SELECT max(edu_id) FROM (SELECT edu_id FROM edus WHERE edu_id > ?1 ORDER BY edu_id LIMIT ?2)
            """)
        try window.bind(cursor, at: 1)
        try window.bind(Int64(limit), at: 2)
        guard let end = try window.firstRow({ $0.optionalInt64(at: 0) }) ?? nil else {
            return (0, nil)
        }
        let delete = try database.statement("""
            DELETE FROM edus
            WHERE edu_id > ?1 AND edu_id <= ?2
              AND NOT EXISTS (SELECT 1 FROM edu_destinations AS ed WHERE ed.edu_id = edus.edu_id)
            """)
        try delete.bind(cursor, at: 1)
        try delete.bind(end, at: 2)
        try delete.run()
        return (database.changes, end)
    }

    /// Forgets up to `limit` ingest txn ids received before `cutoff` (ms); a repeat of one after that is stored again.
    func pruneIngestTransactions(receivedBefore cutoff: Int64, limit: Int) throws(SQLiteError) -> Int {
        let delete = try database.statement("""
            DELETE FROM ingest_transactions WHERE txn_id IN (
                SELECT txn_id FROM ingest_transactions WHERE received_ts < ?1 LIMIT ?2)
            """)
        try delete.bind(cutoff, at: 1)
        try delete.bind(Int64(limit), at: 2)
        try delete.run()
        return database.changes
    }
}
