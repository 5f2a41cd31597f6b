extension OutboxStore {
    /// PDUs for `destination` after `streamOrdering`, oldest first: those of every destination set it is in.
    func pendingPDUs(for destination: String, after streamOrdering: Int64, limit: Int) throws(SQLiteError) -> [StoredPDU] {
        let query = try database.statement("""
            SELECT p.stream_ordering, p.room_id, p.event_id, p.canonical_json, p.log_position, p.log_length
            FROM destination_set_members AS m CROSS JOIN pdus AS p
                ON p.destination_set = m.set_id AND p.stream_ordering > ?2
            WHERE m.destination = ?1
            ORDER BY p.stream_ordering
            LIMIT ?3
            """)
        try query.bind(destination, at: 1)
        try query.bind(streamOrdering, at: 2)
        try query.bind(Int64(limit), at: 3)
        return try storedPDUs(query)
    }

    /// The newest PDU of each room for `destination` with a stream ordering above `streamOrdering`, oldest first,
    /// at most `limit` rooms: Synapse's catch-up, derived from the PDUs of the destination's sets. Pruning keeps
    /// every PDU above the destination's last successful stream ordering, so the newest of each room is there.
    func catchUpPDUs(for destination: String, after streamOrdering: Int64, limit: Int) throws(SQLiteError)
        -> [StoredPDU]
    {
        let query = try database.statement("""
            SELECT p.stream_ordering, p.room_id, p.event_id, p.canonical_json, p.log_position, p.log_length
            FROM pdus AS p
            WHERE p.stream_ordering IN (
                SELECT max(owed.stream_ordering)
                FROM destination_set_members AS m CROSS JOIN pdus AS owed
                    ON owed.destination_set = m.set_id AND owed.stream_ordering > ?2
                WHERE m.destination = ?1
                GROUP BY owed.room_id)
            ORDER BY p.stream_ordering
            LIMIT ?3
            """)
        try query.bind(destination, at: 1)
        try query.bind(streamOrdering, at: 2)
        try query.bind(Int64(limit), at: 3)
        return try storedPDUs(query)
    }

    func destination(_ name: String) throws(SQLiteError) -> DestinationRecord? {
        let query = try database.statement("""
            SELECT destination, last_successful_stream_ordering, retry_last_ts, retry_interval_ms, failure_count
            FROM destinations WHERE destination = ?1
            """)
        try query.bind(name, at: 1)
        guard var record = try query.firstRow(Self.destinationRecord) else {
            return unsavedProgress[name].map { DestinationRecord(name: name, lastSuccessfulStreamOrdering: $0) }
        }
        withUnsavedProgress(&record)
        return record
    }

    /// Destinations with PDUs beyond their last successful stream ordering or with `edu_destinations` rows, by
    /// name, after `after` (exclusive). Every such destination has a `destinations` row: ingest creates it
    /// (foreign key). The query knows the written marks only; one whose mark waiting to be written is past all
    /// its PDUs is looked at again and left out.
    func destinationsWithPendingWork(after: String, limit: Int) throws(SQLiteError) -> [DestinationRecord] {
        let stillOwed = try database.statement("""
            SELECT EXISTS (
                    SELECT 1 FROM destination_set_members AS m CROSS JOIN pdus AS p
                        ON p.destination_set = m.set_id AND p.stream_ordering > ?2
                    WHERE m.destination = ?1)
                OR EXISTS (SELECT 1 FROM edu_destinations AS ed WHERE ed.destination = ?1)
            """)
        var found: [DestinationRecord] = []
        var cursor = after
        while found.count < limit {
            let wanted = limit - found.count
            let page = try destinationsWithPendingWorkAsWritten(after: cursor, limit: wanted)
            for var record in page {
                if let unsaved = unsavedProgress[record.name], unsaved > record.lastSuccessfulStreamOrdering {
                    record.lastSuccessfulStreamOrdering = unsaved
                    try stillOwed.bind(record.name, at: 1)
                    try stillOwed.bind(unsaved, at: 2)
                    guard try stillOwed.firstRow({ $0.int64(at: 0) }) == 1 else { continue }
                }
                found.append(record)
            }
            guard page.count == wanted, let last = page.last else { break }
            cursor = last.name
        }
        return found
    }

    private func destinationsWithPendingWorkAsWritten(after: String, limit: Int) throws(SQLiteError) -> [DestinationRecord] {
        let query = try database.statement("""
            SELECT d.destination, d.last_successful_stream_ordering, d.retry_last_ts, d.retry_interval_ms,
                   d.failure_count
            FROM destinations AS d
            WHERE d.destination > ?1 AND (
                EXISTS (
                    SELECT 1 FROM destination_set_members AS m CROSS JOIN pdus AS p
                        ON p.destination_set = m.set_id AND p.stream_ordering > d.last_successful_stream_ordering
                    WHERE m.destination = d.destination)
                OR EXISTS (SELECT 1 FROM edu_destinations AS ed WHERE ed.destination = d.destination))
            ORDER BY d.destination
            LIMIT ?2
            """)
        try query.bind(after, at: 1)
        try query.bind(Int64(limit), at: 2)
        return try query.rows(Self.destinationRecord)
    }

    /// Known destinations by name after `after` (exclusive), those backing off only when asked.
    func destinations(after: String, limit: Int, backingOffOnly: Bool) throws(SQLiteError) -> [DestinationRecord] {
        let query = try database.statement("""
            SELECT destination, last_successful_stream_ordering, retry_last_ts, retry_interval_ms, failure_count
            FROM destinations
            WHERE destination > ?1 AND (?3 = 0 OR retry_interval_ms > 0)
            ORDER BY destination
            LIMIT ?2
            """)
        try query.bind(after, at: 1)
        try query.bind(Int64(limit), at: 2)
        try query.bind(backingOffOnly ? 1 : 0, at: 3)
        var records = try query.rows(Self.destinationRecord)
        for index in records.indices { withUnsavedProgress(&records[index]) }
        return records
    }

    /// How many PDUs are still owed to `destination`.
    func pendingPDUCount(for destination: String) throws(SQLiteError) -> Int {
        let query = try database.statement("""
            SELECT count(*)
            FROM destinations AS d CROSS JOIN destination_set_members AS m ON m.destination = d.destination
                CROSS JOIN pdus AS p ON p.destination_set = m.set_id
                    AND p.stream_ordering > max(d.last_successful_stream_ordering, ?2)
            WHERE d.destination = ?1
            """)
        try query.bind(destination, at: 1)
        try query.bind(unsavedProgress[destination] ?? 0, at: 2)
        return try query.firstRow { Int($0.int64(at: 0)) } ?? 0
    }

    /// Moves the destination's delivered mark forward (never back) and clears its backoff. A backoff to clear
    /// is written at once, the mark with it; a mark alone waits in `unsavedProgress` for `saveProgress`.
    func recordDelivered(destination: String, upTo streamOrdering: Int64) throws(SQLiteError) {
        let clearBackoff = try database.statement("""
            UPDATE destinations SET
                last_successful_stream_ordering = max(last_successful_stream_ordering, ?2),
                retry_last_ts = NULL, retry_interval_ms = 0, failure_count = 0
            WHERE destination = ?1 AND (retry_last_ts IS NOT NULL OR retry_interval_ms <> 0 OR failure_count <> 0)
            """)
        try clearBackoff.bind(destination, at: 1)
        try clearBackoff.bind(streamOrdering, at: 2)
        try clearBackoff.run()
        if database.changes == 0 {
            if unsavedProgress.isEmpty { oldestUnsavedProgressNS = ConditionLock.monotonicNS() }
            unsavedProgress[destination] = max(unsavedProgress[destination] ?? 0, streamOrdering)
        }
    }

    /// Writes the delivered marks recorded since the last time, in the transaction in progress: one write of the
    /// `destinations` rows per `OutboxLimits.progressSaveIntervalMS` however many deliveries there were. If that
    /// transaction is rolled back they wait again (`progressInTransaction`); a crash before its commit loses them,
    /// and those units are sent again, never skipped.
    func saveProgress() throws(SQLiteError) {
        guard !unsavedProgress.isEmpty else { return }
        let upsert = try database.statement("""
            INSERT INTO destinations (destination, last_successful_stream_ordering) VALUES (?1, ?2)
            ON CONFLICT (destination) DO UPDATE SET last_successful_stream_ordering = excluded.last_successful_stream_ordering
                WHERE excluded.last_successful_stream_ordering > last_successful_stream_ordering
            """)
        for (destination, streamOrdering) in unsavedProgress.sorted(by: { $0.key < $1.key }) {
            try upsert.bind(destination, at: 1)
            try upsert.bind(streamOrdering, at: 2)
            try upsert.run()
        }
        progressInTransaction.merge(unsavedProgress, uniquingKeysWith: max)
        unsavedProgress = [:]
    }

    /// Whether marks wait to be written and their interval has passed.
    var progressSaveIsDue: Bool {
        !unsavedProgress.isEmpty && ConditionLock.monotonicNS() >= progressSaveDeadlineNS
    }

    /// When the marks waiting now must be written.
    var progressSaveDeadlineNS: UInt64 {
        oldestUnsavedProgressNS + progressSaveIntervalNS
    }

    /// `record` with a delivered mark recorded and not yet written.
    func withUnsavedProgress(_ record: inout DestinationRecord) {
        if let unsaved = unsavedProgress[record.name], unsaved > record.lastSuccessfulStreamOrdering {
            record.lastSuccessfulStreamOrdering = unsaved
        }
    }

    func recordFailure(destination: String, retryLastTS: Int64, retryIntervalMS: Int64) throws(SQLiteError) {
        let upsert = try database.statement("""
            INSERT INTO destinations (destination, retry_last_ts, retry_interval_ms, failure_count) VALUES (?1, ?2, ?3, 1)
            ON CONFLICT (destination) DO UPDATE SET
                retry_last_ts = excluded.retry_last_ts,
                retry_interval_ms = excluded.retry_interval_ms,
                failure_count = failure_count + 1
            """)
        try upsert.bind(destination, at: 1)
        try upsert.bind(retryLastTS, at: 2)
        try upsert.bind(retryIntervalMS, at: 3)
        try upsert.run()
    }

    /// Clears the destination's backoff; false when the destination is unknown.
    /// Writes only when there is a backoff to clear: remote servers that contact the homeserver
    /// wake their destination often, and most of them are not backing off.
    func resetBackoff(destination: String) throws(SQLiteError) -> Outbox.BackoffReset {
        let update = try database.statement("""
            UPDATE destinations SET retry_last_ts = NULL, retry_interval_ms = 0, failure_count = 0
            WHERE destination = ?1 AND (retry_last_ts IS NOT NULL OR retry_interval_ms != 0 OR failure_count != 0)
            """)
        try update.bind(destination, at: 1)
        try update.run()
        if database.changes > 0 { return .cleared }
        let known = try database.statement("SELECT 1 FROM destinations WHERE destination = ?1")
        try known.bind(destination, at: 1)
        return try known.firstRow { _ in true } == true ? .notBackingOff : .unknown
    }

    func rowCounts() throws(SQLiteError) -> OutboxRowCounts {
        let query = try database.statement("""
            SELECT (SELECT count(*) FROM pdus), (SELECT count(*) FROM destination_sets),
                   (SELECT count(*) FROM destination_set_members), (SELECT count(*) FROM destinations),
                   (SELECT count(*) FROM ingest_transactions), (SELECT count(*) FROM edus),
                   (SELECT count(*) FROM edu_destinations)
            """)
        return try query.firstRow { row in
            OutboxRowCounts(
                pdus: Int(row.int64(at: 0)),
                destinationSets: Int(row.int64(at: 1)),
                destinationSetMembers: Int(row.int64(at: 2)),
                destinations: Int(row.int64(at: 3)),
                ingestTransactions: Int(row.int64(at: 4)),
                edus: Int(row.int64(at: 5)),
                eduDestinations: Int(row.int64(at: 6)))
        } ?? OutboxRowCounts(pdus: 0, destinationSets: 0, destinationSetMembers: 0, destinations: 0, ingestTransactions: 0)
    }

    /// The PDUs of `query`'s rows (stream ordering, room, event, canonical JSON, log position, log length), with
    /// the bodies kept in the log read from it.
    private func storedPDUs(_ query: SQLiteStatement) throws(SQLiteError) -> [StoredPDU] {
        let rows = try query.rows { row in
            (pdu: StoredPDU(streamOrdering: row.int64(at: 0), roomID: row.text(at: 1), eventID: row.optionalText(at: 2),
                            canonicalJSON: row.blob(at: 3)),
             logPosition: row.optionalInt64(at: 4), logLength: row.optionalInt64(at: 5))
        }
        var pdus: [StoredPDU] = []
        pdus.reserveCapacity(rows.count)
        for var row in rows {
            if let position = row.logPosition, let length = row.logLength {
                row.pdu.canonicalJSON = try logBody(at: position, length: length)
            }
            pdus.append(row.pdu)
        }
        return pdus
    }

    private static func destinationRecord(_ row: SQLiteStatement) -> DestinationRecord {
        DestinationRecord(
            name: row.text(at: 0),
            lastSuccessfulStreamOrdering: row.int64(at: 1),
            retryLastTS: row.optionalInt64(at: 2),
            retryIntervalMS: row.int64(at: 3),
            failureCount: row.int64(at: 4))
    }
}
