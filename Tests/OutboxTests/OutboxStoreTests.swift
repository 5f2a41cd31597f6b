import Testing
@testable import Outbox

/// The group-commit pieces below the writer thread: savepoints on a real database file and the round rule.
@Suite struct OutboxStoreTests {
    @Test func aFailingWriteInAGroupIsRolledBackAloneAndTheOthersCommit() async throws {
        try await withTemporaryDirectory { directory in
            // SQLite refuses values longer than maxPDUBytes + 4 KiB (here a room id), whatever slipped past validation.
            let store = try OutboxStore.open(
                path: "\(directory)/outbox.db", limits: OutboxLimits(maxPDUBytes: 100), now: { 0 })
            defer { store.close() }
            let first = IngestBatch(txnID: "first", pdus: [pdu(room: "!r:hs", serial: 1, destinations: ["a.example"])])
            let tooBig = IngestBatch(txnID: "too-big", pdus: [
                pdu(room: "!r:hs", serial: 2, destinations: ["a.example"]),
                IncomingPDU(roomID: String(repeating: "r", count: 10_000), eventID: nil, canonicalJSON: Array("{}".utf8),
                            destinations: ["b.example"]),
            ])
            let third = IngestBatch(txnID: "third", pdus: [pdu(room: "!r:hs", serial: 3, destinations: ["c.example"])])

            try store.beginImmediate()
            let firstReceipt = try store.withSavepoint { () throws(SQLiteError) in try store.accept(first) }
            #expect(throws: SQLiteError.self) {
                try store.withSavepoint { () throws(SQLiteError) in try store.accept(tooBig) }
            }
            #expect(store.isInTransaction)
            let thirdReceipt = try store.withSavepoint { () throws(SQLiteError) in try store.accept(third) }
            try store.commit()

            #expect(firstReceipt.perPDU == [1])
            #expect(thirdReceipt.perPDU == [2])
            #expect(try store.rowCounts() == OutboxRowCounts(
                pdus: 2, destinationSets: 2, destinationSetMembers: 2, destinations: 2, ingestTransactions: 2))
            #expect(try store.receipt(forTxnID: "too-big") == nil)
        }
    }

    @Test func aDestinationSetCreatedByARolledBackWriteIsNotReused() async throws {
        try await withTemporaryDirectory { directory in
            let store = try OutboxStore.open(
                path: "\(directory)/outbox.db", limits: OutboxLimits(maxPDUBytes: 100), now: { 0 })
            defer { store.close() }
            // The set {a, b} is created, then the batch fails on its second PDU and is rolled back.
            let failing = IngestBatch(txnID: "failing", pdus: [
                pdu(room: "!r:hs", serial: 1, destinations: ["a.example", "b.example"]),
                IncomingPDU(roomID: String(repeating: "r", count: 10_000), eventID: nil, canonicalJSON: Array("{}".utf8),
                            destinations: ["c.example"]),
            ])
            try store.beginImmediate()
            #expect(throws: SQLiteError.self) {
                try store.withSavepoint { () throws(SQLiteError) in try store.accept(failing) }
            }
            try store.commit()
            // Had the cache kept the rolled-back set's id, this PDU would refer to a set that does not exist.
            let receipt = try store.accept(IngestBatch(txnID: "next", pdus: [
                pdu(room: "!r:hs", serial: 2, destinations: ["b.example", "a.example"]),
            ]))
            #expect(try store.pendingPDUs(for: "a.example", after: 0, limit: 10).map(\.streamOrdering) == receipt.perPDU)
            #expect(try store.rowCounts() == OutboxRowCounts(
                pdus: 1, destinationSets: 1, destinationSetMembers: 2, destinations: 2, ingestTransactions: 1))
        }
    }

    @Test func aSetIsFoundByItsMembersInAnyOrderAndARolledBackOrderIsForgotten() async throws {
        try await withTemporaryDirectory { directory in
            let store = try OutboxStore.open(
                path: "\(directory)/outbox.db", limits: OutboxLimits(maxPDUBytes: 100), now: { 0 })
            defer { store.close() }
            // Created by a write that is rolled back: neither its members nor the order given may be reused.
            let failing = IngestBatch(txnID: "failing", pdus: [
                pdu(room: "!r:hs", serial: 1, destinations: ["c.example", "a.example", "b.example"]),
                IncomingPDU(roomID: String(repeating: "r", count: 10_000), eventID: nil, canonicalJSON: Array("{}".utf8),
                            destinations: ["d.example"]),
            ])
            try store.beginImmediate()
            #expect(throws: SQLiteError.self) {
                try store.withSavepoint { () throws(SQLiteError) in try store.accept(failing) }
            }
            try store.commit()
            let orders = [["c.example", "a.example", "b.example"], ["a.example", "b.example", "c.example"],
                          ["b.example", "c.example", "a.example", "b.example"], ["c.example", "a.example", "b.example"]]
            for (serial, order) in orders.enumerated() {
                _ = try store.accept(IngestBatch(txnID: "order-\(serial)", pdus: [
                    pdu(room: "!r:hs", serial: 10 + serial, destinations: order),
                ]))
            }
            #expect(try store.pendingPDUs(for: "b.example", after: 0, limit: 10).count == orders.count)
            #expect(try store.rowCounts() == OutboxRowCounts(
                pdus: 4, destinationSets: 1, destinationSetMembers: 3, destinations: 3, ingestTransactions: 4))
        }
    }

    @Test func theTooBigErrorNamesTheStatement() async throws {
        try await withTemporaryDirectory { directory in
            let store = try OutboxStore.open(
                path: "\(directory)/outbox.db", limits: OutboxLimits(maxPDUBytes: 100), now: { 0 })
            defer { store.close() }
            do throws(SQLiteError) {
                _ = try store.accept(IngestBatch(txnID: "t", pdus: [
                    IncomingPDU(roomID: String(repeating: "r", count: 10_000), eventID: nil, canonicalJSON: Array("{}".utf8),
                                destinations: []),
                ]))
                Issue.record("SQLite accepted a value over its length limit")
            } catch {
                #expect(error.primaryCode == 18, "expected SQLITE_TOOBIG, got \(error)")
                #expect(error.description.contains("INSERT INTO pdus"))
            }
        }
    }

    @Test func aRoundTakesWritesInOrderWithinItsBoundsAndEveryRead() {
        var queue = WriterQueue()
        let kinds: [WriterJob.Kind] = [.write(bytes: 10), .read, .write(bytes: 30), .write(bytes: 100), .read, .write(bytes: 5)]
        for kind in kinds {
            queue.append(WriterJob(kind: kind, perform: { _ throws(SQLiteError) in {} }, fail: { _ in }))
        }
        #expect(queue.queuedBytes == 145)

        let first = queue.takeRound(maxGroupWrites: 256, maxGroupBytes: 50)
        #expect(first.writes.map(\.kind) == [.write(bytes: 10), .write(bytes: 30)])
        #expect(first.reads.count == 2)
        #expect(queue.queuedBytes == 105)

        // A write larger than the group bound is committed alone rather than never.
        let second = queue.takeRound(maxGroupWrites: 256, maxGroupBytes: 50)
        #expect(second.writes.map(\.kind) == [.write(bytes: 100)])
        #expect(second.reads.isEmpty)

        let third = queue.takeRound(maxGroupWrites: 256, maxGroupBytes: 50)
        #expect(third.writes.map(\.kind) == [.write(bytes: 5)])
        #expect(queue.isEmpty)
        #expect(queue.queuedBytes == 0)
    }

    @Test func aRoundHoldsAtMostMaxGroupWrites() {
        var queue = WriterQueue()
        for _ in 0..<10 {
            queue.append(WriterJob(kind: .write(bytes: 0), perform: { _ throws(SQLiteError) in {} }, fail: { _ in }))
        }
        #expect(queue.takeRound(maxGroupWrites: 4, maxGroupBytes: 1 << 20).writes.count == 4)
        #expect(queue.takeRound(maxGroupWrites: 4, maxGroupBytes: 1 << 20).writes.count == 4)
        #expect(queue.takeRound(maxGroupWrites: 4, maxGroupBytes: 1 << 20).writes.count == 2)
        #expect(queue.isEmpty)
    }
}
