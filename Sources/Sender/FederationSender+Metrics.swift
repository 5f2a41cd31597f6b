extension FederationSender {
    /// Totals since start and current gauges, for `/metrics` and the admin API.
    public struct Metrics: Sendable {
        public var transactionsSent = 0
        public var transactionsFailed = 0
        /// Transactions southbridge's own limits held back (no pool slot in time); retried
        /// shortly without counting against the destination.
        public var transactionsDeferred = 0
        /// Units the receiver refused as a body (400/413) even alone; skipped and logged.
        public var unitsRejected = 0
        public var pdusDelivered = 0
        public var edusDelivered = 0
        /// Destinations sending, or woken and waiting for a sending slot.
        public var activeDestinations = 0
        public var destinationsInBackoff = 0
        public var destinationsCatchingUp = 0
        /// Destinations whose queue outgrew its memory budget, reading their backlog back in order.
        public var destinationsReadingBacklog = 0
        /// Destinations woken later by a paced queue (start-up, presence, receipts, device lists).
        public var destinationsAwaitingWakeup = 0
        /// PDU references held in memory across every destination.
        public var pdusInMemory = 0
        /// Times a destination's queue was dropped for the memory budget (read back from the outbox).
        public var queueSpills = 0
        public var ephemeralEDUsQueued = 0
        public var ephemeralEDUsDroppedExpired = 0
        public var ephemeralEDUsDroppedForMemory = 0
        /// Destinations whose state the sender holds: at most `Settings.maxQuietDestinations`
        /// besides those sending, unless more than that are owed something.
        public var destinationsInMemory = 0
    }

    /// What the sender holds in memory about one destination, for the admin API.
    public struct DestinationStatus: Sendable, Equatable {
        /// A transaction is being sent or prepared.
        public var isSending: Bool
        /// `unloaded`, `loading`, `live` or `catching_up`.
        public var phase: PerDestinationQueue.Phase
        /// The id of the transaction awaiting a 200, if any.
        public var transactionInFlight: String?
        public var pdusInFlight: Int
        public var edusInFlight: Int
        /// PDU references queued in memory (not counting the transaction in flight).
        public var queuedPDUs: Int
        public var queuedEphemeralEDUs: Bool
        /// A retry timer is set.
        public var retryScheduled: Bool
    }
}
