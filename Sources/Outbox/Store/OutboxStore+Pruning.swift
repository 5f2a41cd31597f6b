extension OutboxStore {
    /// Deletes up to `limit` PDUs every destination of their set is past, and those for no destination at all
    /// (an empty set, or none: the PDUs migration 3 found delivered everywhere); returns how many went. The highest stream ordering handed out is written
    /// first, so that deleting the newest PDUs never lets a restart hand out a stream ordering again.
    func pruneDeliveredPDUs(limit: Int) throws(SQLiteError) -> Int {
        try persistAllocatedStreamOrdering()
        // What is deleted follows the delivered marks, which must be the ones a restart reads.
        try saveProgress()
        let delete = try database.statement("""
            DELETE FROM pdus WHERE stream_ordering IN (
                SELECT p.stream_ordering
                FROM \(Self.setsNeededAfter) AS s
                    CROSS JOIN pdus AS p ON p.destination_set = s.set_id AND p.stream_ordering <= s.needed_after
                LIMIT ?2)
            """)
        try delete.bind(Int64.max, at: 1)
        try delete.bind(Int64(limit), at: 2)
        try delete.run()
        var deleted = database.changes
        if deleted < limit {
            let orphans = try database.statement("""
                DELETE FROM pdus WHERE stream_ordering IN (
                    SELECT stream_ordering FROM pdus
                    WHERE destination_set IS NULL
                       OR destination_set IN (SELECT set_id FROM destination_sets WHERE member_count = 0)
                    LIMIT ?1)
                """)
            try orphans.bind(Int64(limit - deleted), at: 1)
            try orphans.run()
            deleted += database.changes
        }
        return deleted
    }

    /// Looks at up to `limit` destination sets after `cursor` and deletes, with their members, those no PDU refers
    /// to any more that were not used within `unusedDestinationSetGraceMS` (whenever used, when `waivingGrace`).
    /// Returns the sets deleted and where the next step starts, nil once every set has been looked at. Deleted
    /// sets leave the cache, so none is handed to a PDU again.
    func pruneUnusedDestinationSets(after cursor: Int64, limit: Int, waivingGrace: Bool = false) throws(SQLiteError)
        -> (deleted: Int, next: Int64?)
    {
        let candidates = try database.statement("""
            SELECT set_id, NOT EXISTS (SELECT 1 FROM pdus AS p WHERE p.destination_set = s.set_id)
            FROM destination_sets AS s WHERE set_id > ?1 ORDER BY set_id LIMIT ?2
            """)
        try candidates.bind(cursor, at: 1)
        try candidates.bind(Int64(limit), at: 2)
        let looked = try candidates.rows { (setID: $0.int64(at: 0), unused: $0.int64(at: 1) == 1) }
        guard let last = looked.last else { return (0, nil) }
        let keptSince = waivingGrace ? Int64.max : currentTimestamp - unusedDestinationSetGraceMS
        let unused = looked.filter { $0.unused && (destinationSetLastUsedMS[$0.setID] ?? .min) <= keptSince }.map(\.setID)
        let deleteMembers = try database.statement("DELETE FROM destination_set_members WHERE set_id = ?1")
        let deleteSet = try database.statement("DELETE FROM destination_sets WHERE set_id = ?1")
        for setID in unused {
            try deleteMembers.bind(setID, at: 1)
            try deleteMembers.run()
            try deleteSet.bind(setID, at: 1)
            try deleteSet.run()
        }
        if !unused.isEmpty {
            let deleted = Set(unused)
            destinationSetIDs = destinationSetIDs.filter { !deleted.contains($0.value) }
            for setID in unused { destinationSetLastUsedMS[setID] = nil }
        }
        return (unused.count, looked.count < limit ? nil : last.setID)
    }

    /// Forgets when sets were last used once that no longer keeps them, so the record stays as small as the sets
    /// used within the grace.
    func forgetOldDestinationSetUses() {
        let keptSince = currentTimestamp - unusedDestinationSetGraceMS
        destinationSetLastUsedMS = destinationSetLastUsedMS.filter { $0.value > keptSince }
    }

    /// Looks at up to `limit` EDUs after `cursor` and deletes those no destination still needs (delivery already
    /// removed their `edu_destinations` rows). Returns the rows deleted and where the next step starts, or nil for
    /// the cursor once every EDU has been looked at.
    func pruneUnneededEDUs(after cursor: Int64, limit: Int) throws(SQLiteError) -> (deleted: Int, next: Int64?) {
        try persistAllocatedStreamOrdering()
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

    /// Forgets up to `limit` ingest txn ids of the days that ended before `cutoff` (ms); a repeat of one after that
    /// is stored again.
    func pruneIngestTransactions(receivedBefore cutoff: Int64, limit: Int) throws(SQLiteError) -> Int {
        try persistAllocatedStreamOrdering()
        let delete = try database.statement("""
            DELETE FROM ingest_transactions WHERE (received_day, txn_id) IN (
                SELECT received_day, txn_id FROM ingest_transactions WHERE received_day < ?1 LIMIT ?2)
            """)
        try delete.bind(Self.ingestDay(ofMS: cutoff), at: 1)
        try delete.bind(Int64(limit), at: 2)
        try delete.run()
        return database.changes
    }
}
