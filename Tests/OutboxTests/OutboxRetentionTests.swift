import Testing
@testable import Outbox

@Suite struct OutboxRetentionTests {
    private static let room = ["live.example", "dead.example"]
    private static let hour: Int64 = 3_600_000

    /// Stream orderings 1…5: A, B, A, A, B for both servers of the room.
    private static let pdus = [
        pdu(room: "!a:hs.example", serial: 1, destinations: room),
        pdu(room: "!b:hs.example", serial: 2, destinations: room),
        pdu(room: "!a:hs.example", serial: 3, destinations: room),
        pdu(room: "!a:hs.example", serial: 4, destinations: room),
        pdu(room: "!b:hs.example", serial: 5, destinations: room),
    ]

    @Test func aDestinationCatchingUpKeepsOnlyTheNewestPDUOfEachRoom() async throws {
        try await withTemporaryDirectory { directory in
            let outbox = try openOutbox(in: directory, limits: OutboxLimits(pruneStepRows: 1))
            defer { outbox.close() }
            _ = try await outbox.accept(IngestBatch(txnID: "t", pdus: Self.pdus))
            try await outbox.recordDelivered(destination: "live.example", upTo: 5)
            let policy = RetentionPolicy(catchUpAfterMS: Self.hour)

            // Backing off, but not yet for long enough to be caught up: it will be sent every PDU.
            try await outbox.recordFailure(destination: "dead.example", retryLastTS: 1_000, retryIntervalMS: Self.hour)
            #expect(try await outbox.prune(policy).rowsDeleted == 0)
            #expect(try await outbox.rowCounts().pdus == 5)

            try await outbox.recordFailure(destination: "dead.example", retryLastTS: 1_000, retryIntervalMS: 2 * Self.hour)
            let owed = try await outbox.catchUpPDUs(for: "dead.example", after: 0, limit: 50)
            #expect(owed.map(\.streamOrdering) == [4, 5])
            let report = try await outbox.prune(policy)
            #expect(report.rowsDeleted == 3)
            #expect(!report.droppedUnits, "PDUs a catch-up never sends are not counted as dropped")
            #expect(try await outbox.pendingPDUs(for: "dead.example", after: 0, limit: 50) == owed)
            #expect(try await outbox.catchUpPDUs(for: "dead.example", after: 0, limit: 50) == owed)
        }
    }

    @Test func aLiveDestinationBehindKeepsEveryPDUItHasNotHad() async throws {
        try await withTemporaryDirectory { directory in
            let clock = TestClock(1_000)
            let outbox = try openOutbox(in: directory, clock: clock)
            defer { outbox.close() }
            _ = try await outbox.accept(IngestBatch(txnID: "t", pdus: Self.pdus))
            try await outbox.recordDelivered(destination: "live.example", upTo: 2)
            try await outbox.recordFailure(destination: "dead.example", retryLastTS: 1_000, retryIntervalMS: 2 * Self.hour)
            clock.set(1_000 + 10 * Self.hour)
            let report = try await outbox.prune(RetentionPolicy(catchUpAfterMS: Self.hour, maxAgeMS: Self.hour))
            // 1 and 2: the live server has them and the dead one will only be sent 4 and 5.
            #expect(report.rowsDeleted == 2)
            #expect(!report.droppedUnits)
            #expect(try await outbox.pendingPDUs(for: "live.example", after: 2, limit: 50).map(\.streamOrdering) == [3, 4, 5])
        }
    }

    @Test func unitsOlderThanTheMaximumAgeOwedOnlyToBackingOffDestinationsAreDroppedAndCounted() async throws {
        try await withTemporaryDirectory { directory in
            let clock = TestClock(1_000)
            let outbox = try openOutbox(in: directory, clock: clock)
            defer { outbox.close() }
            _ = try await outbox.accept(IngestBatch(txnID: "old", pdus: Array(Self.pdus[0..<2]), edus: [
                edu(serial: 1, destinations: Self.room),
            ]))
            clock.set(1_000 + 10 * Self.hour)
            _ = try await outbox.accept(IngestBatch(txnID: "new", pdus: Array(Self.pdus[2...]), edus: [
                edu(serial: 2, destinations: Self.room),
            ]))
            // The old batch's EDU took stream ordering 3, so the new batch's PDUs are 4 to 6.
            try await outbox.recordDelivered(destination: "live.example", upTo: 6)
            try await outbox.recordEDUsDelivered(destination: "live.example", eduIDs: [1, 2])
            try await outbox.recordFailure(destination: "dead.example", retryLastTS: 1_000, retryIntervalMS: 600_000)

            let report = try await outbox.prune(RetentionPolicy(maxAgeMS: 5 * Self.hour))
            #expect(report.pdusDropped == 2)
            #expect(report.eduCopiesDropped == 1)
            #expect(outbox.droppedPDUCount == 2)
            #expect(outbox.droppedEDUCopyCount == 1)
            #expect(try await outbox.pendingPDUs(for: "dead.example", after: 0, limit: 50).map(\.streamOrdering) == [4, 5, 6])
            #expect(try await outbox.pendingEDUs(for: "dead.example", limit: 50).map(\.eduID) == [2])
            #expect(try await outbox.rowCounts().edus == 1)
        }
    }

    @Test func pastItsByteLimitTheOutboxDropsTheOldestUnitsOfBackingOffDestinationsThenRefusesIngest() async throws {
        try await withTemporaryDirectory { directory in
            let limits = OutboxLimits(pruneStepRows: 50, maxBytes: 256 << 10)
            let outbox = try openOutbox(in: directory, limits: limits)
            defer { outbox.close() }
            try await outbox.recordFailure(destination: "dead.example", retryLastTS: 1_000, retryIntervalMS: 600_000)
            var serial = 0
            func fill(for destinations: [String]) async throws {
                while outbox.usedBytes < limits.maxBytes {
                    let batch = (0..<20).map { _ in
                        serial += 1
                        return pdu(room: "!r\(serial % 7):hs.example", serial: serial, destinations: destinations)
                    }
                    _ = try await outbox.accept(IngestBatch(txnID: "t\(serial)", pdus: batch))
                }
            }
            try await fill(for: ["dead.example"])
            let accepted = serial
            await #expect(throws: OutboxError.storageLimitReached(
                path: outbox.path, usedBytes: outbox.usedBytes, limit: limits.maxBytes)) {
                _ = try await outbox.accept(IngestBatch(txnID: "refused", pdus: [
                    pdu(room: "!r:hs.example", serial: 0, destinations: ["dead.example"]),
                ]))
            }

            let report = try await outbox.prune()
            #expect(report.pdusDropped > 0)
            #expect(report.usedBytes <= limits.maxBytes / 100 * OutboxLimits.pruneTargetPercent)
            let kept = try await outbox.pendingPDUs(for: "dead.example", after: 0, limit: .max)
            #expect(kept.count == accepted - report.pdusDropped)
            #expect(kept.first?.streamOrdering == Int64(report.pdusDropped) + 1, "the oldest go first")

            // Once what is left is owed to a destination that is not backing off, nothing more can go.
            var rounds = 0
            repeat {
                try await fill(for: ["live.example"])
                rounds += 1
            } while try await outbox.prune().pdusDropped > 0 && rounds < 20
            #expect(try await outbox.pendingPDUs(for: "dead.example", after: 0, limit: .max).isEmpty)
            await #expect(throws: OutboxError.self) {
                _ = try await outbox.accept(IngestBatch(txnID: "refused again", pdus: [
                    pdu(room: "!r:hs.example", serial: 0, destinations: ["live.example"]),
                ]))
            }
            #expect(try await outbox.pendingPDUs(for: "live.example", after: 0, limit: .max).count == serial - accepted)
        }
    }

    /// 100,000 PDUs through a room of 30 servers, 10 of them dead all along: they are caught up with the newest PDU
    /// of each room only, so once pruning runs the file stops growing.
    @Test func pastItsByteLimitASetWhosePDUsWereDroppedGoesAtOnce() async throws {
        try await withTemporaryDirectory { directory in
            let limits = OutboxLimits(pruneStepRows: 50, maxBytes: 256 << 10)
            let outbox = try openOutbox(in: directory, limits: limits)
            defer { outbox.close() }
            for name in ["old.example", "dead.example"] {
                try await outbox.recordFailure(destination: name, retryLastTS: 1_000, retryIntervalMS: 600_000)
            }
            // A few PDUs for {old}, the oldest, then {dead}'s until the budget is used.
            _ = try await outbox.accept(IngestBatch(txnID: "old", pdus: (1...20).map {
                pdu(room: "!old:hs.example", serial: $0, destinations: ["old.example"])
            }))
            var serial = 20
            while outbox.usedBytes < limits.maxBytes {
                let batch = (0..<20).map { _ in
                    serial += 1
                    return pdu(room: "!r:hs.example", serial: serial, destinations: ["dead.example"])
                }
                _ = try await outbox.accept(IngestBatch(txnID: "t\(serial)", pdus: batch))
            }
            let report = try await outbox.prune()
            #expect(report.pdusDropped >= 20)
            // {old} was used a moment ago, but with its PDUs dropped for the budget its rows go too.
            #expect(try await outbox.pendingPDUs(for: "old.example", after: 0, limit: 10).isEmpty)
            #expect(try await outbox.rowCounts().destinationSets == 1)
        }
    }

    @Test func theFileLevelsOffWhileAThirdOfTheRoomIsDead() async throws {
        try await withTemporaryDirectory { directory in
            let outbox = try openOutbox(in: directory, limits: OutboxLimits(pruneStepRows: 2_000))
            defer { outbox.close() }
            let live = (0..<20).map { "live\($0).example" }
            let dead = (0..<10).map { "dead\($0).example" }
            let policy = RetentionPolicy(catchUpAfterMS: Self.hour)
            var fileSizes: [Int64] = []
            var serial = 0
            for round in 0..<20 {
                for _ in 0..<5 {
                    let batch = (0..<1_000).map { _ in
                        serial += 1
                        return pdu(room: "!r\(serial % 5):hs.example", serial: serial, destinations: live + dead)
                    }
                    let receipt = try await outbox.accept(IngestBatch(txnID: "t\(serial)", pdus: batch))
                    try await outbox.recordDeliveries(live.map {
                        Outbox.Delivery(destination: $0, upTo: receipt.streamOrdering, eduIDs: [])
                    })
                }
                if round == 0 {
                    for name in dead {
                        try await outbox.recordFailure(destination: name, retryLastTS: 1_000, retryIntervalMS: 2 * Self.hour)
                    }
                }
                _ = try await outbox.prune(policy)
                // The database, its WAL and the PDU log's segments: what the disk holds.
                fileSizes.append(outbox.fileBytes)
            }
            #expect(serial == 100_000)
            #expect(try await outbox.rowCounts().pdus == 5)
            #expect(try await outbox.catchUpPDUs(for: dead[0], after: 0, limit: 50).map(\.streamOrdering)
                == (99_996...100_000).map { Int64($0) })
            // Pages freed by one prune hold the next interval's PDUs: after the first few rounds the file keeps its size.
            #expect(fileSizes.last! <= fileSizes[2] + fileSizes[2] / 10, "file size after each prune: \(fileSizes)")
            #expect(fileSizes.last! < 8 << 20, "file size after each prune: \(fileSizes)")
        }
    }
}
