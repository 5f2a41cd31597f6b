/// What one accepted ingest batch added, announced once it is committed, in commit order.
///
/// The sender's in-memory queues are fed from these, so each PDU reference is created once
/// and shared by every destination's queue: the bytes are the ones ingest parsed, not a
/// copy per destination.
public struct OutboxCommit: Sendable {
    public struct PDU: Sendable {
        public var pdu: StoredPDU
        public var destinations: [String]

        public init(pdu: StoredPDU, destinations: [String]) {
            self.pdu = pdu
            self.destinations = destinations
        }
    }

    public struct EDU: Sendable {
        public var eduType: String
        public var destinations: [String]
        /// Its place in the `federation` stream, after the PDUs of its batch.
        public var streamOrdering: Int64

        public init(eduType: String, destinations: [String], streamOrdering: Int64 = 0) {
            self.eduType = eduType
            self.destinations = destinations
            self.streamOrdering = streamOrdering
        }

        /// Device-list and cross-signing key updates, which Synapse sends at a pace
        /// rather than at once because they go to every server sharing a room.
        public var isDeviceListUpdate: Bool {
            Self.deviceListTypes.contains(eduType)
        }

        public static let deviceListTypes: Set<String> = [
            "m.device_list_update", "m.signing_key_update", "org.matrix.signing_key_update",
        ]
    }

    public var pdus: [PDU]
    public var edus: [EDU]
    /// Destinations the Outbox had no record of before this commit: their record is the
    /// default one (no progress, no backoff), so the sender need not read it.
    public var createdDestinations: Set<String>

    public init(pdus: [PDU], edus: [EDU], createdDestinations: Set<String> = []) {
        self.pdus = pdus
        self.edus = edus
        self.createdDestinations = createdDestinations
    }

    init(batch: IngestBatch, receipt: IngestReceipt, eduStreamOrderings: [Int64], createdDestinations: [String]) {
        self.createdDestinations = Set(createdDestinations)
        pdus = zip(batch.pdus, receipt.perPDU).map { incoming, streamOrdering in
            PDU(pdu: StoredPDU(streamOrdering: streamOrdering, roomID: incoming.roomID, eventID: incoming.eventID,
                               canonicalJSON: incoming.canonicalJSON),
                destinations: incoming.destinations)
        }
        edus = zip(batch.edus, eduStreamOrderings).map { incoming, streamOrdering in
            EDU(eduType: incoming.eduType, destinations: incoming.destinations, streamOrdering: streamOrdering)
        }
    }
}
