/// The persisted delivery state of one destination server: how far it has been sent to and its backoff.
///
/// Mirrors a row of the `destinations` table; a destination the Outbox has never seen reads as
/// `lastSuccessfulStreamOrdering == 0` with no backoff.
public struct DestinationRecord: Sendable, Equatable {
    public var name: String
    /// Every PDU for this destination at or below this stream ordering has been delivered.
    public var lastSuccessfulStreamOrdering: Int64
    /// When the last failed attempt happened (ms since the epoch), or nil when the destination is healthy.
    public var retryLastTS: Int64?
    /// How long to back off after `retryLastTS`, in ms; 0 when healthy.
    public var retryIntervalMS: Int64
    /// Failed attempts since the last success.
    public var failureCount: Int64

    public init(
        name: String,
        lastSuccessfulStreamOrdering: Int64 = 0,
        retryLastTS: Int64? = nil,
        retryIntervalMS: Int64 = 0,
        failureCount: Int64 = 0
    ) {
        self.name = name
        self.lastSuccessfulStreamOrdering = lastSuccessfulStreamOrdering
        self.retryLastTS = retryLastTS
        self.retryIntervalMS = retryIntervalMS
        self.failureCount = failureCount
    }
}
