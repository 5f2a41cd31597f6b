import Federation

extension OutboxStore {
    /// Stores `batch` once: a `pdus` row per PDU referring to its destination set (created, with a `destinations`
    /// row for any new destination, the first time that set of servers is seen), an `edus` row per EDU with an
    /// `edu_destinations` row per destination, and the txn id with its answer. The PDUs' bodies are not in their
    /// rows: they join `roundRecord`, which the writer puts in the log (`writeRoundToLog`) before the round ends.
    /// A txn id seen before gets the first answer back and nothing is written.
    func accept(_ batch: IngestBatch) throws(SQLiteError) -> IngestReceipt {
        try acceptBatch(batch).receipt
    }

    /// `accept`, also telling the stream ordering each persistent EDU took.
    func acceptBatch(_ batch: IngestBatch) throws(SQLiteError) -> AcceptedBatch {
        if let earlier = try receipt(forTxnID: batch.txnID) {
            return AcceptedBatch(receipt: earlier, eduStreamOrderings: [], createdDestinations: [])
        }
        let receivedTS = currentTimestamp
        let setsBefore = uncommittedDestinationSets.count
        var insertDestination = try DestinationInsert(database)
        var logged = IngestLogRecord.Batch(txnID: batch.txnID, receivedTS: receivedTS, pdus: [])
        logged.pdus.reserveCapacity(batch.pdus.count)
        for pdu in batch.pdus {
            let setID = try destinationSet(of: pdu.destinations, insertDestination: &insertDestination)
            destinationSetLastUsedMS[setID] = receivedTS
            let stored = IngestLogRecord.PDU(streamOrdering: allocateStreamOrdering(), destinationSet: setID,
                                             roomID: pdu.roomID, eventID: pdu.eventID, canonicalJSON: pdu.canonicalJSON)
            // The body goes to the log with the round, or into the row if the round is too large for it.
            try insertPDURow(stored, receivedTS: receivedTS, logPosition: nil, bodyInRow: false)
            logged.pdus.append(stored)
        }
        let perPDU = logged.pdus.map(\.streamOrdering)
        var perEDU: [Int64] = []
        if !batch.edus.isEmpty {
            perEDU = try insertEDUs(batch.edus, receivedTS: receivedTS, insertDestination: &insertDestination)
        }
        let receipt = IngestReceipt(
            streamOrdering: perPDU.last ?? allocatedStreamOrdering, isReplay: false, perPDU: perPDU)
        try recordIngestTransaction(batch.txnID, lastStreamOrdering: receipt.streamOrdering, pduCount: perPDU.count,
                                    receivedTS: receivedTS)
        roundRecord.batches.append(logged)
        // The log record carries PDUs and the sets they name, not new sets, destinations or EDUs.
        if !batch.edus.isEmpty || !insertDestination.created.isEmpty || uncommittedDestinationSets.count > setsBefore {
            roundRecord.needsIndexCommit = true
        }
        return AcceptedBatch(receipt: receipt, eduStreamOrderings: perEDU, createdDestinations: insertDestination.created)
    }

    func recordIngestTransaction(_ txnID: String, lastStreamOrdering: Int64, pduCount: Int, receivedTS: Int64) throws(SQLiteError) {
        let recordTxn = try database.statement("""
            INSERT INTO ingest_transactions (txn_id, stream_ordering, pdu_count, received_day) VALUES (?1, ?2, ?3, ?4)
            """)
        try recordTxn.bind(txnID, at: 1)
        try recordTxn.bind(lastStreamOrdering, at: 2)
        try recordTxn.bind(Int64(pduCount), at: 3)
        try recordTxn.bind(Self.ingestDay(ofMS: receivedTS), at: 4)
        try recordTxn.run()
    }

    /// The id of the set holding exactly `destinations` (repeats ignored), created the first time it is seen.
    private func destinationSet(of destinations: [String], insertDestination: inout DestinationInsert) throws(SQLiteError) -> Int64 {
        // A homeserver sends a room's server list the same way each time: the hash of the list
        // as given finds its set without sorting thousands of names. Names hold no newline, so
        // equal hashes mean equal lists; a list given sorted is its own set's name.
        let givenOrderHash = Self.membersHash(destinations)
        if let known = destinationSetIDs[givenOrderHash] { return known }
        let setID = try destinationSetBySortedMembers(of: destinations, insertDestination: &insertDestination)
        let setIsUncommitted = uncommittedDestinationSets.contains { destinationSetIDs[$0] == setID }
        cacheDestinationSet(givenOrderHash, setID, uncommitted: setIsUncommitted)
        return setID
    }

    private func destinationSetBySortedMembers(of destinations: [String], insertDestination: inout DestinationInsert) throws(SQLiteError) -> Int64 {
        let members = Set(destinations).sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        let hash = Self.membersHash(members)
        if let known = destinationSetIDs[hash] { return known }
        let lookup = try database.statement("SELECT set_id FROM destination_sets WHERE members_hash = ?1")
        try lookup.bind(hash, at: 1)
        if let stored = try lookup.firstRow({ $0.int64(at: 0) }) {
            cacheDestinationSet(hash, stored, uncommitted: false)
            return stored
        }
        let insertSet = try database.statement("INSERT INTO destination_sets (members_hash, member_count) VALUES (?1, ?2)")
        try insertSet.bind(hash, at: 1)
        try insertSet.bind(Int64(members.count), at: 2)
        try insertSet.run()
        let setID = database.lastInsertRowID
        let insertMember = try database.statement("INSERT INTO destination_set_members (destination, set_id) VALUES (?1, ?2)")
        for member in members {
            try insertDestination.run(member)
            try insertMember.bind(member, at: 1)
            try insertMember.bind(setID, at: 2)
            try insertMember.run()
        }
        cacheDestinationSet(hash, setID, uncommitted: true)
        return setID
    }

    /// The SHA-256 of `members`, in the order given, each followed by a newline. Of the members
    /// sorted bytewise, it is the name a destination set is stored under.
    static func membersHash(_ members: [String]) -> [UInt8] {
        var joined: [UInt8] = []
        joined.reserveCapacity(members.reduce(0) { $0 + $1.utf8.count + 1 })
        for member in members {
            joined += member.utf8
            joined.append(0x0A)
        }
        return SHA256.hash(joined)
    }

    private func cacheDestinationSet(_ hash: [UInt8], _ setID: Int64, uncommitted: Bool) {
        // Rooms are few; a daemon that has seen more sets than this starts the cache again.
        if destinationSetIDs.count >= 4_096, uncommittedDestinationSets.isEmpty { destinationSetIDs.removeAll() }
        destinationSetIDs[hash] = setID
        if uncommitted { uncommittedDestinationSets.append(hash) }
    }

    private func insertEDUs(
        _ edus: [IncomingEDU],
        receivedTS: Int64,
        insertDestination: inout DestinationInsert
    ) throws(SQLiteError) -> [Int64] {
        let insertEDU = try database.statement("""
            INSERT INTO edus (edu_type, canonical_json, received_ts, stream_ordering, destination_count)
            VALUES (?1, ?2, ?3, ?4, ?5)
            """)
        let insertEDUDestination = try database.statement("""
            INSERT INTO edu_destinations (destination, edu_id) VALUES (?1, ?2)
            """)
        var streamOrderings: [Int64] = []
        streamOrderings.reserveCapacity(edus.count)
        for edu in edus {
            let streamOrdering = allocateStreamOrdering()
            try insertEDU.bind(edu.eduType, at: 1)
            try insertEDU.bind(edu.canonicalJSON, at: 2)
            try insertEDU.bind(receivedTS, at: 3)
            try insertEDU.bind(streamOrdering, at: 4)
            try insertEDU.bind(Int64(Set(edu.destinations).count), at: 5)
            try insertEDU.run()
            streamOrderings.append(streamOrdering)
            let eduID = database.lastInsertRowID
            var seen = Set<String>()
            for destination in edu.destinations where seen.insert(destination).inserted {
                try insertDestination.run(destination)
                try insertEDUDestination.bind(destination, at: 1)
                try insertEDUDestination.bind(eduID, at: 2)
                try insertEDUDestination.run()
            }
        }
        return streamOrderings
    }

    /// What `accept` stored: the receipt, the stream ordering each persistent EDU took (after the PDUs'), and the
    /// destinations it created a `destinations` row for.
    struct AcceptedBatch {
        var receipt: IngestReceipt
        var eduStreamOrderings: [Int64]
        var createdDestinations: [String]
    }

    /// Adds a `destinations` row, with no progress and no backoff, for a destination that has none, and notes
    /// each one it creates.
    struct DestinationInsert {
        private let statement: SQLiteStatement
        private let database: SQLiteDatabase
        private(set) var created: [String] = []

        init(_ database: SQLiteDatabase) throws(SQLiteError) {
            self.database = database
            statement = try database.statement("""
                INSERT INTO destinations (destination) VALUES (?1) ON CONFLICT (destination) DO NOTHING
                """)
        }

        mutating func run(_ destination: String) throws(SQLiteError) {
            try statement.bind(destination, at: 1)
            try statement.run()
            if database.changes > 0 { created.append(destination) }
        }
    }

    /// The answer given when `txnID` was first accepted, rebuilt from its last stream ordering and PDU count
    /// (a batch's PDUs always get consecutive stream orderings).
    func receipt(forTxnID txnID: String) throws(SQLiteError) -> IngestReceipt? {
        // One probe per day present, newest first: each is one search of the primary key.
        let nextDay = try database.statement(
            "SELECT max(received_day) FROM ingest_transactions WHERE received_day < ?1")
        let lookup = try database.statement("""
            SELECT stream_ordering, pdu_count FROM ingest_transactions WHERE received_day = ?1 AND txn_id = ?2
            """)
        try lookup.bind(txnID, at: 2)
        var before = Int64.max
        while true {
            try nextDay.bind(before, at: 1)
            guard let day = try nextDay.firstRow({ $0.optionalInt64(at: 0) }) ?? nil else { return nil }
            try lookup.bind(day, at: 1)
            if let receipt = try lookup.firstRow({ row in
                let last = row.int64(at: 0)
                let count = row.int64(at: 1)
                let perPDU = count > 0 ? Array((last - count + 1)...last) : []
                return IngestReceipt(streamOrdering: last, isReplay: true, perPDU: perPDU)
            }) {
                return receipt
            }
            before = day
        }
    }

    /// The day an ingest txn id is filed under: whole days since the epoch.
    static func ingestDay(ofMS milliseconds: Int64) -> Int64 {
        max(0, milliseconds) / 86_400_000
    }
}
