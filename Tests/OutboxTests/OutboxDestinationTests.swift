import Synchronization
import Testing
@testable import Outbox

@Suite struct OutboxDestinationTests {
    @Test func recordDeliveredOnlyMovesForwardAndClearsBackoff() async throws {
        try await withTemporaryDirectory { directory in
            let outbox = try openOutbox(in: directory)
            defer { outbox.close() }
            _ = try await outbox.accept(IngestBatch(txnID: "t", pdus: (1...4).map {
                pdu(room: "!r:hs.example", serial: $0, destinations: ["a.example"])
            }))
            try await outbox.recordFailure(destination: "a.example", retryLastTS: 5_000, retryIntervalMS: 600_000)
            try await outbox.recordFailure(destination: "a.example", retryLastTS: 6_000, retryIntervalMS: 1_200_000)
            #expect(try await outbox.destination("a.example") == DestinationRecord(
                name: "a.example", lastSuccessfulStreamOrdering: 0, retryLastTS: 6_000, retryIntervalMS: 1_200_000,
                failureCount: 2))

            try await outbox.recordDelivered(destination: "a.example", upTo: 3)
            #expect(try await outbox.destination("a.example") == DestinationRecord(
                name: "a.example", lastSuccessfulStreamOrdering: 3))
            try await outbox.recordDelivered(destination: "a.example", upTo: 2)
            #expect(try await outbox.destination("a.example")?.lastSuccessfulStreamOrdering == 3)
            try await outbox.recordDelivered(destination: "a.example", upTo: 4)
            #expect(try await outbox.destination("a.example")?.lastSuccessfulStreamOrdering == 4)

            await #expect(throws: OutboxError.streamOrderingBeyondMaximum(
                destination: "a.example", streamOrdering: 5, maximum: 4)) {
                try await outbox.recordDelivered(destination: "a.example", upTo: 5)
            }
            #expect(try await outbox.destination("a.example")?.lastSuccessfulStreamOrdering == 4)
        }
    }

    @Test func resetBackoffClearsRetryStateButKeepsTheDeliveredMark() async throws {
        try await withTemporaryDirectory { directory in
            let outbox = try openOutbox(in: directory)
            defer { outbox.close() }
            _ = try await outbox.accept(IngestBatch(txnID: "t", pdus: [
                pdu(room: "!r:hs.example", serial: 1, destinations: ["a.example"]),
            ]))
            try await outbox.recordDelivered(destination: "a.example", upTo: 1)
            try await outbox.recordFailure(destination: "a.example", retryLastTS: 9_000, retryIntervalMS: 60_000)
            #expect(try await outbox.resetBackoff(destination: "a.example") == .cleared)
            #expect(try await outbox.destination("a.example") == DestinationRecord(
                name: "a.example", lastSuccessfulStreamOrdering: 1))
            #expect(try await outbox.resetBackoff(destination: "a.example") == .notBackingOff)
            #expect(try await outbox.resetBackoff(destination: "unknown.example") == .unknown)
            #expect(try await outbox.destination("unknown.example") == nil)
        }
    }

    @Test func aCommitNamesTheDestinationsItCreatedARecordFor() async throws {
        try await withTemporaryDirectory { directory in
            let outbox = try openOutbox(in: directory)
            defer { outbox.close() }
            let created = Mutex<[Set<String>]>([])
            outbox.observeCommits { commit in created.withLock { $0.append(commit.createdDestinations) } }
            _ = try await outbox.accept(IngestBatch(txnID: "t1", pdus: [
                pdu(room: "!r:hs.example", serial: 1, destinations: ["a.example", "b.example"]),
            ]))
            try await outbox.recordFailure(destination: "failed.example", retryLastTS: 5_000, retryIntervalMS: 60_000)
            _ = try await outbox.accept(IngestBatch(txnID: "t2", pdus: [
                pdu(room: "!s:hs.example", serial: 2, destinations: ["b.example", "c.example", "failed.example"]),
            ], edus: [edu(serial: 3, destinations: ["a.example", "d.example"])]))
            // The same set again: no record is created.
            _ = try await outbox.accept(IngestBatch(txnID: "t3", pdus: [
                pdu(room: "!r:hs.example", serial: 4, destinations: ["a.example", "b.example"]),
            ]))
            #expect(created.withLock { $0 } == [["a.example", "b.example"], ["c.example", "d.example"], []])
        }
    }

    @Test func destinationsWithPendingWorkListsOnlyThoseBehind() async throws {
        try await withTemporaryDirectory { directory in
            let outbox = try openOutbox(in: directory)
            defer { outbox.close() }
            _ = try await outbox.accept(IngestBatch(txnID: "t", pdus: [
                pdu(room: "!r:hs.example", serial: 1, destinations: ["a.example", "b.example", "c.example"]),
                pdu(room: "!r:hs.example", serial: 2, destinations: ["b.example", "d.example"]),
            ]))
            try await outbox.recordFailure(destination: "never-sent.example", retryLastTS: 1, retryIntervalMS: 2)
            try await outbox.recordDelivered(destination: "a.example", upTo: 1)
            try await outbox.recordDelivered(destination: "b.example", upTo: 1)
            try await outbox.recordFailure(destination: "d.example", retryLastTS: 7_000, retryIntervalMS: 30_000)

            let pending = try await outbox.destinationsWithPendingWork()
            #expect(pending == [
                DestinationRecord(name: "b.example", lastSuccessfulStreamOrdering: 1),
                DestinationRecord(name: "c.example"),
                DestinationRecord(name: "d.example", retryLastTS: 7_000, retryIntervalMS: 30_000, failureCount: 1),
            ])
            #expect(try await outbox.destinationsWithPendingWork(limit: 2).map(\.name) == ["b.example", "c.example"])
            #expect(try await outbox.destinationsWithPendingWork(after: "c.example", limit: 2).map(\.name) == ["d.example"])

            try await outbox.recordDelivered(destination: "b.example", upTo: 2)
            try await outbox.recordDelivered(destination: "c.example", upTo: 2)
            try await outbox.recordDelivered(destination: "d.example", upTo: 2)
            #expect(try await outbox.destinationsWithPendingWork().isEmpty)
        }
    }

    @Test func destinationsWithPendingWorkListsThoseOwedOnlyEDUs() async throws {
        try await withTemporaryDirectory { directory in
            let outbox = try openOutbox(in: directory)
            defer { outbox.close() }
            _ = try await outbox.accept(IngestBatch(txnID: "t", pdus: [
                pdu(room: "!r:hs.example", serial: 1, destinations: ["a.example", "b.example"]),
            ], edus: [
                edu(serial: 1, destinations: ["b.example", "c.example"]),
            ]))
            try await outbox.recordDelivered(destination: "b.example", upTo: 1)
            try await outbox.recordFailure(destination: "c.example", retryLastTS: 7_000, retryIntervalMS: 30_000)
            #expect(try await outbox.destinationsWithPendingWork() == [
                DestinationRecord(name: "a.example"),
                DestinationRecord(name: "b.example", lastSuccessfulStreamOrdering: 1),
                DestinationRecord(name: "c.example", retryLastTS: 7_000, retryIntervalMS: 30_000, failureCount: 1),
            ])
            #expect(try await outbox.destinationsWithPendingWork(after: "a.example", limit: 1).map(\.name)
                == ["b.example"])

            try await outbox.recordEDUsDelivered(destination: "b.example", eduIDs: [1])
            try await outbox.recordEDUsDelivered(destination: "c.example", eduIDs: [1])
            #expect(try await outbox.destinationsWithPendingWork().map(\.name) == ["a.example"])
        }
    }

    @Test func aQuietRoomsSetOutlivesItsPDUsForTheGrace() async throws {
        try await withTemporaryDirectory { directory in
            let hour: Int64 = 3_600_000
            let clock = TestClock(hour)
            let outbox = try openOutbox(in: directory, clock: clock)
            defer { outbox.close() }
            let room = (0..<50).map { "s\($0).example" }
            let first = try await outbox.accept(IngestBatch(txnID: "t1", pdus: [pdu(room: "!r:hs", serial: 1, destinations: room)]))
            for name in room { try await outbox.recordDelivered(destination: name, upTo: first.streamOrdering) }
            // Delivered everywhere, the PDU goes; its set, used a moment ago, stays.
            #expect(try await outbox.prune().rowsDeleted == 1)
            #expect(try await outbox.rowCounts().destinationSetMembers == 50)
            // The room's next message within the hour finds it, with no row per server written again.
            clock.set(hour + hour / 2)
            _ = try await outbox.accept(IngestBatch(txnID: "t2", pdus: [pdu(room: "!r:hs", serial: 2, destinations: room)]))
            #expect(try await outbox.rowCounts().destinationSets == 1)
            for name in room { try await outbox.recordDelivered(destination: name, upTo: 2) }
            #expect(try await outbox.prune().rowsDeleted == 1)
            // An hour after its last use, unused, it goes, and a PDU for the same servers makes it anew.
            clock.set(3 * hour)
            #expect(try await outbox.prune().rowsDeleted == 1)
            #expect(try await outbox.rowCounts().destinationSetMembers == 0)
            let third = try await outbox.accept(IngestBatch(txnID: "t3", pdus: [pdu(room: "!r:hs", serial: 3, destinations: room)]))
            #expect(try await outbox.pendingPDUs(for: "s7.example", after: 2, limit: 10).map(\.streamOrdering) == third.perPDU)
            #expect(try await outbox.rowCounts().destinationSetMembers == 50)
        }
    }

    @Test func aPDUForNoDestinationIsPruned() async throws {
        try await withTemporaryDirectory { directory in
            let outbox = try openOutbox(in: directory, limits: .setsGoWhenUnused())
            defer { outbox.close() }
            _ = try await outbox.accept(IngestBatch(txnID: "t1", pdus: [
                pdu(room: "!r:hs.example", serial: 1, destinations: []),
                pdu(room: "!r:hs.example", serial: 2, destinations: ["a.example"]),
            ]))
            #expect(try await outbox.prune().rowsDeleted == 1 + 1)
            #expect(try await outbox.rowCounts() == OutboxRowCounts(
                pdus: 1, destinationSets: 1, destinationSetMembers: 1, destinations: 1, ingestTransactions: 1))
        }
    }

    @Test func pruneDeletesWhatEveryDestinationIsPast() async throws {
        try await withTemporaryDirectory { directory in
            // Txn ids are forgotten by whole days: t1 arrives on day 1, t2 on day 2.
            let day: Int64 = 86_400_000
            let clock = TestClock(day + 10_000)
            let outbox = try openOutbox(in: directory, limits: .setsGoWhenUnused(pruneStepRows: 2), clock: clock)
            defer { outbox.close() }
            _ = try await outbox.accept(IngestBatch(txnID: "t1", pdus: (1...5).map {
                pdu(room: "!r:hs.example", serial: $0, destinations: ["a.example", "b.example"])
            }))
            clock.set(2 * day + 20_000)
            _ = try await outbox.accept(IngestBatch(txnID: "t2", pdus: [
                pdu(room: "!r:hs.example", serial: 6, destinations: ["a.example"]),
            ]))
            #expect(try await outbox.prune().rowsDeleted == 0)

            try await outbox.recordDelivered(destination: "a.example", upTo: 6)
            try await outbox.recordDelivered(destination: "b.example", upTo: 3)
            // PDUs 1-3 (both are past them) and 6 (a is), then the set {a} that only PDU 6 used.
            #expect(try await outbox.prune().rowsDeleted == 4 + 1)
            #expect(try await outbox.rowCounts() == OutboxRowCounts(
                pdus: 2, destinationSets: 1, destinationSetMembers: 2, destinations: 2, ingestTransactions: 2))
            let remaining = try await outbox.pendingPDUs(for: "b.example", after: 3, limit: 10)
            #expect(remaining.map(\.streamOrdering) == [4, 5])
            #expect(remaining.map(\.canonicalJSON) == [
                pdu(room: "!r:hs.example", serial: 4, destinations: []).canonicalJSON,
                pdu(room: "!r:hs.example", serial: 5, destinations: []).canonicalJSON,
            ])

            try await outbox.recordDelivered(destination: "b.example", upTo: 5)
            #expect(try await outbox.prune(RetentionPolicy(ingestTransactionsReceivedBefore: 2 * day + 15_000)).rowsDeleted == 2 + 1 + 1)
            #expect(try await outbox.rowCounts() == OutboxRowCounts(
                pdus: 0, destinationSets: 0, destinationSetMembers: 0, destinations: 2, ingestTransactions: 1))
            let next = try await outbox.accept(IngestBatch(txnID: "t3", pdus: [
                pdu(room: "!r:hs.example", serial: 7, destinations: ["a.example"]),
            ]))
            #expect(next.perPDU == [7])
            #expect(try await outbox.accept(IngestBatch(txnID: "t2", pdus: [])).isReplay)
        }
    }
}
