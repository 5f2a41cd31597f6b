extension OutboxStore {
    /// Stores `batch` once: the PDU rows, a `pdu_destinations` row and a `destination_rooms` upsert per destination,
    /// an `edus` row per EDU with an `edu_destinations` row per destination, a `destinations` row for any new
    /// destination, and the txn id with its answer. A txn id seen before gets the first answer back and nothing is
    /// written.
    func accept(_ batch: IngestBatch) throws(SQLiteError) -> IngestReceipt {
        if let earlier = try receipt(forTxnID: batch.txnID) {
            return earlier
        }
        let receivedTS = currentTimestamp
        let insertPDU = try database.statement("""
            INSERT INTO pdus (stream_ordering, room_id, event_id, canonical_json, received_ts)
            VALUES (?1, ?2, ?3, ?4, ?5)
            """)
        let insertDestination = try database.statement("""
            INSERT INTO destinations (destination) VALUES (?1) ON CONFLICT (destination) DO NOTHING
            """)
        let insertPDUDestination = try database.statement("""
            INSERT INTO pdu_destinations (destination, stream_ordering) VALUES (?1, ?2)
            """)
        let upsertDestinationRoom = try database.statement("""
            INSERT INTO destination_rooms (destination, room_id, stream_ordering) VALUES (?1, ?2, ?3)
            ON CONFLICT (destination, room_id)
            DO UPDATE SET stream_ordering = max(stream_ordering, excluded.stream_ordering)
            """)
        var perPDU: [Int64] = []
        perPDU.reserveCapacity(batch.pdus.count)
        for pdu in batch.pdus {
            let streamOrdering = allocateStreamOrdering()
            try insertPDU.bind(streamOrdering, at: 1)
            try insertPDU.bind(pdu.roomID, at: 2)
            try insertPDU.bind(pdu.eventID, at: 3)
            try insertPDU.bind(pdu.canonicalJSON, at: 4)
            try insertPDU.bind(receivedTS, at: 5)
            try insertPDU.run()
            var seen = Set<String>()
            for destination in pdu.destinations where seen.insert(destination).inserted {
                try insertDestination.bind(destination, at: 1)
                try insertDestination.run()
                try insertPDUDestination.bind(destination, at: 1)
                try insertPDUDestination.bind(streamOrdering, at: 2)
                try insertPDUDestination.run()
                try upsertDestinationRoom.bind(destination, at: 1)
                try upsertDestinationRoom.bind(pdu.roomID, at: 2)
                try upsertDestinationRoom.bind(streamOrdering, at: 3)
                try upsertDestinationRoom.run()
            }
            perPDU.append(streamOrdering)
        }
        if !batch.edus.isEmpty {
            try insertEDUs(batch.edus, receivedTS: receivedTS, insertDestination: insertDestination)
        }
        let receipt = IngestReceipt(
            streamOrdering: perPDU.last ?? allocatedStreamOrdering, isReplay: false, perPDU: perPDU)
        let recordTxn = try database.statement("""
            INSERT INTO ingest_transactions (txn_id, stream_ordering, pdu_count, received_ts) VALUES (?1, ?2, ?3, ?4)
            """)
        try recordTxn.bind(batch.txnID, at: 1)
        try recordTxn.bind(receipt.streamOrdering, at: 2)
        try recordTxn.bind(Int64(perPDU.count), at: 3)
        try recordTxn.bind(receivedTS, at: 4)
        try recordTxn.run()
        return receipt
    }

    private func insertEDUs(
        _ edus: [IncomingEDU],
        receivedTS: Int64,
        insertDestination: SQLiteStatement
    ) throws(SQLiteError) {
        let insertEDU = try database.statement("""
            INSERT INTO edus (edu_type, canonical_json, received_ts) VALUES (?1, ?2, ?3)
            """)
        let insertEDUDestination = try database.statement("""
            INSERT INTO edu_destinations (destination, edu_id) VALUES (?1, ?2)
            """)
        for edu in edus {
            try insertEDU.bind(edu.eduType, at: 1)
            try insertEDU.bind(edu.canonicalJSON, at: 2)
            try insertEDU.bind(receivedTS, at: 3)
            try insertEDU.run()
            let eduID = database.lastInsertRowID
            var seen = Set<String>()
            for destination in edu.destinations where seen.insert(destination).inserted {
                try insertDestination.bind(destination, at: 1)
                try insertDestination.run()
                try insertEDUDestination.bind(destination, at: 1)
                try insertEDUDestination.bind(eduID, at: 2)
                try insertEDUDestination.run()
            }
        }
    }

    /// The answer given when `txnID` was first accepted, rebuilt from its last stream ordering and PDU count
    /// (a batch's PDUs always get consecutive stream orderings).
    func receipt(forTxnID txnID: String) throws(SQLiteError) -> IngestReceipt? {
        let lookup = try database.statement(
            "SELECT stream_ordering, pdu_count FROM ingest_transactions WHERE txn_id = ?1")
        try lookup.bind(txnID, at: 1)
        return try lookup.firstRow { row in
            let last = row.int64(at: 0)
            let count = row.int64(at: 1)
            let perPDU = count > 0 ? Array((last - count + 1)...last) : []
            return IngestReceipt(streamOrdering: last, isReplay: true, perPDU: perPDU)
        }
    }
}
