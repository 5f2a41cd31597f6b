import Testing
@testable import Outbox

@Suite struct OutboxIngestTests {
    @Test func acceptedPDUsReadBackInStreamOrderWithTheirBytes() async throws {
        try await withTemporaryDirectory { directory in
            let outbox = try openOutbox(in: directory)
            defer { outbox.close() }
            let pdus = [
                pdu(room: "!a:hs.example", serial: 1, destinations: ["one.example"]),
                pdu(room: "!b:hs.example", serial: 2, destinations: ["one.example"]),
                pdu(room: "!a:hs.example", serial: 3, destinations: ["one.example"]),
            ]
            let receipt = try await outbox.accept(IngestBatch(txnID: "t1", pdus: pdus))
            #expect(receipt == IngestReceipt(streamOrdering: 3, isReplay: false, perPDU: [1, 2, 3]))
            #expect(outbox.maxStreamOrdering == 3)

            let stored = try await outbox.pendingPDUs(for: "one.example", after: 0, limit: 10)
            #expect(stored.map(\.streamOrdering) == [1, 2, 3])
            #expect(stored.map(\.canonicalJSON) == pdus.map(\.canonicalJSON))
            #expect(stored.map(\.roomID) == pdus.map(\.roomID))
            #expect(stored.map(\.eventID) == pdus.map(\.eventID))

            let second = try await outbox.accept(IngestBatch(txnID: "t2", pdus: [
                IncomingPDU(roomID: "!a:hs.example", eventID: nil, canonicalJSON: Array("{}".utf8),
                            destinations: ["one.example"]),
            ]))
            #expect(second.perPDU == [4])
            let afterTwo = try await outbox.pendingPDUs(for: "one.example", after: 2, limit: 10)
            #expect(afterTwo.map(\.streamOrdering) == [3, 4])
            #expect(afterTwo.last?.eventID == nil)
            let limited = try await outbox.pendingPDUs(for: "one.example", after: 0, limit: 2)
            #expect(limited.map(\.streamOrdering) == [1, 2])
        }
    }

    @Test func eachPDURefersToItsSetOfDestinationsAndIsStoredOnce() async throws {
        try await withTemporaryDirectory { directory in
            let outbox = try openOutbox(in: directory)
            defer { outbox.close() }
            _ = try await outbox.accept(IngestBatch(txnID: "t1", pdus: [
                pdu(room: "!r:hs.example", serial: 1, destinations: ["a.example", "b.example"]),
                pdu(room: "!r:hs.example", serial: 2, destinations: ["b.example"]),
                pdu(room: "!s:hs.example", serial: 3, destinations: ["a.example", "a.example", "c.example"]),
            ]))
            #expect(try await outbox.pendingPDUs(for: "a.example", after: 0, limit: 10).map(\.streamOrdering) == [1, 3])
            #expect(try await outbox.pendingPDUs(for: "b.example", after: 0, limit: 10).map(\.streamOrdering) == [1, 2])
            #expect(try await outbox.pendingPDUs(for: "c.example", after: 0, limit: 10).map(\.streamOrdering) == [3])
            #expect(try await outbox.pendingPDUs(for: "d.example", after: 0, limit: 10).isEmpty)
            let counts = try await outbox.rowCounts()
            #expect(counts == OutboxRowCounts(
                pdus: 3, destinationSets: 3, destinationSetMembers: 5, destinations: 3, ingestTransactions: 1))
            #expect(try await outbox.destination("c.example") == DestinationRecord(name: "c.example"))
            #expect(try await outbox.destination("d.example") == nil)
        }
    }

    @Test func aRepeatedTxnIDReturnsTheFirstReceiptAndStoresNothing() async throws {
        try await withTemporaryDirectory { directory in
            let outbox = try openOutbox(in: directory)
            defer { outbox.close() }
            let batch = IngestBatch(txnID: "txn-1", pdus: [
                pdu(room: "!r:hs.example", serial: 1, destinations: ["a.example"]),
                pdu(room: "!r:hs.example", serial: 2, destinations: ["a.example"]),
            ])
            let first = try await outbox.accept(batch)
            _ = try await outbox.accept(IngestBatch(txnID: "txn-2", pdus: [
                pdu(room: "!r:hs.example", serial: 3, destinations: ["a.example"]),
            ]))
            let countsBefore = try await outbox.rowCounts()
            let replay = try await outbox.accept(batch)
            #expect(replay == IngestReceipt(streamOrdering: first.streamOrdering, isReplay: true, perPDU: first.perPDU))
            #expect(replay.perPDU == [1, 2])
            let differentBody = IngestBatch(txnID: "txn-1", pdus: [
                pdu(room: "!other:hs.example", serial: 9, destinations: ["z.example"]),
            ])
            #expect(try await outbox.accept(differentBody) == replay)
            #expect(try await outbox.rowCounts() == countsBefore)
            #expect(outbox.maxStreamOrdering == 3)
        }
    }

    @Test func anEmptyBatchIsAnsweredWithTheCurrentMaximum() async throws {
        try await withTemporaryDirectory { directory in
            let outbox = try openOutbox(in: directory)
            defer { outbox.close() }
            #expect(try await outbox.accept(IngestBatch(txnID: "empty-0", pdus: [])).streamOrdering == 0)
            _ = try await outbox.accept(IngestBatch(txnID: "t", pdus: [
                pdu(room: "!r:hs.example", serial: 1, destinations: ["a.example"]),
            ]))
            let empty = try await outbox.accept(IngestBatch(txnID: "empty-1", pdus: []))
            #expect(empty == IngestReceipt(streamOrdering: 1, isReplay: false, perPDU: []))
            #expect(try await outbox.accept(IngestBatch(txnID: "empty-1", pdus: [])).isReplay)
        }
    }

    @Test("a request with nothing to store is answered without a write; a repeat among the last maxEphemeralTxnIDs gets the first answer")
    func acceptWithoutStoring() async throws {
        try await withTemporaryDirectory { directory in
            var limits = OutboxLimits()
            limits.maxEphemeralTxnIDs = 2
            let outbox = try openOutbox(in: directory, limits: limits)
            defer { outbox.close() }
            #expect(try outbox.acceptWithoutStoring(txnID: "e1") == IngestReceipt(streamOrdering: 0, isReplay: false, perPDU: []))
            _ = try await outbox.accept(IngestBatch(txnID: "t", pdus: [
                pdu(room: "!r:hs.example", serial: 1, destinations: ["a.example"]),
            ]))
            let commits = outbox.committedTransactionCount
            #expect(try outbox.acceptWithoutStoring(txnID: "e1") == IngestReceipt(streamOrdering: 0, isReplay: true, perPDU: []))
            #expect(try outbox.acceptWithoutStoring(txnID: "e2") == IngestReceipt(streamOrdering: 1, isReplay: false, perPDU: []))
            #expect(try outbox.acceptWithoutStoring(txnID: "e3").isReplay == false)
            // e1 was the oldest of three: forgotten, so it is a new request now.
            #expect(try outbox.acceptWithoutStoring(txnID: "e1") == IngestReceipt(streamOrdering: 1, isReplay: false, perPDU: []))
            #expect(try outbox.acceptWithoutStoring(txnID: "e3").isReplay)
            #expect(outbox.committedTransactionCount == commits)
            #expect(try await outbox.rowCounts().ingestTransactions == 1)
            #expect(throws: OutboxError.invalidBatch(txnID: "", field: "txn_id", rule: "must not be empty")) {
                try outbox.acceptWithoutStoring(txnID: "")
            }
        }
    }

    @Test func dataAndStreamOrderingSurviveCloseAndReopen() async throws {
        try await withTemporaryDirectory { directory in
            let first = try openOutbox(in: directory)
            let receipt = try await first.accept(IngestBatch(txnID: "t1", pdus: [
                pdu(room: "!r:hs.example", serial: 1, destinations: ["a.example"]),
                pdu(room: "!r:hs.example", serial: 2, destinations: ["a.example"]),
            ]))
            try await first.recordDelivered(destination: "a.example", upTo: 1)
            first.close()
            await #expect(throws: OutboxError.closed(path: "\(directory)/outbox.db")) {
                try await first.probe()
            }

            let reopened = try openOutbox(in: directory)
            #expect(reopened.maxStreamOrdering == 2)
            #expect(try await reopened.pendingPDUs(for: "a.example", after: 0, limit: 10).map(\.streamOrdering) == [1, 2])
            #expect(try await reopened.destination("a.example")?.lastSuccessfulStreamOrdering == 1)
            #expect(try await reopened.accept(IngestBatch(txnID: "t1", pdus: [])) == IngestReceipt(
                streamOrdering: receipt.streamOrdering, isReplay: true, perPDU: receipt.perPDU))
            let next = try await reopened.accept(IngestBatch(txnID: "t2", pdus: [
                pdu(room: "!r:hs.example", serial: 3, destinations: ["a.example"]),
            ]))
            #expect(next.perPDU == [3])

            try await reopened.recordDelivered(destination: "a.example", upTo: 3)
            _ = try await reopened.prune(RetentionPolicy(ingestTransactionsReceivedBefore: Int64.max))
            #expect(try await reopened.rowCounts().pdus == 0)
            reopened.close()

            let emptied = try openOutbox(in: directory)
            defer { emptied.close() }
            #expect(emptied.maxStreamOrdering == 3)
            let afterPrune = try await emptied.accept(IngestBatch(txnID: "t3", pdus: [
                pdu(room: "!r:hs.example", serial: 4, destinations: ["a.example"]),
            ]))
            #expect(afterPrune.perPDU == [4])
        }
    }

    @Test func concurrentAcceptsShareTransactions() async throws {
        try await withTemporaryDirectory { directory in
            let outbox = try openOutbox(in: directory)
            defer { outbox.close() }
            let receipts = try await withThrowingTaskGroup(of: IngestReceipt.self) { group in
                for serial in 1...200 {
                    group.addTask {
                        try await outbox.accept(IngestBatch(txnID: "txn-\(serial)", pdus: [
                            pdu(room: "!r:hs.example", serial: serial, destinations: ["a.example", "b.example"]),
                        ]))
                    }
                }
                var all: [IngestReceipt] = []
                for try await receipt in group {
                    all.append(receipt)
                }
                return all
            }
            #expect(receipts.count == 200)
            #expect(Set(receipts.map(\.streamOrdering)) == Set(1...200))
            #expect(outbox.maxStreamOrdering == 200)
            // Every PDU is for the same two servers: one set, stored once.
            #expect(try await outbox.rowCounts().destinationSets == 1)
            #expect(try await outbox.rowCounts().destinationSetMembers == 2)
            let transactions = outbox.committedTransactionCount
            #expect(transactions < 50, "200 concurrent accepts took \(transactions) transactions")
        }
    }

    @Test("storage.commit_window_ms: a lone write waits out the window; writes that fill a group commit together at once")
    func commitWindow() async throws {
        try await withTemporaryDirectory { directory in
            let outbox = try openOutbox(in: directory, limits: OutboxLimits(maxGroupWrites: 8, commitWindowMS: 1_000))
            defer { outbox.close() }
            let started = ContinuousClock.now
            _ = try await outbox.accept(IngestBatch(txnID: "alone", pdus: [
                pdu(room: "!r:hs.example", serial: 0, destinations: ["a.example"]),
            ]))
            #expect(ContinuousClock.now - started >= .milliseconds(1_000))
            let committedBefore = outbox.committedTransactionCount

            // Eight writes fill a group: they share one commit and none waits for the window.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for serial in 1...8 {
                    group.addTask {
                        _ = try await outbox.accept(IngestBatch(txnID: "txn-\(serial)", pdus: [
                            pdu(room: "!r:hs.example", serial: serial, destinations: ["a.example"]),
                        ]))
                    }
                }
                try await group.waitForAll()
            }
            #expect(outbox.committedTransactionCount - committedBefore == 1)
            #expect(outbox.maxStreamOrdering == 9)
        }
    }

    @Test(arguments: InvalidBatchCase.all)
    func anInvalidBatchIsRefusedAndLosesNothingAccepted(_ invalid: InvalidBatchCase) async throws {
        let batch = invalid.batch
        let field = invalid.field
        try await withTemporaryDirectory { directory in
            let outbox = try openOutbox(in: directory)
            defer { outbox.close() }
            let good = IngestBatch(txnID: "good", pdus: [pdu(room: "!r:hs", serial: 7, destinations: ["a.example"])])
            _ = try await outbox.accept(good)
            let countsBefore = try await outbox.rowCounts()
            do throws(OutboxError) {
                _ = try await outbox.accept(batch)
                Issue.record("accepted an invalid batch")
            } catch {
                guard case let .invalidBatch(_, reported, _) = error else {
                    Issue.record("unexpected error \(error)")
                    return
                }
                #expect(reported == field)
                #expect(error.description.contains(field))
            }
            #expect(try await outbox.rowCounts() == countsBefore)
            #expect(try await outbox.pendingPDUs(for: "a.example", after: 0, limit: 10).map(\.canonicalJSON)
                == good.pdus.map(\.canonicalJSON))
            let next = try await outbox.accept(IngestBatch(txnID: "after", pdus: [
                pdu(room: "!r:hs", serial: 8, destinations: ["a.example"]),
            ]))
            #expect(next.perPDU == [2])
        }
    }
}

/// A batch that breaks one rule, and the field path the error must name.
struct InvalidBatchCase: Sendable, CustomTestStringConvertible {
    let name: String
    let batch: IngestBatch
    let field: String

    var testDescription: String { name }

    static let all: [InvalidBatchCase] = [
        InvalidBatchCase(name: "empty txn id", batch: IngestBatch(txnID: "", pdus: []), field: "txn_id"),
        InvalidBatchCase(
            name: "PDU over 65536 bytes",
            batch: IngestBatch(txnID: "t", pdus: [
                IncomingPDU(roomID: "!r:hs", eventID: nil, canonicalJSON: [UInt8](repeating: 0x20, count: 65_537),
                            destinations: ["a.example"]),
            ]),
            field: "pdus[0].canonical_json"),
        InvalidBatchCase(
            name: "empty room id after a valid PDU",
            batch: IngestBatch(txnID: "t", pdus: [
                pdu(room: "!r:hs", serial: 1, destinations: ["a.example"]),
                IncomingPDU(roomID: "", eventID: nil, canonicalJSON: Array("{}".utf8), destinations: []),
            ]),
            field: "pdus[1].room_id"),
        InvalidBatchCase(
            name: "event id over 255 bytes",
            batch: IngestBatch(txnID: "t", pdus: [
                IncomingPDU(roomID: "!r:hs", eventID: String(repeating: "e", count: 256),
                            canonicalJSON: Array("{}".utf8), destinations: []),
            ]),
            field: "pdus[0].event_id"),
        InvalidBatchCase(
            name: "empty canonical JSON",
            batch: IngestBatch(txnID: "t", pdus: [
                IncomingPDU(roomID: "!r:hs", eventID: nil, canonicalJSON: [], destinations: []),
            ]),
            field: "pdus[0].canonical_json"),
        InvalidBatchCase(
            name: "empty destination",
            batch: IngestBatch(txnID: "t", pdus: [pdu(room: "!r:hs", serial: 1, destinations: ["a.example", ""])]),
            field: "pdus[0].destinations[1]"),
        InvalidBatchCase(
            name: "too many PDUs",
            batch: IngestBatch(txnID: "t", pdus: (1...1_001).map { pdu(room: "!r:hs", serial: $0, destinations: []) }),
            field: "pdus"),
        InvalidBatchCase(
            name: "empty EDU type",
            batch: IngestBatch(txnID: "t", pdus: [], edus: [
                IncomingEDU(eduType: "", canonicalJSON: Array("{}".utf8), destinations: ["a.example"]),
            ]),
            field: "edus[0].edu_type"),
        InvalidBatchCase(
            name: "EDU type over 255 bytes",
            batch: IngestBatch(txnID: "t", pdus: [], edus: [
                edu(serial: 1, destinations: ["a.example"]),
                IncomingEDU(eduType: String(repeating: "m", count: 256), canonicalJSON: Array("{}".utf8),
                            destinations: ["a.example"]),
            ]),
            field: "edus[1].edu_type"),
        InvalidBatchCase(
            name: "EDU over 65536 bytes",
            batch: IngestBatch(txnID: "t", pdus: [pdu(room: "!r:hs", serial: 1, destinations: ["a.example"])], edus: [
                IncomingEDU(eduType: "m.direct_to_device", canonicalJSON: [UInt8](repeating: 0x20, count: 65_537),
                            destinations: ["a.example"]),
            ]),
            field: "edus[0].canonical_json"),
        InvalidBatchCase(
            name: "empty EDU canonical JSON",
            batch: IngestBatch(txnID: "t", pdus: [], edus: [
                IncomingEDU(eduType: "m.direct_to_device", canonicalJSON: [], destinations: ["a.example"]),
            ]),
            field: "edus[0].canonical_json"),
        InvalidBatchCase(
            name: "EDU destination over 255 bytes",
            batch: IngestBatch(txnID: "t", pdus: [], edus: [
                edu(serial: 1, destinations: ["a.example"]),
                edu(serial: 2, destinations: ["b.example"]),
                edu(serial: 3, destinations: [String(repeating: "d", count: 256), "a.example"]),
            ]),
            field: "edus[2].destinations[0]"),
        InvalidBatchCase(
            name: "empty EDU destination",
            batch: IngestBatch(txnID: "t", pdus: [], edus: [edu(serial: 1, destinations: ["a.example", ""])]),
            field: "edus[0].destinations[1]"),
        InvalidBatchCase(
            name: "EDUs take the batch over 8 MiB",
            batch: IngestBatch(txnID: "t", pdus: [pdu(room: "!r:hs", serial: 1, destinations: ["a.example"])],
                               edus: (1...128).map { _ in
                                   IncomingEDU(eduType: "m.direct_to_device",
                                               canonicalJSON: [UInt8](repeating: 0x20, count: 65_536),
                                               destinations: ["a.example"])
                               }),
            field: "edus"),
    ]
}
