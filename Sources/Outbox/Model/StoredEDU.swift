/// A persistent EDU read back from the Outbox, with the id it was given on ingest.
///
/// EDU ids increase in ingest order and are never reused, so the sender can name exactly the EDUs it delivered.
public struct StoredEDU: Sendable, Equatable {
    public var eduID: Int64
    public var eduType: String
    /// The whole EDU object in canonical JSON, exactly as it was accepted.
    public var canonicalJSON: [UInt8]

    public init(eduID: Int64, eduType: String, canonicalJSON: [UInt8]) {
        self.eduID = eduID
        self.eduType = eduType
        self.canonicalJSON = canonicalJSON
    }
}
