import Testing
@testable import Outbox

@Suite struct OutboxEDUTests {
    @Test func anEDUIsStoredOnceAndReadBackPerDestinationInOrder() async throws {
        try await withTemporaryDirectory { directory in
            let outbox = try openOutbox(in: directory)
            defer { outbox.close() }
            let edus = [
                edu(serial: 1, destinations: ["a.example", "b.example", "c.example", "a.example"]),
                edu(type: "m.device_list_update", serial: 2, destinations: ["b.example"]),
                edu(type: "m.signing_key_update", serial: 3, destinations: ["a.example", "c.example"]),
            ]
            let receipt = try await outbox.accept(IngestBatch(
                txnID: "t1", pdus: [pdu(room: "!r:hs.example", serial: 1, destinations: ["a.example"])], edus: edus))
            #expect(receipt == IngestReceipt(streamOrdering: 1, isReplay: false, perPDU: [1]))
            #expect(try await outbox.rowCounts() == OutboxRowCounts(
                pdus: 1, destinationSets: 1, destinationSetMembers: 1, destinations: 3, ingestTransactions: 1,
                edus: 3, eduDestinations: 6))

            let forA = try await outbox.pendingEDUs(for: "a.example", limit: 10)
            #expect(forA == [
                StoredEDU(eduID: 1, eduType: "m.direct_to_device", canonicalJSON: edus[0].canonicalJSON),
                StoredEDU(eduID: 3, eduType: "m.signing_key_update", canonicalJSON: edus[2].canonicalJSON),
            ])
            #expect(try await outbox.pendingEDUs(for: "b.example", limit: 10).map(\.eduID) == [1, 2])
            #expect(try await outbox.pendingEDUs(for: "c.example", limit: 10).map(\.eduID) == [1, 3])
            #expect(try await outbox.pendingEDUs(for: "d.example", limit: 10).isEmpty)
            #expect(try await outbox.pendingEDUs(for: "b.example", limit: 1).map(\.eduID) == [1])
            // By kind, so one kind in a flood cannot hide another.
            #expect(try await outbox.pendingEDUs(for: "a.example", limit: 10, onlyTypes: ["m.signing_key_update"]).map(\.eduID) == [3])
            #expect(try await outbox.pendingEDUs(for: "a.example", limit: 10, exceptTypes: ["m.direct_to_device"]).map(\.eduID) == [3])
            #expect(try await outbox.pendingEDUs(
                for: "b.example", limit: 10, onlyTypes: ["m.direct_to_device", "m.device_list_update"]).map(\.eduID) == [1, 2])
            #expect(try await outbox.pendingEDUs(
                for: "b.example", limit: 10, exceptTypes: ["m.direct_to_device", "m.device_list_update"]).isEmpty)
            #expect(try await outbox.pendingEDUCount(for: "a.example") == 2)
            #expect(try await outbox.pendingEDUCount(for: "d.example") == 0)
            #expect(try await outbox.destination("c.example") == DestinationRecord(name: "c.example"))

            _ = try await outbox.accept(IngestBatch(txnID: "t2", pdus: [], edus: [
                edu(serial: 4, destinations: ["b.example"]),
            ]))
            #expect(try await outbox.pendingEDUs(for: "b.example", limit: 10).map(\.eduID) == [1, 2, 4])
        }
    }

    /// A persistent EDU takes a stream ordering after its batch's PDUs: its place in the replication endpoint's
    /// `federation` stream.
    @Test func anEDUOnlyBatchIsAnsweredWithTheStreamOrderingItsEDUTook() async throws {
        try await withTemporaryDirectory { directory in
            let outbox = try openOutbox(in: directory)
            defer { outbox.close() }
            _ = try await outbox.accept(IngestBatch(txnID: "t1", pdus: [
                pdu(room: "!r:hs.example", serial: 1, destinations: ["a.example"]),
                pdu(room: "!r:hs.example", serial: 2, destinations: ["a.example"]),
            ]))
            let receipt = try await outbox.accept(IngestBatch(txnID: "t2", pdus: [], edus: [
                edu(serial: 1, destinations: ["a.example"]),
            ]))
            #expect(receipt == IngestReceipt(streamOrdering: 3, isReplay: false, perPDU: []))
            #expect(outbox.maxStreamOrdering == 3)
        }
    }

    @Test func edusSurviveCloseAndReopenAndTheirIdsAreNeverReused() async throws {
        try await withTemporaryDirectory { directory in
            let first = try openOutbox(in: directory)
            let edus = (1...3).map { edu(serial: $0, destinations: ["a.example", "b.example"]) }
            _ = try await first.accept(IngestBatch(txnID: "t1", pdus: [], edus: edus))
            try await first.recordEDUsDelivered(destination: "a.example", eduIDs: [1])
            first.close()

            let reopened = try openOutbox(in: directory)
            #expect(try await reopened.pendingEDUs(for: "a.example", limit: 10) == [
                StoredEDU(eduID: 2, eduType: "m.direct_to_device", canonicalJSON: edus[1].canonicalJSON),
                StoredEDU(eduID: 3, eduType: "m.direct_to_device", canonicalJSON: edus[2].canonicalJSON),
            ])
            #expect(try await reopened.pendingEDUs(for: "b.example", limit: 10).map(\.canonicalJSON)
                == edus.map(\.canonicalJSON))
            #expect(try await reopened.accept(IngestBatch(txnID: "t1", pdus: [])).isReplay)
            try await reopened.recordEDUsDelivered(destination: "a.example", eduIDs: [2, 3])
            try await reopened.recordEDUsDelivered(destination: "b.example", eduIDs: [1, 2, 3])
            #expect(try await reopened.prune().rowsDeleted == 3)
            #expect(try await reopened.rowCounts().edus == 0)
            reopened.close()

            let emptied = try openOutbox(in: directory)
            defer { emptied.close() }
            _ = try await emptied.accept(IngestBatch(txnID: "t2", pdus: [], edus: [
                edu(serial: 4, destinations: ["a.example"]),
            ]))
            #expect(try await emptied.pendingEDUs(for: "a.example", limit: 10).map(\.eduID) == [4])
        }
    }

    @Test func recordEDUsDeliveredRemovesExactlyThoseRows() async throws {
        try await withTemporaryDirectory { directory in
            let outbox = try openOutbox(in: directory)
            defer { outbox.close() }
            _ = try await outbox.accept(IngestBatch(txnID: "t1", pdus: [], edus: (1...5).map {
                edu(serial: $0, destinations: ["a.example", "b.example"])
            }))
            try await outbox.recordFailure(destination: "a.example", retryLastTS: 5_000, retryIntervalMS: 60_000)

            // Out of id order, with an id a.example was never owed and one that does not exist.
            try await outbox.recordEDUsDelivered(destination: "a.example", eduIDs: [4, 2, 2, 99])
            #expect(try await outbox.pendingEDUs(for: "a.example", limit: 10).map(\.eduID) == [1, 3, 5])
            #expect(try await outbox.pendingEDUs(for: "b.example", limit: 10).map(\.eduID) == [1, 2, 3, 4, 5])
            #expect(try await outbox.pendingEDUCount(for: "a.example") == 3)
            try await outbox.recordEDUsDelivered(destination: "a.example", eduIDs: [])
            #expect(try await outbox.pendingEDUCount(for: "a.example") == 3)
            #expect(try await outbox.destination("a.example") == DestinationRecord(
                name: "a.example", retryLastTS: 5_000, retryIntervalMS: 60_000, failureCount: 1))
            #expect(try await outbox.rowCounts().edus == 5)
        }
    }

    @Test func aReplayedTxnIDStoresNoEDUs() async throws {
        try await withTemporaryDirectory { directory in
            let outbox = try openOutbox(in: directory)
            defer { outbox.close() }
            let batch = IngestBatch(txnID: "txn-1", pdus: [
                pdu(room: "!r:hs.example", serial: 1, destinations: ["a.example"]),
            ], edus: [edu(serial: 1, destinations: ["a.example"])])
            let first = try await outbox.accept(batch)
            let countsBefore = try await outbox.rowCounts()
            #expect(try await outbox.accept(batch) == IngestReceipt(
                streamOrdering: first.streamOrdering, isReplay: true, perPDU: first.perPDU))
            let differentEDUs = IngestBatch(txnID: "txn-1", pdus: [], edus: [
                edu(serial: 2, destinations: ["a.example", "z.example"]),
            ])
            #expect(try await outbox.accept(differentEDUs).isReplay)
            #expect(try await outbox.rowCounts() == countsBefore)
            #expect(try await outbox.pendingEDUs(for: "a.example", limit: 10).map(\.eduID) == [1])
            #expect(try await outbox.destination("z.example") == nil)
        }
    }

    @Test func aBatchWhoseEDUFailsToStoreLeavesNoPDUBehind() async throws {
        try await withTemporaryDirectory { directory in
            // SQLite refuses values longer than maxPDUBytes + 4 KiB; calling the store directly skips validation.
            let store = try OutboxStore.open(
                path: "\(directory)/outbox.db", limits: OutboxLimits(maxPDUBytes: 100), now: { 0 })
            defer { store.close() }
            let batch = IngestBatch(txnID: "t", pdus: [pdu(room: "!r:hs", serial: 1, destinations: ["a.example"])], edus: [
                edu(serial: 1, destinations: ["a.example"]),
                IncomingEDU(eduType: "m.direct_to_device", canonicalJSON: [UInt8](repeating: 0x20, count: 10_000),
                            destinations: ["b.example"]),
            ])
            try store.beginImmediate()
            #expect(throws: SQLiteError.self) {
                try store.withSavepoint { () throws(SQLiteError) in try store.accept(batch) }
            }
            try store.commit()
            #expect(try store.rowCounts() == OutboxRowCounts(
                pdus: 0, destinationSets: 0, destinationSetMembers: 0, destinations: 0, ingestTransactions: 0,
                edus: 0, eduDestinations: 0))
        }
    }

    @Test func pruneDropsEDUsNoDestinationNeedsAndKeepsTheRest() async throws {
        try await withTemporaryDirectory { directory in
            let outbox = try openOutbox(in: directory, limits: OutboxLimits(pruneStepRows: 2))
            defer { outbox.close() }
            let edus = (1...5).map { edu(serial: $0, destinations: ["a.example", "b.example"]) }
            _ = try await outbox.accept(IngestBatch(txnID: "t1", pdus: [], edus: edus))
            #expect(try await outbox.prune().rowsDeleted == 0)

            try await outbox.recordEDUsDelivered(destination: "a.example", eduIDs: [1, 2, 3, 4, 5])
            try await outbox.recordEDUsDelivered(destination: "b.example", eduIDs: [1, 3, 4])
            #expect(try await outbox.prune().rowsDeleted == 3)
            #expect(try await outbox.rowCounts() == OutboxRowCounts(
                pdus: 0, destinationSets: 0, destinationSetMembers: 0, destinations: 2, ingestTransactions: 1,
                edus: 2, eduDestinations: 2))
            #expect(try await outbox.pendingEDUs(for: "b.example", limit: 10) == [
                StoredEDU(eduID: 2, eduType: "m.direct_to_device", canonicalJSON: edus[1].canonicalJSON),
                StoredEDU(eduID: 5, eduType: "m.direct_to_device", canonicalJSON: edus[4].canonicalJSON),
            ])
        }
    }
}
