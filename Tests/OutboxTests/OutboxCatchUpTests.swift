import Testing
@testable import Outbox

@Suite struct OutboxCatchUpTests {
    /// Stream orderings 1…6: A1, B1, A2, C1, B2 for x.example (and some for y.example), then D1 for y.example only.
    private static let pdus = [
        pdu(room: "!a:hs.example", serial: 1, destinations: ["x.example"]),
        pdu(room: "!b:hs.example", serial: 2, destinations: ["x.example", "y.example"]),
        pdu(room: "!a:hs.example", serial: 3, destinations: ["x.example"]),
        pdu(room: "!c:hs.example", serial: 4, destinations: ["x.example", "y.example"]),
        pdu(room: "!b:hs.example", serial: 5, destinations: ["x.example"]),
        pdu(room: "!d:hs.example", serial: 6, destinations: ["y.example"]),
    ]

    @Test(arguments: [
        CatchUpCase(after: 0, limit: 50, expected: [3, 4, 5]),
        CatchUpCase(after: 3, limit: 50, expected: [4, 5]),
        CatchUpCase(after: 0, limit: 2, expected: [3, 4]),
        CatchUpCase(after: 4, limit: 1, expected: [5]),
        CatchUpCase(after: 5, limit: 50, expected: []),
        CatchUpCase(after: 0, limit: 0, expected: []),
    ])
    func catchUpReturnsTheNewestPDUOfEachRoomBeyondTheMark(_ catchUp: CatchUpCase) async throws {
        try await withTemporaryDirectory { directory in
            let outbox = try openOutbox(in: directory)
            defer { outbox.close() }
            _ = try await outbox.accept(IngestBatch(txnID: "t", pdus: Self.pdus))
            let found = try await outbox.catchUpPDUs(for: "x.example", after: catchUp.after, limit: catchUp.limit)
            #expect(found.map(\.streamOrdering) == catchUp.expected)
            #expect(found.map(\.canonicalJSON) == catchUp.expected.map { Self.pdus[Int($0) - 1].canonicalJSON })
            #expect(found.map(\.roomID) == catchUp.expected.map { Self.pdus[Int($0) - 1].roomID })
            #expect(found.map(\.eventID) == catchUp.expected.map { Self.pdus[Int($0) - 1].eventID })
        }
    }

    @Test func catchUpSeesPDUsIngestedAfterAnEarlierRead() async throws {
        try await withTemporaryDirectory { directory in
            let outbox = try openOutbox(in: directory)
            defer { outbox.close() }
            _ = try await outbox.accept(IngestBatch(txnID: "t1", pdus: Self.pdus))
            #expect(try await outbox.catchUpPDUs(for: "x.example", after: 0, limit: 50).map(\.streamOrdering) == [3, 4, 5])

            _ = try await outbox.accept(IngestBatch(txnID: "t2", pdus: [
                pdu(room: "!a:hs.example", serial: 7, destinations: ["x.example"]),
                pdu(room: "!e:hs.example", serial: 8, destinations: ["x.example"]),
            ]))
            let after = try await outbox.catchUpPDUs(for: "x.example", after: 0, limit: 50)
            #expect(after.map(\.streamOrdering) == [4, 5, 7, 8])
            #expect(after.map(\.roomID) == ["!c:hs.example", "!b:hs.example", "!a:hs.example", "!e:hs.example"])
            #expect(try await outbox.catchUpPDUs(for: "y.example", after: 0, limit: 50).map(\.streamOrdering) == [2, 4, 6])
        }
    }

    @Test func pruningKeepsEveryPDUCatchUpStillOwesAndDropsTheRest() async throws {
        try await withTemporaryDirectory { directory in
            let outbox = try openOutbox(in: directory, limits: .setsGoWhenUnused(pruneStepRows: 2))
            defer { outbox.close() }
            _ = try await outbox.accept(IngestBatch(txnID: "t", pdus: Self.pdus))
            // y.example has everything; x.example is behind from stream ordering 3 on.
            try await outbox.recordDelivered(destination: "y.example", upTo: 6)
            try await outbox.recordDelivered(destination: "x.example", upTo: 3)
            let owed = try await outbox.catchUpPDUs(for: "x.example", after: 3, limit: 50)
            #expect(owed.map(\.streamOrdering) == [4, 5])

            // PDUs 1, 2, 3 and 6 are needed by nobody, nor then is the set {y} of PDU 6.
            #expect(try await outbox.prune().rowsDeleted == 4 + 1)
            #expect(try await outbox.rowCounts() == OutboxRowCounts(
                pdus: 2, destinationSets: 2, destinationSetMembers: 3, destinations: 2, ingestTransactions: 1))
            #expect(try await outbox.catchUpPDUs(for: "x.example", after: 3, limit: 50) == owed)
            #expect(try await outbox.pendingPDUs(for: "x.example", after: 3, limit: 50) == owed)
            // Rows pointing at pruned PDUs are ones the destination is already past: an old mark just skips them.
            #expect(try await outbox.catchUpPDUs(for: "x.example", after: 0, limit: 50) == owed)
            #expect(try await outbox.catchUpPDUs(for: "y.example", after: 6, limit: 50).isEmpty)

            try await outbox.recordDelivered(destination: "x.example", upTo: 5)
            #expect(try await outbox.prune().rowsDeleted == 2 + 2)
            #expect(try await outbox.rowCounts().pdus == 0)
            #expect(try await outbox.catchUpPDUs(for: "x.example", after: 5, limit: 50).isEmpty)
        }
    }
}

/// One catch-up read of `OutboxCatchUpTests.pdus` for x.example and the stream orderings it must return.
struct CatchUpCase: Sendable, CustomTestStringConvertible {
    let after: Int64
    let limit: Int
    let expected: [Int64]

    var testDescription: String { "after \(after), limit \(limit)" }
}
