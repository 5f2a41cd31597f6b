/// A PDU read back from the Outbox, with the stream ordering it was given on ingest.
public struct StoredPDU: Sendable, Equatable {
    public var streamOrdering: Int64
    public var roomID: String
    public var eventID: String?
    /// The canonical JSON bytes exactly as they were accepted.
    public var canonicalJSON: [UInt8]

    public init(streamOrdering: Int64, roomID: String, eventID: String?, canonicalJSON: [UInt8]) {
        self.streamOrdering = streamOrdering
        self.roomID = roomID
        self.eventID = eventID
        self.canonicalJSON = canonicalJSON
    }
}
