/// One ingest request as the Outbox stores it: the homeserver's transaction id, the PDUs and the persistent EDUs it
/// hands over.
///
/// The Outbox stores a batch atomically (all of its PDUs and EDUs or none) and at most once per `txnID`.
public struct IngestBatch: Sendable, Equatable {
    /// The homeserver's id for this request (`PUT /_southbridge/v1/send/{txnId}`); a repeat is answered, not stored.
    public var txnID: String
    /// The PDUs in the order the homeserver sent them; they get increasing stream orderings in this order.
    public var pdus: [IncomingPDU]
    /// The EDUs that must survive a restart until delivered, in the order the homeserver sent them; they get
    /// increasing EDU ids in this order.
    public var edus: [IncomingEDU]

    public init(txnID: String, pdus: [IncomingPDU], edus: [IncomingEDU] = []) {
        self.txnID = txnID
        self.pdus = pdus
        self.edus = edus
    }

    /// The bytes of canonical JSON the batch carries, PDUs and EDUs, which is what group commit and queue bounds
    /// count.
    public var canonicalJSONBytes: Int {
        pdus.reduce(0) { $0 + $1.canonicalJSON.count } + edus.reduce(0) { $0 + $1.canonicalJSON.count }
    }
}

/// One PDU to deliver: its canonical JSON, kept byte for byte, and the servers it must reach.
///
/// Stored once whatever the number of destinations; each destination gets a row pointing at it.
public struct IncomingPDU: Sendable, Equatable {
    public var roomID: String
    public var eventID: String?
    /// The event in canonical JSON, exactly as it will be put into federation transactions.
    public var canonicalJSON: [UInt8]
    /// Server names to deliver to; repeats are stored once.
    public var destinations: [String]

    public init(roomID: String, eventID: String?, canonicalJSON: [UInt8], destinations: [String]) {
        self.roomID = roomID
        self.eventID = eventID
        self.canonicalJSON = canonicalJSON
        self.destinations = destinations
    }
}

/// One persistent EDU to deliver (`m.direct_to_device`, `m.device_list_update`, `m.signing_key_update`, or any
/// type other than typing, presence and receipts): its canonical JSON, kept byte for byte, and the servers it must
/// reach.
///
/// The Outbox keeps it, across restarts, until every destination has had it; it is stored once whatever the number
/// of destinations. Ephemeral EDUs (`EphemeralEDU`: typing, presence, receipts) belong in the sender's memory, not here.
public struct IncomingEDU: Sendable, Equatable {
    public var eduType: String
    /// The whole EDU object, `{"content":…,"edu_type":…}`, in canonical JSON, exactly as it will be put into
    /// federation transactions.
    public var canonicalJSON: [UInt8]
    /// Server names to deliver to; repeats are stored once.
    public var destinations: [String]

    public init(eduType: String, canonicalJSON: [UInt8], destinations: [String]) {
        self.eduType = eduType
        self.canonicalJSON = canonicalJSON
        self.destinations = destinations
    }
}
