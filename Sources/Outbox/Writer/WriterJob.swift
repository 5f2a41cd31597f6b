/// One request for the writer thread: the SQL work to do and how to answer the caller.
///
/// `perform` runs on the writer thread. A write runs inside the current group's transaction under its own
/// savepoint; the completion it returns is called after COMMIT, so a caller is answered once its write is
/// durable. Two kinds are answered sooner: an ingest batch (`isIngest`) once the round's log record is on the
/// device, which makes it durable, and a write a crash may lose (`commitMayWait`) once it is in the open
/// transaction. Exactly one of the completion or `fail` is called for every job.
struct WriterJob: Sendable {
    enum Kind: Sendable, Equatable {
        /// Runs outside any transaction, after the round's group commit.
        case read
        /// Joins the next group commit; `bytes` counts toward the group and queue byte bounds.
        case write(bytes: Int)
    }

    typealias Completion = @Sendable () -> Void

    let kind: Kind
    let perform: @Sendable (OutboxStore) throws(SQLiteError) -> Completion
    let fail: @Sendable (OutboxError) -> Void
    /// An ingest batch: durable once the round's log record is, so it need not wait for an SQLite commit.
    var isIngest = false
    /// A write a crash may lose as long as it is only ever re-done (delivery progress: the units are sent again):
    /// answered once it is in the open transaction, whose commit it joins within `limits.indexCommitIntervalMS`.
    /// Reads see it at once, since they go through the same connection.
    var commitMayWait = false
}
