import Federation

extension FederationSender {
    /// The sender's bounds, from `[limits]` and `[sender]`.
    public struct Settings: Sendable {
        public var maxPDUsPerTransaction = TransactionBody.maximumPDUCount
        /// `limits.max_pdus_in_memory_per_destination`.
        public var maxPDUsInMemoryPerDestination = 500
        /// `limits.max_pdus_in_memory`: PDU references held across all destinations.
        public var maxPDUsInMemory = 100_000
        /// `limits.max_ephemeral_edus_in_memory`: typing, presence and receipt entries.
        public var maxEphemeralEDUs = 10_000
        /// `sender.catch_up_after_ms`: a backoff longer than this drops the queue for catch-up.
        public var catchUpAfterMS: Int64 = 3_600_000
        /// The pace of start-up wake-ups (the new-connection budget).
        public var startupWakeupInterval: Duration = .milliseconds(50)
        /// `sender.rr_transactions_per_room_per_second`: the pace of delayed wake-ups.
        public var readReceiptTransactionsPerRoomPerSecond = 50
        /// Destinations preparing or sending a transaction at once; the others wait in a ready
        /// queue costing a few bytes each. More than the connection cap, so the pool still
        /// chooses among more destinations than it has connections (the daemon uses
        /// `limits.max_connections` + `FederationStack.sendingDestinationsPerHandshake` ×
        /// `limits.max_tls_handshakes`).
        public var maxDestinationsSending = 256
        /// Destinations whose state is kept besides those sending: past it, those with nothing
        /// owed, in flight or scheduled the longest are dropped, and read again from the outbox
        /// if they are met again. Keeps memory bounded by configuration, not by every server
        /// met since start, while the servers of busy rooms stay loaded (the daemon keeps
        /// `FederationStack.quietDestinationsPerConnection` × `limits.max_connections`).
        public var maxQuietDestinations = 4_096

        public init() {}
    }
}
