import Federation
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The daemon's only storage: one SQLite file holding every accepted PDU and persistent EDU until each of its
/// destinations has it.
///
/// Guarantees:
/// - `accept` returns only after the batch is on the device: its PDUs in the PDU log (`SegmentLog`, one record
///   per group commit, written with `O_DIRECT | O_DSYNC`) and, when the round stored more than PDUs for known
///   destination sets, committed in WAL mode with `synchronous=FULL` (`limits.synchronous`, which only
///   benchmarks change). The rows of log-only rounds are committed within `limits.indexCommitIntervalMS`; an
///   open indexes again what the log holds after the last commit;
///   a txn id is stored once and a repeat gets the first receipt back. A request with nothing to store goes to
///   `acceptWithoutStoring`, which writes nothing and remembers its txn id in memory, so a repeat of it gets the
///   first receipt back too.
/// - All SQLite work, reads included, runs on one dedicated writer thread, never on the caller's (NIO event loops,
///   Swift concurrency tasks); callers suspend on a continuation and the thread never waits on them. Running reads
///   on the same thread keeps one connection and needs no locking; reads are short and indexed.
/// - Writes queued while a commit runs form the next group: one `BEGIN IMMEDIATE … COMMIT`, so many concurrent
///   ingest requests cost one fsync. Each write has its own savepoint, so one failing write fails alone.
/// - Stream orderings and EDU ids increase strictly and are never reused, even after pruning.
public final class Outbox: Sendable {
    public let path: String
    public let limits: OutboxLimits
    private let writer: OutboxWriter
    private let commitObservers = Mutex<[@Sendable (OutboxCommit) -> Void]>([])
    private let destinationChangeObservers = Mutex<[@Sendable (DestinationChange) -> Void]>([])
    private let storagePressureObserver = Mutex<(@Sendable () -> Void)?>(nil)
    private let logGrowthObserver = Mutex<(@Sendable () -> Void)?>(nil)
    private let droppedPDUs = Atomic<Int>(0)
    private let droppedEDUCopies = Atomic<Int>(0)
    /// Whether `accept` is refusing batches at `limits.maxBytes`, so that an episode is logged once.
    private let refusingAtLimit = Atomic<Bool>(false)
    private let ephemeralTransactions: Mutex<RecentEphemeralTransactions>

    /// Opens the database at `path`, creating the file (not its directory) and migrating the schema.
    ///
    /// - Parameter now: the clock for `received_ts`, in ms since the epoch; tests inject their own.
    public init(
        path: String,
        logger: Logger,
        limits: OutboxLimits = OutboxLimits(),
        now: @escaping @Sendable () -> Int64 = WallClock.nowMS
    ) throws(OutboxError) {
        var logger = logger
        logger[metadataKey: "outbox"] = "\(path)"
        self.path = path
        self.limits = limits
        self.ephemeralTransactions = Mutex(RecentEphemeralTransactions(capacity: limits.maxEphemeralTxnIDs))
        self.writer = try OutboxWriter(path: path, limits: limits, logger: logger, now: now)
    }

    deinit {
        writer.close()
    }

    /// The highest stream ordering committed so far (0 for an empty outbox).
    public var maxStreamOrdering: Int64 {
        writer.committedStreamOrdering.load(ordering: .acquiring)
    }

    /// The highest stream ordering whose row is committed to SQLite, where another connection (`OutboxReader`)
    /// sees it; at most `limits.indexCommitIntervalMS` behind `maxStreamOrdering`, or `flush()` brings it there.
    public var indexedStreamOrdering: Int64 {
        writer.indexedStreamOrdering.load(ordering: .acquiring)
    }

    /// Commits to SQLite what ingest rounds acknowledged through the PDU log only, so that other connections see it,
    /// rows already delivered everywhere included: a follower's history reads them until pruning takes them.
    public func flush() async throws(OutboxError) {
        try await submit(.write(bytes: 0)) { store throws(SQLiteError) in
            store.keepsDeliveredRowsAtNextCommit = true
        }
    }

    /// Group commits since open (a log record, an SQLite commit, or both); far fewer than writes under concurrency.
    public var committedTransactionCount: Int {
        writer.committedTransactions.load(ordering: .relaxed)
    }

    /// Bytes in use after the last commit: the file's pages and the PDU log's segments (spares included).
    public var usedBytes: Int64 {
        writer.usedBytes.load(ordering: .relaxed)
    }

    /// Bytes of the database file, its write-ahead log and the PDU log's segments on disk now: what the card holds,
    /// free pages and a WAL not yet checkpointed included, which `usedBytes` leaves out.
    public var fileBytes: Int64 {
        Self.files(at: path).reduce(0) { total, file in
            var status = stat()
            return total + (stat(file, &status) == 0 ? Int64(status.st_size) : 0)
        }
    }

    /// The files of the Outbox at `path`: the database, its write-ahead log and shared-memory index, and the PDU
    /// log's segments.
    public static func files(at path: String) -> [String] {
        let logDirectory = OutboxStore.logDirectory(of: path)
        let segments = SegmentLog.segmentFileNames(in: logDirectory) ?? []
        return [path, path + "-wal", path + "-shm"] + segments.map { logDirectory + "/" + $0 }
    }

    /// PDUs dropped by `prune` since open while a backing-off destination still needed them.
    public var droppedPDUCount: Int {
        droppedPDUs.load(ordering: .relaxed)
    }

    /// Persistent EDUs given up by `prune` since open, one per backing-off destination that still needed them.
    public var droppedEDUCopyCount: Int {
        droppedEDUCopies.load(ordering: .relaxed)
    }

    /// Stores `batch` (PDUs and EDUs, in one transaction) durably and returns its stream orderings; a txn id
    /// accepted before gets its first receipt, marked `isReplay`, and stores nothing. An invalid batch is refused
    /// before it reaches the writer, and any batch while the file is at `limits.maxBytes`.
    public func accept(_ batch: IngestBatch) async throws(OutboxError) -> IngestReceipt {
        try batch.validate(limits: limits)
        let used = usedBytes
        guard used < limits.maxBytes else {
            if !refusingAtLimit.exchange(true, ordering: .relaxed) {
                writer.logger.warning("outbox at its byte limit: ingest is refused until reachable destinations have their units",
                                      metadata: ["used_bytes": "\(used)", "max_bytes": "\(limits.maxBytes)"])
            }
            storagePressureObserver.withLock { $0 }?()
            throw .storageLimitReached(path: path, usedBytes: used, limit: limits.maxBytes)
        }
        if refusingAtLimit.load(ordering: .relaxed), refusingAtLimit.exchange(false, ordering: .relaxed) {
            writer.logger.notice("outbox below its byte limit again: ingest is accepted", metadata: ["used_bytes": "\(used)"])
        }
        return try await submit(.write(bytes: batch.canonicalJSONBytes), isIngest: true, afterCommit: { accepted in
            if self.usedBytes >= self.pruneTargetBytes { self.storagePressureObserver.withLock { $0 }?() }
            if self.logNeedsSpare { self.logGrowthObserver.withLock { $0 }?() }
            let observers = self.commitObservers.withLock { $0 }
            guard !accepted.receipt.isReplay, !observers.isEmpty else { return }
            let commit = OutboxCommit(batch: batch, receipt: accepted.receipt, eduStreamOrderings: accepted.eduStreamOrderings,
                                      createdDestinations: accepted.createdDestinations)
            for observer in observers { observer(commit) }
        }) { store throws(SQLiteError) in
            try store.acceptBatch(batch)
        }.receipt
    }

    /// Calls `observer` whenever a commit leaves the file past nine tenths of `limits.maxBytes`, or `accept`
    /// refuses a batch at it: the moment to `prune` rather than wait for the next interval. It runs on the
    /// writer thread or the caller's and must only hand the call on; one observer at a time.
    public func observeStoragePressure(_ observer: @escaping @Sendable () -> Void) {
        storagePressureObserver.withLock { $0 = observer }
    }

    /// Whether the PDU log has no spare segment left after the last commit (its next segment would be made by
    /// writing its zeros) and holds a segment before the one being written, which pruning might give back.
    public var logNeedsSpare: Bool {
        writer.logNeedsSpare.load(ordering: .relaxed)
    }

    /// Calls `observer` after an ingest round whenever `logNeedsSpare`: the moment to `prune`, which may give a
    /// segment back before the next one's zeros are written, rather than wait for the next interval. It runs on
    /// the writer thread and must only hand the call on; one observer at a time.
    public func observeLogGrowth(_ observer: @escaping @Sendable () -> Void) {
        logGrowthObserver.withLock { $0 = observer }
    }

    /// The bytes in use `prune` brings the file back under once it is past them.
    private var pruneTargetBytes: Int64 {
        limits.maxBytes / 100 * OutboxLimits.pruneTargetPercent
    }

    /// Answers a request that carries nothing to store (typing, presence and receipts only) without touching the
    /// database, so that such requests cost no fsync: a txn id among the last `limits.maxEphemeralTxnIDs` of these
    /// gets its first receipt back, marked `isReplay`; a new one gets the current `maxStreamOrdering`, which is
    /// remembered as its answer. Only in memory, as the EDUs such a request carries are (see
    /// `RecentEphemeralTransactions`). The txn id is checked as `accept` checks it.
    public func acceptWithoutStoring(txnID: String) throws(OutboxError) -> IngestReceipt {
        try IngestBatch(txnID: txnID, pdus: []).validate(limits: limits)
        let streamOrdering = maxStreamOrdering
        return ephemeralTransactions.withLock { $0.accept(txnID, streamOrdering: streamOrdering) }
    }

    /// Calls `observer` with every batch `accept` commits from now on, on the writer thread,
    /// in commit order, before `accept` returns to its caller. It must only hand the value
    /// on (e.g. to an `AsyncStream`); the sender and the replication endpoint each add one.
    public func observeCommits(_ observer: @escaping @Sendable (OutboxCommit) -> Void) {
        commitObservers.withLock { $0.append(observer) }
    }

    /// Calls `observer` with every destination change `recordDestinationChange` commits from now on, on the writer
    /// thread, in commit order (which is change id order). It must only hand the value on.
    public func observeDestinationChanges(_ observer: @escaping @Sendable (DestinationChange) -> Void) {
        destinationChangeObservers.withLock { $0.append(observer) }
    }

    /// The highest destination change id committed so far (0 when none was ever recorded).
    public var maxDestinationChangeID: Int64 {
        writer.committedDestinationChangeID.load(ordering: .acquiring)
    }

    /// Appends a state change of a destination to the `destinations` stream and keeps only the newest
    /// `limits.maxDestinationChangesKept`. A failure count or retry interval not given is the one stored for the
    /// destination. Returns the change as stored, with its id.
    @discardableResult
    public func recordDestinationChange(destination: String, state: String, retryIntervalMS: Int64?, failureCount: Int64?,
                                        lastSuccessfulStreamOrdering: Int64) async throws(OutboxError) -> DestinationChange {
        let kept = Int64(max(1, limits.maxDestinationChangesKept))
        return try await submit(.write(bytes: 0), afterCommit: { change in
            self.writer.committedDestinationChangeID.store(change.changeID, ordering: .releasing)
            for observer in self.destinationChangeObservers.withLock({ $0 }) { observer(change) }
        }) { store throws(SQLiteError) in
            try store.recordDestinationChange(
                destination: destination, state: state, retryIntervalMS: retryIntervalMS, failureCount: failureCount,
                lastSuccessfulStreamOrdering: lastSuccessfulStreamOrdering, keep: kept)
        }
    }

    /// Up to `limit` PDUs owed to `destination` with a stream ordering above `streamOrdering`, in stream order.
    public func pendingPDUs(for destination: String, after streamOrdering: Int64, limit: Int) async throws(OutboxError)
        -> [StoredPDU]
    {
        try await submit(.read) { store throws(SQLiteError) in
            try store.pendingPDUs(for: destination, after: streamOrdering, limit: max(0, limit))
        }
    }

    /// The newest PDU of each room owed to `destination` with a stream ordering above `streamOrdering`, in stream
    /// order, at most `limit` rooms: what a destination back from a long outage is sent instead of everything it
    /// missed (Synapse's catch-up, derived here from the PDUs of its destination sets). A PDU returned here is never pruned while
    /// the destination's last successful stream ordering is below it.
    public func catchUpPDUs(for destination: String, after streamOrdering: Int64, limit: Int) async throws(OutboxError)
        -> [StoredPDU]
    {
        try await submit(.read) { store throws(SQLiteError) in
            try store.catchUpPDUs(for: destination, after: streamOrdering, limit: max(0, limit))
        }
    }

    /// Up to `limit` persistent EDUs still owed to `destination`, oldest (lowest EDU id) first;
    /// only of the types in `onlyTypes` when given, and none of the types in `exceptTypes`
    /// (so one kind flooding the outbox cannot hide another from the sender).
    public func pendingEDUs(for destination: String, limit: Int, onlyTypes: Set<String>? = nil,
                            exceptTypes: Set<String> = []) async throws(OutboxError) -> [StoredEDU] {
        try await submit(.read) { store throws(SQLiteError) in
            try store.pendingEDUs(for: destination, limit: max(0, limit), onlyTypes: onlyTypes, exceptTypes: exceptTypes)
        }
    }

    /// Records that `destination` has the EDUs `eduIDs`, and only those (the sender may deliver to-device and
    /// device-list EDUs out of id order); ids it was not owed are ignored. The destination's backoff is untouched.
    public func recordEDUsDelivered(destination: String, eduIDs: [Int64]) async throws(OutboxError) {
        try await submit(.write(bytes: 0)) { store throws(SQLiteError) in
            try store.recordEDUsDelivered(destination: destination, eduIDs: eduIDs)
        }
    }

    /// How many persistent EDUs are still owed to `destination`.
    public func pendingEDUCount(for destination: String) async throws(OutboxError) -> Int {
        try await submit(.read) { store throws(SQLiteError) in
            try store.pendingEDUCount(for: destination)
        }
    }

    /// The destination's delivery state, or nil when no PDU or EDU was ever accepted for it and nothing recorded.
    public func destination(_ name: String) async throws(OutboxError) -> DestinationRecord? {
        try await submit(.read) { store throws(SQLiteError) in
            try store.destination(name)
        }
    }

    /// Every destination with PDUs beyond its last successful stream ordering or with persistent EDUs not yet
    /// delivered, sorted by name; page with `after` (the last name of the previous page) and `limit`.
    public func destinationsWithPendingWork(after: String = "", limit: Int = Int.max) async throws(OutboxError)
        -> [DestinationRecord]
    {
        try await submit(.read) { store throws(SQLiteError) in
            try store.destinationsWithPendingWork(after: after, limit: max(0, limit))
        }
    }

    /// Known destinations sorted by name, optionally only those backing off; page with `after`
    /// (the last name of the previous page) and `limit`.
    public func destinations(after: String = "", limit: Int, backingOffOnly: Bool = false) async throws(OutboxError)
        -> [DestinationRecord]
    {
        try await submit(.read) { store throws(SQLiteError) in
            try store.destinations(after: after, limit: max(0, limit), backingOffOnly: backingOffOnly)
        }
    }

    /// How many PDUs are still owed to `destination`.
    public func pendingPDUCount(for destination: String) async throws(OutboxError) -> Int {
        try await submit(.read) { store throws(SQLiteError) in
            try store.pendingPDUCount(for: destination)
        }
    }

    /// Records that every PDU for `destination` up to `streamOrdering` was delivered. The mark only moves forward
    /// (written within `limits.progressSaveIntervalMS`); the destination's backoff and failure count are cleared.
    public func recordDelivered(destination: String, upTo streamOrdering: Int64) async throws(OutboxError) {
        let maximum = maxStreamOrdering
        guard streamOrdering <= maximum else {
            throw .streamOrderingBeyondMaximum(destination: destination, streamOrdering: streamOrdering, maximum: maximum)
        }
        try await submit(.write(bytes: 0)) { store throws(SQLiteError) in
            try store.recordDelivered(destination: destination, upTo: streamOrdering)
        }
    }

    /// What one destination received since its progress was last recorded.
    public struct Delivery: Sendable, Equatable {
        public var destination: String
        /// The highest stream ordering delivered, if PDUs were.
        public var upTo: Int64?
        /// Persistent EDUs delivered.
        public var eduIDs: [Int64]

        public init(destination: String, upTo: Int64?, eduIDs: [Int64]) {
            self.destination = destination
            self.upTo = upTo
            self.eduIDs = eduIDs
        }
    }

    /// Records the progress of many destinations in one write (see `recordDelivered` and
    /// `recordEDUsDelivered`), so deliveries that finish one after the other share a commit. It returns once
    /// later reads see the progress. Delivered EDUs are committed within `limits.indexCommitIntervalMS`, with the
    /// rows of ingest acknowledged through the PDU log, so a steady flow of deliveries adds no commits of its own;
    /// the marks are written within `limits.progressSaveIntervalMS`, all destinations' together. A crash before
    /// either loses that progress, and those units are sent again, never skipped.
    public func recordDeliveries(_ deliveries: [Delivery]) async throws(OutboxError) {
        let maximum = maxStreamOrdering
        for delivery in deliveries {
            if let upTo = delivery.upTo, upTo > maximum {
                throw .streamOrderingBeyondMaximum(destination: delivery.destination, streamOrdering: upTo, maximum: maximum)
            }
        }
        try await submit(.write(bytes: 0), commitMayWait: true) { store throws(SQLiteError) in
            for delivery in deliveries {
                if let upTo = delivery.upTo { try store.recordDelivered(destination: delivery.destination, upTo: upTo) }
                if !delivery.eduIDs.isEmpty {
                    try store.recordEDUsDelivered(destination: delivery.destination, eduIDs: delivery.eduIDs)
                }
            }
        }
    }

    /// Records a failed attempt: the time it failed and the backoff chosen by the retry policy.
    public func recordFailure(destination: String, retryLastTS: Int64, retryIntervalMS: Int64) async throws(OutboxError) {
        try await submit(.write(bytes: 0)) { store throws(SQLiteError) in
            try store.recordFailure(destination: destination, retryLastTS: retryLastTS, retryIntervalMS: retryIntervalMS)
        }
    }

    /// Clears the destination's backoff (the admin API's `DELETE …/backoff`), writing nothing when it has none.
    @discardableResult
    public func resetBackoff(destination: String) async throws(OutboxError) -> BackoffReset {
        try await submit(.write(bytes: 0)) { store throws(SQLiteError) in
            try store.resetBackoff(destination: destination)
        }
    }

    /// What `resetBackoff` found.
    public enum BackoffReset: Sendable, Equatable {
        /// The destination was backing off; its retry state is cleared.
        case cleared
        /// The destination is known and was not backing off; nothing was written.
        case notBackingOff
        /// No destination of that name has ever been handed a unit.
        case unknown
    }

    /// Deletes what no destination needs any more: the PDUs every destination of their set is past or, for those
    /// catching up, has a newer PDU of the same room for (`policy.catchUpAfterMS`); the destination sets no PDU
    /// refers to; the EDUs no destination still needs; and the ingest txn ids older than the policy's cutoff.
    /// Moves the few bodies still needed at the PDU log's start to its tail when that gives back whole segments.
    /// Then drops, oldest first, the units only backing-off destinations still need when they are older than
    /// `policy.maxAgeMS` or while the file is past nine tenths of `limits.maxBytes`, and counts them. Works in steps
    /// of `limits.pruneStepRows`, each its own short write, so ingest is never held up for long.
    public func prune(_ policy: RetentionPolicy = RetentionPolicy()) async throws(OutboxError) -> PruneReport {
        let step = max(1, limits.pruneStepRows)
        var report = PruneReport()
        func repeatSteps(_ body: @escaping @Sendable (OutboxStore) throws(SQLiteError) -> Int) async throws(OutboxError)
            -> Int
        {
            var total = 0
            while true {
                let rows = try await submit(.write(bytes: 0), body)
                total += rows
                if rows < step { return total }
            }
        }
        report.rowsDeleted += try await repeatSteps { store throws(SQLiteError) in
            try store.pruneDeliveredPDUs(limit: step)
        }
        if let catchUpAfterMS = policy.catchUpAfterMS {
            report.rowsDeleted += try await repeatSteps { store throws(SQLiteError) in
                try store.pruneSupersededPDUs(catchUpAfterMS: catchUpAfterMS, limit: step)
            }
        }
        if let maxAgeMS = policy.maxAgeMS {
            let cutoff = try await submit(.read) { store throws(SQLiteError) in store.currentTimestamp } - maxAgeMS
            report.pdusDropped += try await repeatSteps { store throws(SQLiteError) in
                try store.dropPDUsOwedOnlyToBackingOff(receivedBefore: cutoff, limit: step)
            }
            report.eduCopiesDropped += try await repeatSteps { store throws(SQLiteError) in
                try store.dropEDUsOwedToBackingOff(receivedBefore: cutoff, limit: step)
            }
        }
        report.rowsDeleted += try await pruneUnusedDestinationSets(step: step)
        report.rowsDeleted += try await pruneUnneededEDUs(step: step)
        report.logBodiesMoved += await relocateSparseLogStart(step: step)
        // Past the byte budget: one step of the oldest PDUs (then EDU copies) only backing-off destinations need,
        // and look again; deleted rows free pages for the next writes, which is what brings the use down.
        while try await usedBytesNow() > pruneTargetBytes {
            let pdus = try await submit(.write(bytes: 0)) { store throws(SQLiteError) in
                try store.dropPDUsOwedOnlyToBackingOff(receivedBefore: nil, limit: step)
            }
            report.pdusDropped += pdus
            if pdus > 0 {
                report.rowsDeleted += try await pruneUnusedDestinationSets(step: step, waivingGrace: true)
                continue
            }
            let copies = try await submit(.write(bytes: 0)) { store throws(SQLiteError) in
                try store.dropEDUsOwedToBackingOff(receivedBefore: nil, limit: step)
            }
            guard copies > 0 else { break }
            report.eduCopiesDropped += copies
            report.rowsDeleted += try await pruneUnneededEDUs(step: step)
        }
        report.rowsDeleted += report.pdusDropped + report.eduCopiesDropped
        if let cutoff = policy.ingestTransactionsReceivedBefore {
            report.rowsDeleted += try await repeatSteps { store throws(SQLiteError) in
                try store.pruneIngestTransactions(receivedBefore: cutoff, limit: step)
            }
        }
        droppedPDUs.add(report.pdusDropped, ordering: .relaxed)
        droppedEDUCopies.add(report.eduCopiesDropped, ordering: .relaxed)
        report.usedBytes = try await usedBytesNow()
        return report
    }

    /// Deletes the destination sets no PDU refers to and, unless `waivingGrace` (past the byte budget), none used
    /// within `limits.unusedDestinationSetGraceMS`, a step at a time; returns how many went.
    private func pruneUnusedDestinationSets(step: Int, waivingGrace: Bool = false) async throws(OutboxError) -> Int {
        var deleted = 0
        var setCursor: Int64? = 0
        while let after = setCursor {
            let (sets, next) = try await submit(.write(bytes: 0)) { store throws(SQLiteError) in
                if after == 0 { store.forgetOldDestinationSetUses() }
                return try store.pruneUnusedDestinationSets(after: after, limit: step, waivingGrace: waivingGrace)
            }
            deleted += sets
            setCursor = next
        }
        return deleted
    }

    /// Deletes the EDUs no destination needs any more, all of them, a step at a time; returns how many went.
    private func pruneUnneededEDUs(step: Int) async throws(OutboxError) -> Int {
        var deleted = 0
        var eduCursor: Int64? = 0
        while let after = eduCursor {
            let (rows, next) = try await submit(.write(bytes: 0)) { store throws(SQLiteError) in
                try store.pruneUnneededEDUs(after: after, limit: step)
            }
            deleted += rows
            eduCursor = next
        }
        return deleted
    }

    /// Moves the bodies still needed at the log's start to its tail while that gives back whole segments, a
    /// bounded record at a time; returns how many moved. A failure (the disk full when the record needs a new
    /// segment, say) ends the moving, which the writer logs, and not the rest of the prune.
    private func relocateSparseLogStart(step: Int) async -> Int {
        var moved = 0
        for _ in 0..<Self.maxLogRelocationsPerPrune {
            guard let bodies = try? await submit(.write(bytes: 0), { store throws(SQLiteError) in
                try store.relocateSparseLogStart(maxBytes: store.maxLogRecordBytes / 2, maxBodies: step)
            }), bodies > 0 else { break }
            moved += bodies
        }
        return moved
    }

    /// Records of moved bodies one prune writes at most, each at most an eighth of a segment: a run of up to a
    /// segment moves within one prune, and whatever is left waits for the next.
    static let maxLogRelocationsPerPrune = 8

    /// Bytes in use now (pages and log segments), read on the writer thread (and kept for `accept`'s check).
    private func usedBytesNow() async throws(OutboxError) -> Int64 {
        let writer = self.writer
        return try await submit(.read) { store throws(SQLiteError) in
            let used = try store.usedBytes()
            writer.usedBytes.store(used, ordering: .relaxed)
            return used
        }
    }

    /// How many rows each table holds.
    public func rowCounts() async throws(OutboxError) -> OutboxRowCounts {
        try await submit(.read) { store throws(SQLiteError) in
            try store.rowCounts()
        }
    }

    /// A round trip through the writer thread that touches nothing; the watchdog uses it to see the writer answers.
    public func probe() async throws(OutboxError) {
        try await submit(.read) { _ throws(SQLiteError) in }
    }

    /// Finishes the work already queued, stops the writer thread and closes the database; later calls fail with
    /// `OutboxError.closed`. Blocks until the queued work is done, so call it at shutdown, not on an event loop.
    public func close() {
        writer.close()
    }

    /// Runs `body` on the writer thread; `afterCommit` runs there too, once the value is
    /// committed, in commit order.
    private func submit<T: Sendable>(
        _ kind: WriterJob.Kind,
        isIngest: Bool = false,
        commitMayWait: Bool = false,
        afterCommit: (@Sendable (T) -> Void)? = nil,
        _ body: @escaping @Sendable (OutboxStore) throws(SQLiteError) -> T
    ) async throws(OutboxError) -> T {
        let writer = self.writer
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, OutboxError>, Never>) in
            writer.enqueue(WriterJob(
                kind: kind,
                perform: { store throws(SQLiteError) in
                    let value = try body(store)
                    return {
                        afterCommit?(value)
                        continuation.resume(returning: .success(value))
                    }
                },
                fail: { error in continuation.resume(returning: .failure(error)) },
                isIngest: isIngest, commitMayWait: commitMayWait))
        }
        return try result.get()
    }
}
