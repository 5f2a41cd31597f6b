/// One row of the replication endpoint's `destinations` stream: how the sender stood with a destination after a
/// change, under an id that orders every change and survives restarts.
public struct DestinationChange: Sendable, Equatable {
    /// The change's token in the `destinations` stream.
    public var changeID: Int64
    public var destination: String
    /// The state's wire name: `up`, `backoff`, `catching_up` or `caught_up`.
    public var state: String
    public var retryIntervalMS: Int64
    public var failureCount: Int64
    public var lastSuccessfulStreamOrdering: Int64

    public init(changeID: Int64, destination: String, state: String, retryIntervalMS: Int64, failureCount: Int64,
                lastSuccessfulStreamOrdering: Int64) {
        self.changeID = changeID
        self.destination = destination
        self.state = state
        self.retryIntervalMS = retryIntervalMS
        self.failureCount = failureCount
        self.lastSuccessfulStreamOrdering = lastSuccessfulStreamOrdering
    }
}

/// One row of the replication endpoint's `federation` stream: a stored unit, by stream ordering.
public struct FederationStreamRow: Sendable, Equatable {
    public var streamOrdering: Int64
    /// `pdu`, or the EDU's type.
    public var kind: String
    /// The PDU's room; nil for an EDU.
    public var roomID: String?
    public var eventID: String?
    /// How many servers the unit was accepted for.
    public var destinationCount: Int

    public init(streamOrdering: Int64, kind: String, roomID: String?, eventID: String?, destinationCount: Int) {
        self.streamOrdering = streamOrdering
        self.kind = kind
        self.roomID = roomID
        self.eventID = eventID
        self.destinationCount = destinationCount
    }
}
