import Testing
@testable import Outbox

@Suite struct OutboxReplicationTests {
    @Test func federationRowsReadEveryStoredUnitByStreamOrderingThroughTheirOwnConnection() async throws {
        try await withTemporaryDirectory { directory in
            let outbox = try openOutbox(in: directory)
            defer { outbox.close() }
            _ = try await outbox.accept(IngestBatch(txnID: "t1", pdus: [
                pdu(room: "!r:hs.example", serial: 1, destinations: ["a.example", "b.example", "a.example"]),
                pdu(room: "!s:hs.example", serial: 2, destinations: ["a.example"]),
            ], edus: [edu(serial: 1, destinations: ["b.example", "c.example"])]))
            _ = try await outbox.accept(IngestBatch(txnID: "t2", pdus: [], edus: [edu(type: "m.device_list_update", serial: 2, destinations: ["a.example"])]))
            let reader = try OutboxReader(path: outbox.path)
            defer { reader.close() }
            #expect(try reader.federationRows(after: 0, upTo: 4, limit: 10) == [
                FederationStreamRow(streamOrdering: 1, kind: "pdu", roomID: "!r:hs.example", eventID: "$1:r:hs.example", destinationCount: 2),
                FederationStreamRow(streamOrdering: 2, kind: "pdu", roomID: "!s:hs.example", eventID: "$2:s:hs.example", destinationCount: 1),
                FederationStreamRow(streamOrdering: 3, kind: "m.direct_to_device", roomID: nil, eventID: nil, destinationCount: 2),
                FederationStreamRow(streamOrdering: 4, kind: "m.device_list_update", roomID: nil, eventID: nil, destinationCount: 1),
            ])
            #expect(try reader.federationRows(after: 1, upTo: 3, limit: 1).map(\.streamOrdering) == [2])
            #expect(try reader.federationRows(after: 2, upTo: 3, limit: 10).map(\.streamOrdering) == [3])
            // Delivered EDU copies go, the count the stream reports stays.
            try await outbox.recordEDUsDelivered(destination: "b.example", eduIDs: [1])
            #expect(try reader.federationRows(after: 2, upTo: 3, limit: 10).map(\.destinationCount) == [2])
        }
    }

    @Test func destinationChangesAreNumberedKeptUpToTheLimitAndSurviveAReopen() async throws {
        try await withTemporaryDirectory { directory in
            var limits = OutboxLimits()
            limits.maxDestinationChangesKept = 3
            let outbox = try openOutbox(in: directory, limits: limits)
            _ = try await outbox.accept(IngestBatch(txnID: "t1", pdus: [pdu(room: "!r:hs.example", serial: 1, destinations: ["a.example"])]))
            try await outbox.recordFailure(destination: "a.example", retryLastTS: 5, retryIntervalMS: 600)
            let first = try await outbox.recordDestinationChange(
                destination: "a.example", state: "backoff", retryIntervalMS: 600, failureCount: nil, lastSuccessfulStreamOrdering: 0)
            #expect(first == DestinationChange(changeID: 1, destination: "a.example", state: "backoff", retryIntervalMS: 600,
                                               failureCount: 1, lastSuccessfulStreamOrdering: 0))
            for index in 2...5 {
                try await outbox.recordDestinationChange(destination: "b.example", state: "up", retryIntervalMS: 0, failureCount: 0,
                                                         lastSuccessfulStreamOrdering: Int64(index))
            }
            #expect(outbox.maxDestinationChangeID == 5)
            outbox.close()

            let reopened = try openOutbox(in: directory, limits: limits)
            defer { reopened.close() }
            #expect(reopened.maxDestinationChangeID == 5)
            let reader = try OutboxReader(path: reopened.path)
            defer { reader.close() }
            #expect(try reader.oldestDestinationChangeID() == 3)
            #expect(try reader.destinationChanges(after: 0, upTo: 5, limit: 10).map(\.changeID) == [3, 4, 5])
            #expect(try reader.destinations(after: "", limit: 10).map(\.name) == ["a.example"])
            let next = try await reopened.recordDestinationChange(
                destination: "a.example", state: "caught_up", retryIntervalMS: nil, failureCount: nil, lastSuccessfulStreamOrdering: 1)
            #expect(next.changeID == 6)
            #expect(next.retryIntervalMS == 600 && next.failureCount == 1)
        }
    }
}
