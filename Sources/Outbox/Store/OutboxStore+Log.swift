import CSQLite

extension OutboxStore {
    /// The directory of the PDU log of the Outbox at `path`.
    static func logDirectory(of path: String) -> String {
        path + "-log"
    }

    /// Segments of a sixteenth of the byte budget, between 4 KiB and 1 MiB: small enough that retention gives
    /// space back in steps, large enough that a new segment's zeros are written rarely.
    static func logSegmentBytes(_ limits: OutboxLimits) -> Int {
        let sixteenth = Int(clamping: limits.maxBytes / 16) / 4_096 * 4_096
        return min(1 << 20, max(4_096, sixteenth))
    }

    /// Released segments kept for reuse: up to 8, and no more than an eighth of the byte budget. Pruning runs
    /// once a minute, so a minute of ingest at 100 PDUs/s (about 6 MiB of log) finds its segments made already
    /// instead of writing each one's zeros again.
    static func maxSpareLogSegments(_ limits: OutboxLimits) -> Int {
        min(8, max(1, Int(clamping: limits.maxBytes / 8) / logSegmentBytes(limits)))
    }

    /// A round's record larger than this goes to SQLite with its bodies instead: a record never takes more
    /// than a quarter of a segment, so a segment's end wastes little.
    var maxLogRecordBytes: Int {
        log.segmentBytes / 4
    }

    /// Opens the log and indexes again what it holds after `indexed_log_position`: rounds acknowledged whose
    /// rows the file lost with the transaction that held them. Commits what it indexed.
    func openLog(limits: OutboxLimits) throws(SQLiteError) {
        let indexed = try indexedLogPosition()
        do throws(SegmentLogError) {
            log = try SegmentLog(directory: Self.logDirectory(of: path), segmentBytes: Self.logSegmentBytes(limits),
                                 maxSpareSegments: Self.maxSpareLogSegments(limits), scanFrom: indexed)
        } catch {
            throw error.sqliteError
        }
        try beginImmediate()
        do throws(SQLiteError) {
            let indexedAgain = try reindexLog(from: indexed)
            try commitIndex()
            reindexedAtOpen = indexedAgain
        } catch {
            rollback()
            throw error
        }
    }

    func indexedLogPosition() throws(SQLiteError) -> UInt64 {
        let value = try database.statement("SELECT value FROM outbox_meta WHERE name = 'indexed_log_position'")
            .firstRow { $0.int64(at: 0) } ?? 0
        return UInt64(max(0, value))
    }

    /// Inserts the rows of every log record from `position` on that the file does not hold, inside the
    /// transaction in progress. A record whose round needed an SQLite commit is skipped: it never got that
    /// commit (the indexed position would be past it), so it was never acknowledged, and nothing after it
    /// depends on it. Returns the PDUs indexed.
    @discardableResult
    func reindexLog(from position: UInt64) throws(SQLiteError) -> Int {
        let records: [SegmentLog.Record]
        do throws(SegmentLogError) {
            records = try log.records(from: position)
        } catch {
            throw error.sqliteError
        }
        var indexed = 0
        for stored in records {
            guard let (record, offsets) = IngestLogRecord.decoded(from: stored.payload), !record.needsIndexCommit else {
                continue
            }
            var bodies = offsets.makeIterator()
            for batch in record.batches {
                let bodyPositions = batch.pdus.map { _ in
                    stored.position + UInt64(SegmentLog.headerBytes) + UInt64(bodies.next() ?? 0)
                }
                guard try receipt(forTxnID: batch.txnID) == nil else { continue }
                for (pdu, bodyPosition) in zip(batch.pdus, bodyPositions) {
                    try insertPDURow(pdu, receivedTS: batch.receivedTS, logPosition: bodyPosition, bodyInRow: false)
                    reserveStreamOrderings(through: pdu.streamOrdering)
                    indexed += 1
                }
                try recordIngestTransaction(batch.txnID, lastStreamOrdering: batch.pdus.last?.streamOrdering ?? allocatedStreamOrdering,
                                            pduCount: batch.pdus.count, receivedTS: batch.receivedTS)
            }
        }
        return indexed
    }

    /// Inserts a PDU's row: its body in the log at `logPosition`, in the row, or (neither) to be placed by
    /// `writeRoundToLog` before the round ends.
    func insertPDURow(_ pdu: IngestLogRecord.PDU, receivedTS: Int64, logPosition: UInt64?, bodyInRow: Bool) throws(SQLiteError) {
        let insert = try database.statement("""
            INSERT INTO pdus (stream_ordering, room_id, event_id, destination_set, canonical_json, received_ts,
                              log_position, log_length)
            VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
            """)
        try insert.bind(pdu.streamOrdering, at: 1)
        try insert.bind(pdu.roomID, at: 2)
        try insert.bind(pdu.eventID, at: 3)
        try insert.bind(pdu.destinationSet, at: 4)
        try insert.bind(bodyInRow ? pdu.canonicalJSON : [], at: 5)
        try insert.bind(logPosition.map { Int64($0) }, at: 7)
        try insert.bind(logPosition.map { _ in Int64(pdu.canonicalJSON.count) }, at: 8)
        try insert.bind(receivedTS, at: 6)
        try insert.run()
    }

    /// Writes the round's record to the log and points its rows at their bodies there, or, when the record is
    /// larger than `maxLogRecordBytes`, puts the bodies in the rows; returns whether the round must be committed to
    /// SQLite before it is acknowledged. Empties `roundRecord`.
    func writeRoundToLog() throws(SQLiteError) -> Bool {
        defer { roundRecord = IngestLogRecord() }
        lastRoundLogPosition = nil
        lastRoundNeededIndexCommit = roundRecord.needsIndexCommit
        guard !roundRecord.isEmpty else { return roundRecord.needsIndexCommit }
        let (payload, offsets) = roundRecord.encoded()
        let pdus = roundRecord.batches.flatMap(\.pdus)
        guard SegmentLog.headerBytes + payload.count <= maxLogRecordBytes else {
            let update = try database.statement("""
                UPDATE pdus SET canonical_json = ?2, log_position = NULL, log_length = NULL WHERE stream_ordering = ?1
                """)
            for pdu in pdus {
                try update.bind(pdu.streamOrdering, at: 1)
                try update.bind(pdu.canonicalJSON, at: 2)
                try update.run()
            }
            lastRoundNeededIndexCommit = true
            return true
        }
        let position: UInt64
        do throws(SegmentLogError) {
            position = try log.append(payload)
        } catch {
            throw error.sqliteError
        }
        lastRoundLogPosition = position
        do throws(SQLiteError) {
            let update = try database.statement("UPDATE pdus SET log_position = ?2, log_length = ?3 WHERE stream_ordering = ?1")
            for (pdu, offset) in zip(pdus, offsets) {
                try update.bind(pdu.streamOrdering, at: 1)
                try update.bind(Int64(position + UInt64(SegmentLog.headerBytes) + UInt64(offset)), at: 2)
                try update.bind(Int64(pdu.canonicalJSON.count), at: 3)
                try update.run()
            }
        } catch {
            // The round fails: its record must not be indexed later as if it had been acknowledged.
            try? log.rewind(to: position)
            throw error
        }
        return roundRecord.needsIndexCommit
    }

    /// Moves to the log's tail the few bodies still needed at its start when that gives back whole segments: a
    /// quiet room's newest PDU, kept for a destination that will catch up, would otherwise keep every segment
    /// written after it. Bodies move only as a run from the log's start whose bytes are at most a quarter of the
    /// segments moving it frees (and at most a segment), never from the segment being written, and at most
    /// `maxBytes` of them at a time: a longer run moves over several calls, each of which sees the same run less
    /// what already moved. The bodies join `roundRecord`, flagged so that an open never indexes them again, and
    /// `writeRoundToLog` points their rows at the new copies; the segments go at the commit. A body that cannot
    /// be read stays where it is (the sender reports it when it needs it; `check-storage` names it). Returns the
    /// bodies moved.
    func relocateSparseLogStart(maxBytes: Int, maxBodies: Int) throws(SQLiteError) -> Int {
        let segmentBytes = UInt64(log.segmentBytes)
        let tailSegment = log.tail / segmentBytes
        // One row more than may move, to know where the next body is.
        let oldest = try database.statement("""
            SELECT stream_ordering, destination_set, room_id, event_id, log_position, log_length
            FROM pdus WHERE log_position IS NOT NULL ORDER BY log_position LIMIT ?1
            """)
        try oldest.bind(Int64(maxBodies) + 1, at: 1)
        let rows = try oldest.rows { row in
            (pdu: IngestLogRecord.PDU(streamOrdering: row.int64(at: 0), destinationSet: row.int64(at: 1),
                                      roomID: row.text(at: 2), eventID: row.optionalText(at: 3), canonicalJSON: []),
             segment: UInt64(row.int64(at: 4)) / segmentBytes, position: row.int64(at: 4), length: row.int64(at: 5))
        }
        guard let first = rows.first?.segment, first < tailSegment else { return 0 }
        func recordBytes(_ index: Int) -> Int {
            let pdu = rows[index].pdu
            return Int(rows[index].length) + IngestLogRecord.pduFieldBytes + pdu.roomID.utf8.count
                + (pdu.eventID?.utf8.count ?? 0)
        }
        // The longest run worth moving: moving the first `count` bodies frees the segments from the first one up
        // to the next body's, or the tail's when no body is left.
        var run = 0
        var freedByRun: UInt64 = 0
        var runBytes = 0
        for count in 1...min(rows.count, maxBodies) {
            runBytes += recordBytes(count - 1)
            guard runBytes <= log.segmentBytes else { break }
            let next = count < rows.count ? min(rows[count].segment, tailSegment) : tailSegment
            let freed = next - first
            if freed > freedByRun && UInt64(runBytes) * 4 <= freed * segmentBytes {
                run = count
                freedByRun = freed
            }
            if next == tailSegment { break }
        }
        guard run > 0 else { return 0 }
        var relocated = IngestLogRecord.Batch(txnID: "", receivedTS: 0, pdus: [])
        var bytes = 0
        for index in 0..<run {
            bytes += recordBytes(index)
            if index > 0 && bytes > maxBytes { break }
            var pdu = rows[index].pdu
            guard let body = try? logBody(at: rows[index].position, length: rows[index].length) else { break }
            pdu.canonicalJSON = body
            relocated.pdus.append(pdu)
        }
        guard !relocated.pdus.isEmpty else { return 0 }
        roundRecord.batches.append(relocated)
        roundRecord.needsIndexCommit = true
        return relocated.pdus.count
    }

    /// Deletes the transaction's rows already delivered everywhere (unless `Outbox.flush` asked for this commit),
    /// records the log's tail as indexed and commits the transaction in progress; then gives back the log's
    /// segments below the oldest body a row still points to. Throws only when the commit did not happen.
    func commitIndex(savingAllProgress: Bool = false) throws(SQLiteError) {
        if savingAllProgress || progressSaveIsDue {
            try saveProgress()
        }
        if keepsDeliveredRowsAtNextCommit {
            keepsDeliveredRowsAtNextCommit = false
        } else {
            try deleteDeliveredUncommittedPDUs()
        }
        // Unchanged, the row is not written: a commit of nothing else (an empty prune step) then writes nothing.
        let update = try database.statement("""
            UPDATE outbox_meta SET value = ?1 WHERE name = 'indexed_log_position' AND value <> ?1
            """)
        try update.bind(Int64(log.tail), at: 1)
        try update.run()
        try commit()
        committedStreamOrdering = allocatedStreamOrdering
        // The commit stands either way; segments a failed release keeps are released by a later commit.
        guard let oldest = try? database.statement("SELECT min(log_position) FROM pdus WHERE log_position IS NOT NULL")
            .firstRow({ $0.optionalInt64(at: 0) }) else { return }
        try? log.release(below: oldest.flatMap { $0 }.map { UInt64($0) } ?? log.tail)
    }

    /// Deletes the rows the open transaction added whose PDUs every destination of their set already has. While
    /// the destinations keep up, a PDU is delivered well within the time its row waits for a commit, so its row
    /// never reaches the file, and the log's segments go back as soon as they are behind. The marks that allow
    /// it may still wait to be written (`unsavedProgress`): a crash then sends nothing of such a row again, since
    /// it is gone and every destination has it. Delivered rows committed earlier wait for `pruneDeliveredPDUs`.
    private func deleteDeliveredUncommittedPDUs() throws(SQLiteError) {
        // Step by step rather than in one statement, whose plan scanned every set's members.
        let sets = try database.statement(
            "SELECT DISTINCT destination_set FROM pdus NOT INDEXED WHERE stream_ordering > ?1 AND destination_set IS NOT NULL")
        try sets.bind(committedStreamOrdering, at: 1)
        let setIDs = try sets.rows { $0.int64(at: 0) }
        guard !setIDs.isEmpty else { return }
        let members = try database.statement("""
            SELECT m.destination, d.last_successful_stream_ordering
            FROM destination_set_members AS m JOIN destinations AS d ON d.destination = m.destination
            WHERE m.set_id = ?1
            """)
        let delete = try database.statement("""
            DELETE FROM pdus WHERE destination_set = ?1 AND stream_ordering > ?2 AND stream_ordering <= ?3
            """)
        var deleted = 0
        for setID in setIDs {
            try members.bind(setID, at: 1)
            // Each member's mark as delivered, written or not.
            let marks = try members.rows { max($0.int64(at: 1), unsavedProgress[$0.text(at: 0)] ?? 0) }
            guard let through = marks.min(), through > committedStreamOrdering else { continue }
            try delete.bind(setID, at: 1)
            try delete.bind(committedStreamOrdering, at: 2)
            try delete.bind(through, at: 3)
            try delete.run()
            deleted += database.changes
        }
        if deleted > 0 {
            try persistAllocatedStreamOrdering()
        }
    }

    /// The canonical JSON of a row that keeps its body in the log.
    func logBody(at position: Int64, length: Int64) throws(SQLiteError) -> [UInt8] {
        do throws(SegmentLogError) {
            return try log.read(at: UInt64(position), length: Int(length))
        } catch {
            throw error.sqliteError
        }
    }
}

extension SegmentLogError {
    /// The failure as the Outbox's storage layer reports it: a full disk as `SQLITE_FULL`, anything else as
    /// `SQLITE_IOERR`.
    var sqliteError: SQLiteError {
        SQLiteError(code: isDiskFull ? SQLITE_FULL : SQLITE_IOERR, message: description, sql: "PDU log")
    }
}
