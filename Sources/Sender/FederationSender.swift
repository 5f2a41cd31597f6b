import Federation
import Logging
import Outbox
import Transport

/// Delivers every accepted PDU and EDU to every destination: PDUs in stream order, one
/// transaction in flight per destination, within a fixed memory budget.
///
/// The driver of the `SenderScheduler`, which makes every decision: this actor feeds it
/// events (commits in commit order, ingest's handoffs, the answers of reads and sends, the
/// timer) with the injected `SenderClock`'s time, and carries its actions out. Everything
/// runs in the one task group `run()` owns: a task following commits, one timer for every
/// deadline of the sender, one writer that records progress and backoffs in order, and a task
/// per read or send, which the `TransactionManager` performs. Progress
/// (`last_successful_stream_ordering`), retry state and persistent EDUs live in the Outbox,
/// so a restart resumes where delivery stopped.
public actor FederationSender {
    /// The sender's time, monotonic for deadlines and wall for what is stored; shared with
    /// `FederationQuerier`.
    public nonisolated let clock: any SenderClock
    let outbox: Outbox
    let logger: Logger
    var scheduler: SenderScheduler
    private let manager: TransactionManager

    /// Commits and ingest's handoffs, in the order they happened.
    private enum Input: Sendable {
        case commit(OutboxCommit)
        case handoff(Handoff)
    }
    private nonisolated let inputs = AsyncStream.makeStream(of: Input.self)
    /// Reads and sends for `run()` to start, and the order to cancel those running.
    private enum Job: Sendable {
        case perform(SenderScheduler.Action)
        case cancelInFlight
    }
    private nonisolated let jobs = AsyncStream.makeStream(of: Job.self)
    /// Outbox writes, made one after the other in the order the scheduler asked for them: delivery
    /// progress, backoffs and the state changes the `destinations` stream carries.
    private nonisolated let records = AsyncStream.makeStream(of: SenderScheduler.Action.self)
    private var timerMS: Int64?
    private let timerChanged = WakeSignal()
    private var following = false
    private var running = false
    private var recordsWritten = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    public init(origin: String, outbox: Outbox, client: FederationClient, retryPolicy: RetryPolicy,
                settings: Settings = Settings(), clock: any SenderClock = SystemSenderClock(), logger: Logger) {
        self.clock = clock
        self.outbox = outbox
        self.logger = logger
        self.manager = TransactionManager(origin: origin, outbox: outbox, client: client, logger: logger)
        // Receivers drop a transaction whose (origin, txnId) they have seen. Start time plus
        // a random part keeps ids unique across restarts, even when a Pi without a clock
        // battery boots with its clock behind.
        var generator = SystemRandomNumberGenerator()
        let letters = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        let nonce = String((0..<6).map { _ in letters.randomElement(using: &generator)! })
        self.scheduler = SenderScheduler(settings: settings, retryPolicy: retryPolicy,
                                         txnIDPrefix: "\(clock.nowMS())\(nonce)", random: generator)
    }

    /// Starts following the Outbox's commits and queues every destination it still owes
    /// PDUs or EDUs for a paced wake-up (see `DestinationWakeupQueue`); called once at start-up,
    /// before ingest opens. `run()` then carries the work out.
    public func start() async throws {
        guard !following else { return }
        following = true
        // Commits are buffered in the stream from here on, and followed only once the
        // destinations owed something now are known: every other destination then owes
        // exactly what the stream brings, and needs no read of its backlog.
        outbox.observeCommits { [inputs] in inputs.continuation.yield(.commit($0)) }
        let outstanding = try await outbox.destinationsWithPendingWork()
        if !outstanding.isEmpty {
            logger.info("resuming delivery to destinations with outstanding units", metadata: ["count": "\(outstanding.count)"])
        }
        handle(.started(owing: outstanding.map(\.name)))
    }

    /// Sends until `shutdown` has finished; every task of the sender is a child of this call.
    public func run() async throws {
        try await start()
        guard !running else { return }
        running = true
        await withDiscardingTaskGroup { group in
            group.addTask { await self.follow() }
            group.addTask { await self.runTimer() }
            group.addTask { await self.writeRecords() }
            await withDiscardingTaskGroup { transfers in
                for await job in jobs.stream {
                    switch job {
                    case .perform(let action):
                        transfers.addTask { [manager] in
                            var next: SenderScheduler.Action? = action
                            while let action = next, let event = await manager.perform(action) {
                                next = await self.handle(event, keepingFirstJob: true)
                            }
                        }
                    case .cancelInFlight:
                        transfers.cancelAll()
                    }
                }
            }
            group.cancelAll()
        }
    }

    /// What ingest hands the sender besides commits, without waiting for it: an ingest request
    /// is answered as soon as its commit is durable, never behind the sender's fan-out.
    public enum Handoff: Sendable {
        /// Events just accepted, for the read-receipt rules.
        case recentEvents([(eventID: String, senderServer: String)])
        /// A typing, presence or receipt EDU: held in memory only, collapsed per key.
        case ephemeral(EphemeralEDU, destinations: [String])
    }

    /// Hands work over and returns at once; the sender takes it in order, after the commits
    /// handed over before it.
    public nonisolated func hand(_ handoff: Handoff) {
        inputs.continuation.yield(.handoff(handoff))
    }

    /// Stops starting transactions and waits up to `timeout` (on the sender's clock) for the
    /// ones in flight; those still running then are cancelled and sent again after the next
    /// start. Writes the delivery progress held in memory and ends `run()`. Returns whether
    /// everything in flight finished in time.
    public func shutdown(within timeout: Duration) async -> Bool {
        handle(.stop)
        inputs.continuation.finish()
        let deadline = clock.monotonicMS() + timeout.milliseconds
        let finished = await withTaskGroup(of: Bool.self) { race in
            race.addTask { await self.untilIdle(); return true }
            race.addTask { [clock] in
                try? await clock.sleep(untilMonotonicMS: deadline)
                return false
            }
            let first = await race.next() ?? true
            if !first { jobs.continuation.yield(.cancelInFlight) }
            race.cancelAll()
            await untilIdle()
            return first
        }
        let progress = scheduler.takeUnwrittenProgress()
        if !progress.isEmpty { records.continuation.yield(.recordProgress(progress)) }
        records.continuation.finish()
        if running {
            await untilRecordsWritten()
        } else {
            // `run()` never ran: nothing but this can have been asked for.
            await manager.record(.recordProgress(progress))
        }
        jobs.continuation.finish()
        return finished
    }

    // MARK: - Driving the scheduler

    /// Feeds one event to the scheduler and carries its actions out.
    func handle(_ event: SenderScheduler.Event) {
        _ = handle(event, keepingFirstJob: false)
    }

    /// `handle`, returning the first read or send the event asked for instead of starting a
    /// task for it, when `keepingFirstJob`: the task that reported a read's or a send's end
    /// performs it itself. An answer most often leads to one more read or send (the
    /// destination's next step, or a send by the destination waiting for the freed slot), and
    /// each task started costs thread wake-ups.
    private func handle(_ event: SenderScheduler.Event, keepingFirstJob: Bool) -> SenderScheduler.Action? {
        var kept: SenderScheduler.Action?
        // One pass of the sender's budget can spill thousands of queues: one line for all.
        var spilledForSenderBudget: (destinations: Int, first: String, pdus: Int) = (0, "", 0)
        for action in scheduler.handle(event, at: clock.now()) {
            switch action {
            case .load, .read, .readPersistentEDUs, .send:
                if keepingFirstJob, kept == nil {
                    kept = action
                } else {
                    jobs.continuation.yield(.perform(action))
                }
            case .recordProgress, .recordFailure:
                records.continuation.yield(action)
            case .armTimer(let atMS):
                timerMS = atMS
                timerChanged.signal()
            case .publish(let change):
                log(change)
                records.continuation.yield(action)
            case .queueSpilled(let name, let released, .destinationBudget):
                logger.info("destination's queue passed its memory budget; reading its backlog from the outbox",
                            metadata: ["destination": "\(name)", "pdus_released": "\(released)"])
            case .queueSpilled(let name, let released, .senderBudget):
                if spilledForSenderBudget.destinations == 0 { spilledForSenderBudget.first = name }
                spilledForSenderBudget.destinations += 1
                spilledForSenderBudget.pdus += released
            }
        }
        if spilledForSenderBudget.destinations > 0 {
            logger.info("sender memory budget reached; the largest queues read their backlogs from the outbox", metadata: [
                "destinations": "\(spilledForSenderBudget.destinations)", "first": "\(spilledForSenderBudget.first)",
                "pdus_released": "\(spilledForSenderBudget.pdus)",
            ])
        }
        if scheduler.sendingCount == 0 { resumeWaiters() }
        return kept
    }

    private func log(_ change: DestinationStateChange) {
        let metadata: Logger.Metadata = [
            "destination": "\(change.destination)", "stream_ordering": "\(change.lastSuccessfulStreamOrdering)",
        ]
        switch change.state {
        case .up: logger.info("destination is reachable again", metadata: metadata)
        case .catchingUp: logger.info("catching up: sending the newest PDU of each room", metadata: metadata)
        case .caughtUp: logger.info("caught up; back to sending PDUs as they are accepted", metadata: metadata)
        case .backingOff: break // `TransactionManager.record` logs the failure with its interval.
        }
    }

    private func follow() async {
        for await input in inputs.stream {
            switch input {
            case .commit(let commit): handle(.committed(commit))
            case .handoff(.recentEvents(let events)): handle(.recentEvents(events))
            case .handoff(.ephemeral(let edu, let names)): handle(.ephemeralQueued(edu, destinations: names))
            }
        }
    }

    /// The sender's one timer: sleeps until the earliest time the scheduler asked for, and
    /// starts over whenever that time changes.
    private func runTimer() async {
        while !Task.isCancelled {
            let deadline = timerMS
            let fired = await withTaskGroup(of: Bool.self) { race in
                if let deadline {
                    race.addTask { [clock] in (try? await clock.sleep(untilMonotonicMS: deadline)) != nil }
                }
                race.addTask { [timerChanged] in
                    await timerChanged.wait()
                    return false
                }
                let first = await race.next() ?? false
                race.cancelAll()
                return first
            }
            if fired { handle(.timerFired) }
        }
    }

    private func writeRecords() async {
        for await record in records.stream {
            await manager.record(record)
            if case .recordProgress(let deliveries) = record { handle(.progressRecorded(deliveries)) }
        }
        recordsWritten = true
        resumeWaiters()
    }

    /// Returns once no destination holds a sending slot.
    private func untilIdle() async {
        while scheduler.sendingCount > 0 { await withCheckedContinuation { waiters.append($0) } }
    }

    private func untilRecordsWritten() async {
        while !recordsWritten { await withCheckedContinuation { waiters.append($0) } }
    }

    private func resumeWaiters() {
        let resumed = waiters
        waiters.removeAll()
        for waiter in resumed { waiter.resume() }
    }
}
