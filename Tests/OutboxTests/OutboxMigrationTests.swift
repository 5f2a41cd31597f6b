import Testing
@testable import Outbox

@Suite struct OutboxMigrationTests {
    @Test func aVersionOneFileKeepsItsDataAndGainsTheEDUTables() async throws {
        try await withTemporaryDirectory { directory in
            let path = "\(directory)/outbox.db"
            let pdus = [
                pdu(room: "!r:hs.example", serial: 1, destinations: ["a.example", "b.example"]),
                pdu(room: "!r:hs.example", serial: 2, destinations: ["b.example"]),
            ]
            try writeVersionOneFile(at: path, pdus: pdus)

            let outbox = try openOutbox(in: directory)
            #expect(outbox.maxStreamOrdering == 2)
            #expect(try await outbox.rowCounts() == OutboxRowCounts(
                pdus: 2, destinationSets: 2, destinationSetMembers: 3, destinations: 2, ingestTransactions: 1,
                edus: 0, eduDestinations: 0))
            let pending = try await outbox.pendingPDUs(for: "b.example", after: 0, limit: 10)
            #expect(pending.map(\.streamOrdering) == [1, 2])
            #expect(pending.map(\.canonicalJSON) == pdus.map(\.canonicalJSON))
            #expect(try await outbox.destination("a.example") == DestinationRecord(
                name: "a.example", lastSuccessfulStreamOrdering: 1))
            #expect(try await outbox.destinationsWithPendingWork().map(\.name) == ["b.example"])
            #expect(try await outbox.catchUpPDUs(for: "b.example", after: 0, limit: 50).map(\.streamOrdering) == [2])
            #expect(try await outbox.accept(IngestBatch(txnID: "old-txn", pdus: [])) == IngestReceipt(
                streamOrdering: 2, isReplay: true, perPDU: [1, 2]))

            let next = try await outbox.accept(IngestBatch(txnID: "new-txn", pdus: [
                pdu(room: "!r:hs.example", serial: 3, destinations: ["a.example"]),
            ], edus: [edu(serial: 1, destinations: ["a.example"])]))
            #expect(next.perPDU == [3])
            #expect(try await outbox.pendingEDUs(for: "a.example", limit: 10).map(\.eduID) == [1])
            outbox.close()

            let database = try SQLiteDatabase(path: path)
            defer { database.close() }
            #expect(try database.statement("SELECT version FROM schema_version").rows { $0.int64(at: 0) } == [OutboxSchema.latestVersion])
        }
    }

    @Test func aVersionTwoFileMovesToDestinationSetsAndKeepsWhatIsOwed() async throws {
        try await withTemporaryDirectory { directory in
            let path = "\(directory)/outbox.db"
            try writeVersionTwoFile(at: path)

            let outbox = try openOutbox(in: directory, limits: .setsGoWhenUnused())
            // PDU 5 was the newest ever handed out and is pruned already: the next one is 6, not 5.
            #expect(outbox.maxStreamOrdering == 5)
            #expect(try await outbox.rowCounts() == OutboxRowCounts(
                pdus: 3, destinationSets: 2, destinationSetMembers: 3, destinations: 3, ingestTransactions: 1,
                edus: 1, eduDestinations: 1))
            #expect(try await outbox.pendingPDUs(for: "b.example", after: 2, limit: 10).map(\.streamOrdering) == [3, 4])
            #expect(try await outbox.pendingPDUs(for: "c.example", after: 0, limit: 10).map(\.streamOrdering) == [4])
            #expect(try await outbox.catchUpPDUs(for: "b.example", after: 2, limit: 10).map(\.streamOrdering) == [4])
            #expect(try await outbox.destinationsWithPendingWork().map(\.name) == ["a.example", "b.example", "c.example"])
            #expect(try await outbox.pendingEDUs(for: "a.example", limit: 10).map(\.eduID) == [7])
            #expect(try await outbox.accept(IngestBatch(txnID: "v2-txn", pdus: [])).perPDU == [4])

            // New PDUs for the same servers as a migrated one get a set of their own, with a hash.
            let next = try await outbox.accept(IngestBatch(txnID: "v3-txn", pdus: [
                pdu(room: "!r:hs.example", serial: 6, destinations: ["c.example", "b.example"]),
            ], edus: [edu(serial: 8, destinations: ["a.example"])]))
            #expect(next.perPDU == [6])
            #expect(try await outbox.pendingEDUs(for: "a.example", limit: 10).map(\.eduID) == [7, 8])

            // Once every destination is past them, the PDUs and the migrated sets go.
            for name in ["a.example", "b.example", "c.example"] {
                try await outbox.recordDelivered(destination: name, upTo: 6)
            }
            _ = try await outbox.prune()
            let counts = try await outbox.rowCounts()
            #expect(counts.pdus == 0 && counts.destinationSets == 0 && counts.destinationSetMembers == 0)
            outbox.close()

            // With every PDU pruned, the stream ordering handed out last (the new EDU's) survives a restart.
            let reopened = try openOutbox(in: directory)
            defer { reopened.close() }
            #expect(reopened.maxStreamOrdering == 7)
            #expect(try await reopened.accept(IngestBatch(txnID: "after-restart", pdus: [
                pdu(room: "!r:hs.example", serial: 7, destinations: ["a.example"]),
            ])).perPDU == [8])
        }
    }

    @Test func aVersionFiveFileFilesItsTxnIDsByDayAndForgetsWholeDays() async throws {
        try await withTemporaryDirectory { directory in
            let day: Int64 = 86_400_000
            try writeVersionFiveFile(at: "\(directory)/outbox.db", txnIDs: [
                ("day-one", 2, day + 5), ("day-three", 3, 3 * day + 5),
            ])
            let outbox = try openOutbox(in: directory, clock: TestClock(3 * day + 10))
            defer { outbox.close() }
            #expect(outbox.maxStreamOrdering == 3)
            #expect(try await outbox.rowCounts().ingestTransactions == 2)
            #expect(try await outbox.accept(IngestBatch(txnID: "day-one", pdus: [])) == IngestReceipt(
                streamOrdering: 2, isReplay: true, perPDU: [2]))
            #expect(try await outbox.accept(IngestBatch(txnID: "day-three", pdus: [])).perPDU == [3])

            // A cutoff late on day three forgets day one only, whole; a new txn id goes under day three.
            _ = try await outbox.prune(RetentionPolicy(ingestTransactionsReceivedBefore: 3 * day + 9))
            #expect(try await outbox.rowCounts().ingestTransactions == 1)
            #expect(try await outbox.accept(IngestBatch(txnID: "day-three", pdus: [])).isReplay)
            #expect(try await outbox.accept(IngestBatch(txnID: "day-one", pdus: [
                pdu(room: "!r:hs.example", serial: 4, destinations: ["a.example"]),
            ])) == IngestReceipt(streamOrdering: 4, isReplay: false, perPDU: [4]))
        }
    }

    /// A database as version 5 (the release before txn ids by day) left it, with one PDU per txn id.
    private func writeVersionFiveFile(at path: String, txnIDs: [(id: String, streamOrdering: Int64, receivedTS: Int64)]) throws {
        let database = try SQLiteDatabase(path: path)
        defer { database.close() }
        try database.execute("CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version (version) VALUES (5);")
        for migration in OutboxSchema.migrations where migration.version <= 5 {
            try database.execute(migration.sql)
        }
        let insert = try database.statement("""
            INSERT INTO ingest_transactions (txn_id, stream_ordering, pdu_count, received_ts) VALUES (?1, ?2, 1, ?3)
            """)
        for txn in txnIDs {
            try insert.bind(txn.id, at: 1)
            try insert.bind(txn.streamOrdering, at: 2)
            try insert.bind(txn.receivedTS, at: 3)
            try insert.run()
        }
    }

    /// A database as version 2 (the release before destination sets) left it: PDUs 1 and 5 pruned, PDU 2
    /// delivered to b.example, PDUs 3 and 4 still owed, one EDU owed to a.example.
    private func writeVersionTwoFile(at path: String) throws {
        let database = try SQLiteDatabase(path: path)
        defer { database.close() }
        try database.execute("""
            CREATE TABLE schema_version (version INTEGER NOT NULL);
            INSERT INTO schema_version (version) VALUES (2);
            """)
        for migration in OutboxSchema.migrations where migration.version <= 2 {
            try database.execute(migration.sql)
        }
        try database.execute("""
            INSERT INTO destinations (destination, last_successful_stream_ordering)
            VALUES ('a.example', 4), ('b.example', 2), ('c.example', 0);
            """)
        let insertPDU = try database.statement("""
            INSERT INTO pdus (stream_ordering, room_id, event_id, canonical_json, received_ts)
            VALUES (?1, '!r:hs.example', ?2, ?3, 500)
            """)
        for serial in [2, 3, 4, 5] {
            try insertPDU.bind(Int64(serial), at: 1)
            try insertPDU.bind("$e\(serial)", at: 2)
            try insertPDU.bind(pdu(room: "!r:hs.example", serial: serial, destinations: []).canonicalJSON, at: 3)
            try insertPDU.run()
        }
        try database.execute("""
            DELETE FROM pdus WHERE stream_ordering = 5;
            INSERT INTO pdu_destinations (destination, stream_ordering)
            VALUES ('b.example', 3), ('b.example', 4), ('c.example', 4);
            INSERT INTO destination_rooms (destination, room_id, stream_ordering)
            VALUES ('b.example', '!r:hs.example', 4), ('c.example', '!r:hs.example', 4);
            INSERT INTO ingest_transactions (txn_id, stream_ordering, pdu_count, received_ts)
            VALUES ('v2-txn', 4, 1, 500);
            INSERT INTO edus (edu_id, edu_type, canonical_json, received_ts)
            VALUES (7, 'm.direct_to_device', X'7B7D', 500);
            INSERT INTO edu_destinations (destination, edu_id) VALUES ('a.example', 7);
            """)
    }

    /// A database exactly as the first release left it: migration 1's tables at version 1, with a little data.
    private func writeVersionOneFile(at path: String, pdus: [IncomingPDU]) throws {
        let migration = try #require(OutboxSchema.migrations.first { $0.version == 1 })
        let database = try SQLiteDatabase(path: path)
        defer { database.close() }
        try database.execute("""
            CREATE TABLE schema_version (version INTEGER NOT NULL);
            INSERT INTO schema_version (version) VALUES (1);
            """)
        try database.execute(migration.sql)
        try database.execute("""
            INSERT INTO destinations (destination, last_successful_stream_ordering)
            VALUES ('a.example', 1), ('b.example', 0);
            """)
        let insertPDU = try database.statement("""
            INSERT INTO pdus (stream_ordering, room_id, event_id, canonical_json, received_ts)
            VALUES (?1, ?2, ?3, ?4, 500)
            """)
        for (index, pdu) in pdus.enumerated() {
            try insertPDU.bind(Int64(index + 1), at: 1)
            try insertPDU.bind(pdu.roomID, at: 2)
            try insertPDU.bind(pdu.eventID, at: 3)
            try insertPDU.bind(pdu.canonicalJSON, at: 4)
            try insertPDU.run()
        }
        try database.execute("""
            INSERT INTO pdu_destinations (destination, stream_ordering)
            VALUES ('a.example', 1), ('b.example', 1), ('b.example', 2);
            INSERT INTO destination_rooms (destination, room_id, stream_ordering)
            VALUES ('a.example', '!r:hs.example', 1), ('b.example', '!r:hs.example', 2);
            INSERT INTO ingest_transactions (txn_id, stream_ordering, pdu_count, received_ts)
            VALUES ('old-txn', 2, 2, 500);
            """)
    }
}
