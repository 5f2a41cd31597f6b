/// What `Outbox.prune` may delete besides the units every destination already has.
public struct RetentionPolicy: Sendable, Equatable {
    /// `sender.catch_up_after_ms`: a destination backing off for longer is caught up with the newest PDU of each
    /// room only, so the older PDUs of a room it shares a set with are deleted; nil keeps them.
    public var catchUpAfterMS: Int64?
    /// `storage.max_age_ms`: units received longer ago than this (ms) that only backing-off destinations still
    /// need are dropped and counted; nil keeps them.
    public var maxAgeMS: Int64?
    /// Ingest txn ids received on days (since the epoch) that ended before this time (ms since the epoch) are
    /// forgotten; nil keeps them.
    public var ingestTransactionsReceivedBefore: Int64?

    public init(catchUpAfterMS: Int64? = nil, maxAgeMS: Int64? = nil, ingestTransactionsReceivedBefore: Int64? = nil) {
        self.catchUpAfterMS = catchUpAfterMS
        self.maxAgeMS = maxAgeMS
        self.ingestTransactionsReceivedBefore = ingestTransactionsReceivedBefore
    }
}

/// What one `Outbox.prune` did.
public struct PruneReport: Sendable, Equatable {
    /// Rows deleted from every table, dropped units included.
    public var rowsDeleted = 0
    /// PDUs deleted while a backing-off destination still needed them, because of `storage.max_age_ms` or
    /// `storage.max_bytes`.
    public var pdusDropped = 0
    /// Persistent EDUs given up for a backing-off destination, one per destination, for the same reasons.
    public var eduCopiesDropped = 0
    /// PDU bodies copied from the log's start to its tail so that the segments they alone kept could go.
    public var logBodiesMoved = 0
    /// Bytes in use afterwards: the file's pages and the PDU log's segments.
    public var usedBytes: Int64 = 0

    public init() {}

    /// Whether units still owed to some destination were dropped.
    public var droppedUnits: Bool { pdusDropped > 0 || eduCopiesDropped > 0 }
}
