/// A change in how the sender stands with a destination, as `SenderScheduler` publishes it:
/// what the replication endpoint's `destinations` stream carries and what the log says.
public struct DestinationStateChange: Sendable, Equatable {
    public enum State: Sendable, Equatable {
        /// A transaction failed; the next try is in `retryIntervalMS`.
        case backingOff(retryIntervalMS: Int64)
        /// A transaction was delivered after a backoff, or the backoff was cleared (the admin API,
        /// `REMOTE_SERVER_UP`).
        case up
        /// Transactions are built from the newest PDU of each room (a long outage, or a large
        /// backlog found at start).
        case catchingUp
        /// Caught up with ingest after catching up or reading a backlog: PDUs are sent as they are accepted.
        case caughtUp

        /// The state's name in the `destinations` stream and the logs.
        public var name: String {
            switch self {
            case .backingOff: "backoff"
            case .up: "up"
            case .catchingUp: "catching_up"
            case .caughtUp: "caught_up"
            }
        }
    }

    public var destination: String
    public var state: State
    /// The last stream ordering the destination acknowledged.
    public var lastSuccessfulStreamOrdering: Int64

    public init(destination: String, state: State, lastSuccessfulStreamOrdering: Int64) {
        self.destination = destination
        self.state = state
        self.lastSuccessfulStreamOrdering = lastSuccessfulStreamOrdering
    }
}
