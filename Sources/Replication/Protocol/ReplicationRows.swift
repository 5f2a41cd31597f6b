import Federation
import Outbox

/// The JSON of each stream's rows, the same whether a row comes from history or live.
enum ReplicationRows {
    /// `{"destinations":N,"event_id":…,"kind":"pdu"|edu type,"room_id":…}`, in canonical JSON; ids only where known.
    static func json(_ row: FederationStreamRow) -> [UInt8] {
        var object: [String: JSONValue] = ["kind": .string(row.kind), "destinations": .integer(Int64(row.destinationCount))]
        if let roomID = row.roomID { object["room_id"] = .string(roomID) }
        if let eventID = row.eventID { object["event_id"] = .string(eventID) }
        return CanonicalJSON.encode(.object(object))
    }

    /// `{"destination":…,"failure_count":N,"last_successful_stream_ordering":N,"retry_interval_ms":N,"state":…}`.
    static func json(_ change: DestinationChange) -> [UInt8] {
        CanonicalJSON.encode(.object([
            "destination": .string(change.destination),
            "state": .string(change.state),
            "retry_interval_ms": .integer(change.retryIntervalMS),
            "failure_count": .integer(change.failureCount),
            "last_successful_stream_ordering": .integer(change.lastSuccessfulStreamOrdering),
        ]))
    }

    /// A destination as stored now, for a snapshot: `backoff` while it has a retry interval, else `up`.
    static func json(snapshotOf record: DestinationRecord) -> [UInt8] {
        json(DestinationChange(changeID: 0, destination: record.name, state: record.retryIntervalMS > 0 ? "backoff" : "up",
                               retryIntervalMS: record.retryIntervalMS, failureCount: record.failureCount,
                               lastSuccessfulStreamOrdering: record.lastSuccessfulStreamOrdering))
    }

    /// The `federation` rows a commit adds, in stream order.
    static func federationRows(of commit: OutboxCommit) -> [FederationStreamRow] {
        commit.pdus.map { stored in
            FederationStreamRow(streamOrdering: stored.pdu.streamOrdering, kind: "pdu", roomID: stored.pdu.roomID,
                                eventID: stored.pdu.eventID, destinationCount: Set(stored.destinations).count)
        } + commit.edus.map { edu in
            FederationStreamRow(streamOrdering: edu.streamOrdering, kind: edu.eduType, roomID: nil, eventID: nil,
                                destinationCount: Set(edu.destinations).count)
        }
    }
}
