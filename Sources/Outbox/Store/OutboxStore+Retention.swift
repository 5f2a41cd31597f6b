extension OutboxStore {
    /// Bytes in use: the PDU log's segments, and the file's size less the pages SQLite keeps free for reuse
    /// (deleted rows free pages the next writes fill again, so the file stops growing once pruning keeps up).
    func usedBytes() throws(SQLiteError) -> Int64 {
        let pages = try database.statement("PRAGMA page_count").firstRow { $0.int64(at: 0) } ?? 0
        let free = try database.statement("PRAGMA freelist_count").firstRow { $0.int64(at: 0) } ?? 0
        let size = try database.statement("PRAGMA page_size").firstRow { $0.int64(at: 0) } ?? 0
        return (pages - free) * size + (log?.bytesOnDisk ?? 0)
    }

    /// Per destination set, the lowest last successful stream ordering of its members backing off for no longer
    /// than `?1` ms, as `needed_after` (the largest integer when every member backs off for longer): a PDU of the
    /// set at or below it is needed only by members backing off for longer. With `?1` the largest integer, the
    /// lowest of all members: what every member has.
    static let setsNeededAfter = """
        (SELECT m.set_id,
                coalesce(min(CASE WHEN d.retry_interval_ms > ?1 THEN NULL ELSE d.last_successful_stream_ordering END),
                         9223372036854775807) AS needed_after
         FROM destination_set_members AS m JOIN destinations AS d ON d.destination = m.destination
         GROUP BY m.set_id)
        """

    /// Deletes up to `limit` PDUs that no destination of their set needs any more: each member is past the PDU,
    /// or backs off for longer than `catchUpAfterMS` (so it will be caught up with the newest PDU of each room only)
    /// and a newer PDU of the same room has the same set. Returns how many went. Nothing is lost: catch-up never
    /// sends a PDU with a newer one of its room owed to the same destination.
    func pruneSupersededPDUs(catchUpAfterMS: Int64, limit: Int) throws(SQLiteError) -> Int {
        try persistAllocatedStreamOrdering()
        // What is deleted follows the delivered marks, which must be the ones a restart reads.
        try saveProgress()
        let delete = try database.statement("""
            DELETE FROM pdus WHERE stream_ordering IN (
                SELECT p.stream_ordering
                FROM \(Self.setsNeededAfter) AS s
                    CROSS JOIN pdus AS p ON p.destination_set = s.set_id AND p.stream_ordering <= s.needed_after
                WHERE EXISTS (SELECT 1 FROM pdus AS newer
                              WHERE newer.destination_set = p.destination_set
                                AND newer.stream_ordering > p.stream_ordering AND newer.room_id = p.room_id)
                LIMIT ?2)
            """)
        try delete.bind(catchUpAfterMS, at: 1)
        try delete.bind(Int64(limit), at: 2)
        try delete.run()
        return database.changes
    }

    /// Drops up to `limit` of the oldest PDUs that only backing-off destinations still need (every member of the
    /// set not backing off is past them), received before `receivedBefore` when given. Returns how many went.
    /// The oldest PDUs are the ones the longest-dead destinations are behind on; once back, those catch up with
    /// what is left.
    func dropPDUsOwedOnlyToBackingOff(receivedBefore: Int64?, limit: Int) throws(SQLiteError) -> Int {
        try persistAllocatedStreamOrdering()
        // What is deleted follows the delivered marks, which must be the ones a restart reads.
        try saveProgress()
        let delete = try database.statement("""
            DELETE FROM pdus WHERE stream_ordering IN (
                SELECT p.stream_ordering
                FROM pdus AS p
                    JOIN \(Self.setsNeededAfter) AS s
                    ON s.set_id = p.destination_set AND p.stream_ordering <= s.needed_after
                WHERE ?3 IS NULL OR p.received_ts < ?3
                ORDER BY p.stream_ordering
                LIMIT ?2)
            """)
        try delete.bind(Int64(0), at: 1)
        try delete.bind(Int64(limit), at: 2)
        try delete.bind(receivedBefore, at: 3)
        try delete.run()
        return database.changes
    }

    /// Drops up to `limit` of the oldest persistent EDUs owed to backing-off destinations, for those destinations
    /// only, received before `receivedBefore` when given; returns how many destination copies went. The EDUs
    /// themselves go with the next `pruneUnneededEDUs` once no destination needs them.
    func dropEDUsOwedToBackingOff(receivedBefore: Int64?, limit: Int) throws(SQLiteError) -> Int {
        let delete = try database.statement("""
            DELETE FROM edu_destinations WHERE (destination, edu_id) IN (
                SELECT ed.destination, ed.edu_id
                FROM edu_destinations AS ed
                    JOIN destinations AS d ON d.destination = ed.destination
                    JOIN edus AS e ON e.edu_id = ed.edu_id
                WHERE d.retry_interval_ms > 0 AND (?1 IS NULL OR e.received_ts < ?1)
                ORDER BY ed.edu_id
                LIMIT ?2)
            """)
        try delete.bind(receivedBefore, at: 1)
        try delete.bind(Int64(limit), at: 2)
        try delete.run()
        return database.changes
    }
}
