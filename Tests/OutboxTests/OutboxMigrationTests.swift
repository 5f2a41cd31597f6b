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
                pdus: 2, pduDestinations: 3, destinationRooms: 2, destinations: 2, ingestTransactions: 1,
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
            #expect(try database.statement("SELECT version FROM schema_version").rows { $0.int64(at: 0) } == [2])
        }
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
