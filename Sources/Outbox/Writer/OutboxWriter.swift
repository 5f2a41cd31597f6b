import CSQLite
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The Outbox's one thread: it opens the database, owns the connection, and runs every job in rounds of one group
/// commit followed by the reads that were waiting.
///
/// Callers only take the lock to append a job and never wait on the thread (except `close`, which waits for it to
/// finish); the thread never waits on a caller, it answers by resuming continuations.
final class OutboxWriter: @unchecked Sendable {
    private enum State {
        case starting
        case running
        case closing
        case stopped
    }

    let path: String
    let limits: OutboxLimits
    let logger: Logger
    private let now: @Sendable () -> Int64

    /// Transactions committed by group commit since open.
    let committedTransactions = Atomic<Int>(0)
    /// The highest stream ordering that is committed.
    let committedStreamOrdering = Atomic<Int64>(0)
    /// Bytes in use after the last commit: the file's pages and the PDU log's segments.
    let usedBytes = Atomic<Int64>(0)
    /// Whether the PDU log has no spare segment left after the last commit and a segment pruning could give back
    /// (`SegmentLog.wantsSpare`).
    let logNeedsSpare = Atomic<Bool>(false)
    /// The highest destination change id that is committed.
    let committedDestinationChangeID = Atomic<Int64>(0)

    /// The highest stream ordering whose row is committed to SQLite; ingest rounds acknowledged through the PDU
    /// log wait up to `limits.indexCommitIntervalMS` for it. Readers on other connections see only these.
    let indexedStreamOrdering = Atomic<Int64>(0)

    // Written by the writer thread only.
    /// Writes failed for lack of space or an I/O error since the last commit that worked; nil while they work.
    private var failingWrites: Int?
    /// When the open transaction holding rounds acknowledged through the log began (monotonic ns); nil when
    /// none is open.
    private var uncommittedSinceNS: UInt64?
    /// The rows of rounds acknowledged through the log were rolled back and could not be indexed again yet.
    private var reindexPending = false
    private var reindexError: SQLiteError?

    private let lock = ConditionLock()
    // Guarded by `lock`.
    private var queue = WriterQueue()
    private var state = State.starting
    private var openError: OutboxError?
    private var thread: pthread_t?

    /// Starts the thread, which opens the database; returns once it is open and migrated, or throws why not.
    init(path: String, limits: OutboxLimits, logger: Logger, now: @escaping @Sendable () -> Int64) throws(OutboxError) {
        self.path = path
        self.limits = limits
        self.logger = logger
        self.now = now
        let code = Self.startThread(for: self)
        guard code == 0 else {
            throw .writerThreadFailed(code: code)
        }
        lock.lock()
        while state == .starting {
            lock.wait()
        }
        let error = openError
        lock.unlock()
        if let error {
            throw error
        }
    }

    /// Queues `job`, or fails it at once when the writer is closed or its queue is full. A write that alone exceeds
    /// the queue bound is still taken when nothing else waits, so no valid batch is refused forever.
    func enqueue(_ job: WriterJob) {
        lock.lock()
        guard state == .running else {
            lock.unlock()
            job.fail(.closed(path: path))
            return
        }
        if case let .write(bytes) = job.kind, queue.queuedBytes > 0, queue.queuedBytes + bytes > limits.maxQueuedBytes {
            let queuedBytes = queue.queuedBytes
            lock.unlock()
            job.fail(.overloaded(queuedBytes: queuedBytes, limit: limits.maxQueuedBytes))
            return
        }
        queue.append(job, atMonotonicNS: ConditionLock.monotonicNS())
        lock.broadcast()
        lock.unlock()
    }

    /// Stops accepting jobs, lets the thread finish every queued one, and waits until it has closed the database.
    func close() {
        lock.lock()
        if state == .running {
            state = .closing
            lock.broadcast()
        }
        // The writer thread cannot wait for itself; it stops after the job that got here.
        if let thread, pthread_equal(thread, pthread_self()) != 0 {
            lock.unlock()
            return
        }
        while state != .stopped {
            lock.wait()
        }
        lock.unlock()
    }

    private static func startThread(for writer: OutboxWriter) -> Int32 {
        let context = Unmanaged.passRetained(writer).toOpaque()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        let code = withUnsafeTemporaryAllocation(of: pthread_t.self, capacity: 1) { handle in
            pthread_create(handle.baseAddress!, &attributes, { context in
                let writer = Unmanaged<OutboxWriter>.fromOpaque(context!).takeRetainedValue()
                writer.run()
                return nil
            }, context)
        }
        if code != 0 {
            Unmanaged<OutboxWriter>.fromOpaque(context).release()
        }
        return code
    }

    private func run() {
        lock.lock()
        thread = pthread_self()
        lock.unlock()

        let store: OutboxStore
        do throws(OutboxError) {
            store = try OutboxStore.open(path: path, limits: limits, now: now)
        } catch {
            lock.lock()
            openError = error
            state = .stopped
            lock.broadcast()
            lock.unlock()
            return
        }
        committedStreamOrdering.store(store.allocatedStreamOrdering, ordering: .releasing)
        indexedStreamOrdering.store(store.allocatedStreamOrdering, ordering: .releasing)
        usedBytes.store((try? store.usedBytes()) ?? 0, ordering: .relaxed)
        logNeedsSpare.store(store.log.wantsSpare, ordering: .relaxed)
        committedDestinationChangeID.store((try? store.maxDestinationChangeID()) ?? 0, ordering: .releasing)
        logger.info("outbox opened", metadata: [
            "stream_ordering": "\(store.allocatedStreamOrdering)", "reindexed_pdus": "\(store.reindexedAtOpen)",
            "direct_io": "\(store.log.usesDirectIO)",
        ])

        lock.lock()
        state = .running
        lock.broadcast()
        while true {
            while queue.isEmpty && state == .running {
                // While a re-index is pending nothing may be committed, so the marks do not wake it.
                let progressDeadline = store.unsavedProgress.isEmpty || reindexPending ? nil : store.progressSaveDeadlineNS
                guard let deadline = [indexCommitDeadlineNS, progressDeadline].compactMap({ $0 }).min() else {
                    lock.wait()
                    continue
                }
                if ConditionLock.monotonicNS() >= deadline { break }
                lock.wait(untilMonotonicNS: deadline)
            }
            if queue.isEmpty && state == .running {
                lock.unlock()
                commitIndex(store: store)
                lock.lock()
                continue
            }
            if queue.isEmpty {
                break
            }
            if state == .running,
               let deadline = queue.groupDeadlineNS(commitWindowMS: limits.commitWindowMS, maxGroupWrites: limits.maxGroupWrites),
               deadline > ConditionLock.monotonicNS() {
                lock.wait(untilMonotonicNS: deadline)
                continue
            }
            let round = queue.takeRound(maxGroupWrites: limits.maxGroupWrites, maxGroupBytes: limits.maxGroupBytes)
            lock.unlock()
            if !round.writes.isEmpty {
                commitGroup(round.writes, store: store)
            }
            for job in round.reads {
                read(job, store: store)
            }
            lock.lock()
        }
        lock.unlock()

        commitIndex(store: store, savingAllProgress: true)
        store.close()
        logger.info("outbox closed", metadata: ["stream_ordering": "\(store.allocatedStreamOrdering)"])
        lock.lock()
        state = .stopped
        lock.broadcast()
        lock.unlock()
    }

    /// When the rows of rounds acknowledged through the log must be committed at the latest.
    private var indexCommitDeadlineNS: UInt64? {
        uncommittedSinceNS.map { $0 + UInt64(max(0, limits.indexCommitIntervalMS)) * 1_000_000 }
    }

    /// Runs `writes` in the open transaction (begun if none is), each under its own savepoint, then writes the PDUs
    /// they accepted to the log as one record. A round of ingest batches that only add PDUs to known destination
    /// sets is answered once that record is on the device, and its rows wait for the next SQLite commit (within
    /// `limits.indexCommitIntervalMS`; after a crash an open indexes them again from the log). Any other round is
    /// committed before it is answered. A write that fails is rolled back alone and answered with its error.
    private func commitGroup(_ writes: [WriterJob], store: OutboxStore) {
        recoverIfTransactionWasLost(store: store)
        if reindexPending {
            // Rows of acknowledged rounds are missing from SQLite: nothing may be committed until they are back.
            recoverAfterRollback(store: store, allocatedBefore: store.allocatedStreamOrdering)
            if reindexPending {
                let failure = noteFailure(reindexError ?? SQLiteError(code: SQLITE_IOERR, message: "the PDU log could not be indexed", sql: "PDU log"),
                                          writes: writes.count)
                for job in writes { job.fail(failure) }
                return
            }
        }
        if !store.isInTransaction {
            do throws(SQLiteError) {
                try store.beginImmediate()
            } catch {
                let failure = noteFailure(error, writes: writes.count)
                for job in writes {
                    job.fail(failure)
                }
                return
            }
            uncommittedSinceNS = ConditionLock.monotonicNS()
        }
        var completions: [(job: WriterJob, completion: WriterJob.Completion)] = []
        completions.reserveCapacity(writes.count)
        for (index, job) in writes.enumerated() {
            do throws(SQLiteError) {
                let completion = try store.withSavepoint { () throws(SQLiteError) in try job.perform(store) }
                completions.append((job, completion))
            } catch {
                let failure = noteFailure(error, writes: 1)
                job.fail(failure)
                if !store.isInTransaction {
                    // SQLite gave up the whole transaction (I/O error, disk full): nothing of the group survives,
                    // and the rows of earlier rounds acknowledged through the log are indexed again.
                    recoverAfterRollback(store: store, allocatedBefore: store.allocatedStreamOrdering)
                    for entry in completions {
                        entry.job.fail(failure)
                    }
                    for later in writes[(index + 1)...] {
                        later.fail(failure)
                    }
                    return
                }
            }
        }
        let needsIndexCommit: Bool
        let indexCommitIsDue: Bool
        let allocatedAfterJobs = store.allocatedStreamOrdering
        do throws(SQLiteError) {
            let roundNeedsCommit = try store.writeRoundToLog()
            needsIndexCommit = roundNeedsCommit || completions.contains { !$0.job.isIngest && !$0.job.commitMayWait }
            indexCommitIsDue = indexCommitDeadlineNS.map { ConditionLock.monotonicNS() >= $0 } ?? true
        } catch {
            // The round's record could not be written (no space for a new segment, an I/O error): none of it
            // is acknowledged, and what it wrote to SQLite goes with a rollback of the open transaction.
            let failure = noteFailure(error, writes: completions.count)
            recoverAfterRollback(store: store, allocatedBefore: allocatedAfterJobs)
            for entry in completions {
                entry.job.fail(failure)
            }
            return
        }
        if needsIndexCommit {
            let roundRecordNeededCommit = store.lastRoundNeededIndexCommit
            let allocatedAfterRound = store.allocatedStreamOrdering
            do throws(SQLiteError) {
                try store.commitIndex()
                uncommittedSinceNS = nil
                indexedStreamOrdering.store(store.allocatedStreamOrdering, ordering: .releasing)
            } catch {
                let failure = noteFailure(error, writes: writes.count)
                // A flagged record is never indexed again; the others are, rows and all.
                recoverAfterRollback(store: store, allocatedBefore: allocatedAfterRound)
                committedStreamOrdering.store(store.allocatedStreamOrdering, ordering: .releasing)
                // Ingest rounds whose record is in the log are acknowledged: their rows are indexed again.
                for entry in completions {
                    if entry.job.isIngest && !roundRecordNeededCommit {
                        entry.completion()
                    } else {
                        entry.job.fail(failure)
                    }
                }
                return
            }
        }
        committedTransactions.add(1, ordering: .relaxed)
        committedStreamOrdering.store(store.allocatedStreamOrdering, ordering: .releasing)
        if let used = try? store.usedBytes() { usedBytes.store(used, ordering: .relaxed) }
        logNeedsSpare.store(store.log.wantsSpare, ordering: .relaxed)
        // Only a round that wrote something shows that writes work again (progress alone waits for a commit).
        if let failed = failingWrites, needsIndexCommit || store.lastRoundLogPosition != nil {
            failingWrites = nil
            logger.notice("outbox writes succeed again", metadata: ["failed_writes": "\(failed)"])
        }
        logger.debug("outbox group committed", metadata: [
            "writes": "\(writes.count)", "stream_ordering": "\(store.allocatedStreamOrdering)",
            "indexed": "\(needsIndexCommit ? "before answering" : indexCommitIsDue ? "after answering" : "later")",
        ])
        for entry in completions {
            entry.completion()
        }
        // The open transaction's interval is up (rows of rounds acknowledged through the log, this one's among
        // them, and any marks due): the answers above needed only the record on the device, so they do not wait
        // for this commit (for a room of 5,000 servers, milliseconds of SQLite). Under a steady stream of rounds
        // the queue is never empty, so this is where they are committed.
        if !needsIndexCommit && indexCommitIsDue {
            commitIndex(store: store)
        }
    }

    /// Commits the rows of rounds acknowledged through the log, once they have waited their interval, and the
    /// delivered marks once theirs has passed (all of them when closing).
    private func commitIndex(store: OutboxStore, savingAllProgress: Bool = false) {
        recoverIfTransactionWasLost(store: store)
        let savesProgress = !store.unsavedProgress.isEmpty && (savingAllProgress || store.progressSaveIsDue)
        // A commit while rounds acknowledged through the log are missing from SQLite would record them as indexed.
        guard !reindexPending, store.isInTransaction || savesProgress else {
            uncommittedSinceNS = nil
            return
        }
        do throws(SQLiteError) {
            if !store.isInTransaction { try store.beginImmediate() }
            try store.commitIndex(savingAllProgress: savingAllProgress)
            uncommittedSinceNS = nil
            indexedStreamOrdering.store(store.allocatedStreamOrdering, ordering: .releasing)
            if let used = try? store.usedBytes() { usedBytes.store(used, ordering: .relaxed) }
            // Deleting delivered rows may have freed a segment the log can reuse.
            logNeedsSpare.store(store.log.wantsSpare, ordering: .relaxed)
        } catch {
            _ = noteFailure(error, writes: 0)
            recoverAfterRollback(store: store, allocatedBefore: store.allocatedStreamOrdering)
            // The marks are kept; they are tried again after their interval (at least a second), not in a loop.
            store.oldestUnsavedProgressNS = ConditionLock.monotonicNS() + 1_000_000_000
        }
    }

    /// Rolls back the open transaction (if SQLite has not already) and indexes again, in a new one, the rounds
    /// the log holds after the last commit; never hands out again a stream ordering up to `allocatedBefore`, which
    /// the log may hold. Until that works, `reindexPending` holds every write back: a commit now would record the
    /// log's tail as indexed and lose those rounds.
    private func recoverAfterRollback(store: OutboxStore, allocatedBefore: Int64) {
        store.rollback()
        store.roundRecord = IngestLogRecord()
        uncommittedSinceNS = nil
        defer { store.reserveStreamOrderings(through: allocatedBefore) }
        do throws(SQLiteError) {
            try store.beginImmediate()
            uncommittedSinceNS = ConditionLock.monotonicNS()
            try store.reindexLog(from: try store.indexedLogPosition())
            if reindexPending {
                reindexPending = false
                reindexError = nil
                logger.notice("outbox indexed the PDU log again")
            }
        } catch {
            store.rollback()
            uncommittedSinceNS = nil
            if !reindexPending {
                logger.error("outbox could not index the PDU log again; writes are refused until it can, nothing acknowledged is lost",
                             metadata: ["error": "\(error)"])
            }
            reindexPending = true
            reindexError = error
        }
    }

    /// Classifies a failed write and logs it: a full filesystem or an I/O error once per episode (until a commit
    /// works again), since every request fails the same way meanwhile; any other error each time.
    private func noteFailure(_ error: SQLiteError, writes: Int) -> OutboxError {
        let failure: OutboxError = error.primaryCode == SQLITE_FULL ? .diskFull(path: path, error) : .storage(path: path, error)
        guard error.primaryCode == SQLITE_FULL || error.primaryCode == SQLITE_IOERR else {
            logger.warning("outbox write failed and was rolled back", metadata: ["error": "\(error)"])
            return failure
        }
        if let failed = failingWrites {
            failingWrites = failed + writes
        } else {
            failingWrites = writes
            logger.error("outbox writes are failing; ingest is refused until they work again, nothing committed is lost",
                         metadata: ["error": "\(failure)"])
        }
        return failure
    }

    private func read(_ job: WriterJob, store: OutboxStore) {
        do throws(SQLiteError) {
            let completion = try job.perform(store)
            completion()
        } catch {
            job.fail(.storage(path: path, error))
            recoverIfTransactionWasLost(store: store)
        }
    }

    /// SQLite rolls the whole transaction back on some errors (an I/O error, a full disk, no memory), a read's
    /// included. The rows of rounds acknowledged through the log went with it: they are indexed again before
    /// anything is committed, since a commit would record the log's tail as indexed without them.
    private func recoverIfTransactionWasLost(store: OutboxStore) {
        if uncommittedSinceNS != nil && !store.isInTransaction {
            recoverAfterRollback(store: store, allocatedBefore: store.allocatedStreamOrdering)
        }
    }
}
