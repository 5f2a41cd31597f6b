import Federation
import Logging
import Outbox
import Transport

/// Delivers every accepted PDU and EDU to every destination: PDUs in stream order, one
/// transaction in flight per destination, within a fixed memory budget.
///
/// Each destination's decisions live in its `PerDestinationQueue`; this actor carries them
/// out: it follows the Outbox's commits in commit order (so a destination's in-memory queue
/// is exactly what it is owed), reads from the Outbox when a queue is loaded or catching
/// up, builds transactions from shared PDU references and EDUs, sends them through the
/// `FederationClient`, and sleeps on the injected `SenderClock` until a backoff ends: a quiet
/// destination is retried by its timer, not by new traffic. A failed transaction is retried
/// with the same txnId and body. Progress (`last_successful_stream_ordering`), retry state
/// and persistent EDUs live in the Outbox, so a restart resumes where delivery stopped.
public actor FederationSender {
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
        /// queue costing a few bytes each. A few times the connection cap, so the pool still
        /// chooses among more destinations than it has connections (the daemon uses 4×).
        public var maxDestinationsSending = 256
        /// Destinations whose state is kept besides those sending: past it, those with nothing
        /// owed, in flight or scheduled the longest are dropped, and read again from the outbox
        /// if they are met again. Keeps memory bounded by configuration, not by every server
        /// met since start, while the servers of busy rooms stay loaded (the daemon keeps 4×
        /// the connection cap: every warm connection's destination and more).
        public var maxQuietDestinations = 4_096

        public init() {}
    }

    private struct Destination {
        var queue: PerDestinationQueue
        var running = false
        /// Waiting in `readyToRun` for a sending slot.
        var readyToRun = false
        var wakeRequested = false
        /// Bumped whenever persistent EDUs are committed for the destination.
        var eduNotifications = 0
        var retryTimer: Task<Void, Never>?
        var loop: Task<Void, Never>?
        /// Its place in `quietOrder` when it last went quiet; an entry with another ticket is stale.
        var quietTicket = 0
    }

    private let origin: String
    private let outbox: Outbox
    private let client: FederationClient
    private let retryPolicy: RetryPolicy
    private let settings: Settings
    /// The sender's time, monotonic for deadlines and wall for what is stored; shared with
    /// `FederationQuerier`.
    public nonisolated let clock: any SenderClock
    private let logger: Logger

    private var destinations: [String: Destination] = [:]
    private var runningCount = 0
    private var readyToRun = FrontConsumedQueue<String>()
    /// Destinations in the order they went quiet, oldest first, with their tickets: the ones
    /// whose state goes first once the sender holds too many (`forgetOldestQuietDestinations`).
    private var quietOrder = FrontConsumedQueue<(name: String, ticket: Int)>()
    private var nextQuietTicket = 1
    private var pdusInMemory = 0
    private var ephemeral: EphemeralEDUBuffer
    private var receiptPacer = ReadReceiptPacer(recentEventCapacity: 10_000)
    private let txnIDPrefix: String
    private var txnCounter = 0
    private var stopping = false
    private var idleWaiters: [CheckedContinuation<Void, Never>] = []
    private var metrics = Metrics()
    private var random = SystemRandomNumberGenerator()
    private var startupWakeups: DestinationWakeupQueue
    private var pacedWakeups: DestinationWakeupQueue
    private var startupPacer: Task<Void, Never>?
    private var delayedPacer: Task<Void, Never>?
    private var commitFollower: Task<Void, Never>?
    /// Commits and ingest's handoffs, in the order they happened.
    private enum Input: Sendable {
        case commit(OutboxCommit)
        case handoff(Handoff)
    }
    private nonisolated let inputs = AsyncStream.makeStream(of: Input.self)
    /// Delivery progress not written to the outbox yet, by destination. Deliveries that finish
    /// one after the other (a paced fan-out) then share one commit instead of paying one each;
    /// a crash loses at most `progressFlushInterval` of progress, which only means re-sending.
    private var unflushedProgress: [String: Outbox.Delivery] = [:]
    private var progressFlusher: Task<Void, Never>?
    /// Set once `start` has listed the destinations owed something: any destination met
    /// after that owed nothing at start.
    private var backlogsKnown = false

    public init(origin: String, outbox: Outbox, client: FederationClient, retryPolicy: RetryPolicy,
                settings: Settings = Settings(), clock: any SenderClock = SystemSenderClock(), logger: Logger) {
        self.origin = origin
        self.outbox = outbox
        self.client = client
        self.retryPolicy = retryPolicy
        self.settings = settings
        self.clock = clock
        self.logger = logger
        self.ephemeral = EphemeralEDUBuffer(maxEntries: settings.maxEphemeralEDUs)
        self.startupWakeups = DestinationWakeupQueue(interval: settings.startupWakeupInterval)
        self.pacedWakeups = ReadReceiptPacer.delayedWakeupQueue(
            transactionsPerRoomPerSecond: settings.readReceiptTransactionsPerRoomPerSecond)
        // Receivers drop a transaction whose (origin, txnId) they have seen. Start time plus
        // a random part keeps ids unique across restarts, even when a Pi without a clock
        // battery boots with its clock behind.
        var generator = SystemRandomNumberGenerator()
        let letters = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        let nonce = String((0..<6).map { _ in letters.randomElement(using: &generator)! })
        self.txnIDPrefix = "\(clock.nowMS())\(nonce)"
    }

    public var currentMetrics: Metrics {
        var snapshot = metrics
        snapshot.destinationsInBackoff = 0
        snapshot.destinationsCatchingUp = 0
        snapshot.destinationsReadingBacklog = 0
        snapshot.activeDestinations = runningCount + readyToRun.count
        for destination in destinations.values {
            if destination.queue.isBackingOff { snapshot.destinationsInBackoff += 1 }
            if destination.queue.phase == .catchingUp { snapshot.destinationsCatchingUp += 1 }
            if destination.queue.phase == .readingBacklog { snapshot.destinationsReadingBacklog += 1 }
        }
        snapshot.destinationsAwaitingWakeup = startupWakeups.count + pacedWakeups.count
        snapshot.pdusInMemory = pdusInMemory
        snapshot.ephemeralEDUsQueued = ephemeral.count
        snapshot.ephemeralEDUsDroppedExpired = ephemeral.droppedExpired
        snapshot.ephemeralEDUsDroppedForMemory = ephemeral.droppedForMemory
        snapshot.destinationsInMemory = destinations.count
        return snapshot
    }

    /// Starts following the Outbox's commits and queues every destination it still owes
    /// PDUs or EDUs for a paced wake-up (see `DestinationWakeupQueue`); called once at start-up,
    /// before ingest opens.
    public func start() async throws {
        guard commitFollower == nil else { return }
        // Commits are buffered in the stream from here on, and followed only once the
        // destinations owed something now are known: every other destination then owes
        // exactly what the stream brings, and needs no read of its backlog.
        outbox.observeCommits { [inputs] in inputs.continuation.yield(.commit($0)) }
        let outstanding = try await outbox.destinationsWithPendingWork()
        if !outstanding.isEmpty {
            logger.info("resuming delivery to destinations with outstanding units", metadata: ["count": "\(outstanding.count)"])
        }
        for record in outstanding where destinations[record.name] == nil {
            _ = destination(record.name)
            startupWakeups.enqueue(record.name)
        }
        backlogsKnown = true
        commitFollower = Task { await self.follow(inputs.stream) }
        startPacers()
    }

    /// What ingest hands the sender besides commits, without waiting for it: an ingest request
    /// is answered as soon as its commit is durable, never behind the sender's fan-out.
    public enum Handoff: Sendable {
        /// Events just accepted (`noteRecentEvents`).
        case recentEvents([(eventID: String, senderServer: String)])
        /// A typing, presence or receipt EDU (`queueEphemeral`).
        case ephemeral(EphemeralEDU, destinations: [String])
    }

    /// Hands work over and returns at once; the sender takes it in order, after the commits
    /// handed over before it.
    public nonisolated func hand(_ handoff: Handoff) {
        inputs.continuation.yield(.handoff(handoff))
    }

    /// Typing, presence and read receipts the homeserver handed over: held in memory only,
    /// collapsed per key. Typing goes out at once; presence wakes destinations at a pace;
    /// read receipts go out at once to small rooms, for recent events and to the event's
    /// own server, and at a pace to the rest (Synapse's rules).
    public func queueEphemeral(_ edu: EphemeralEDU, to names: [String]) {
        guard !stopping, !names.isEmpty else { return }
        let now = clock.monotonicMS()
        ephemeral.add(edu, for: names, nowMS: now)
        switch edu {
        case .typing:
            for name in names { wake(name) }
        case .presence:
            for name in names { wakeLater(name) }
        case .receipts:
            let delivery = receiptPacer.schedule(receiptFor: edu.receiptedEventIDs, to: names, nowMS: now)
            for name in delivery.immediate { wake(name) }
            for name in delivery.delayed { wakeLater(name) }
        }
    }

    /// Events just accepted, for the read-receipt rules ("received less than a minute ago",
    /// "the event's own server").
    public func noteRecentEvents(_ events: [(eventID: String, senderServer: String)]) {
        let now = clock.monotonicMS()
        for event in events { receiptPacer.eventReceived(eventID: event.eventID, senderServer: event.senderServer, receivedMS: now) }
    }

    /// Stops starting transactions and waits up to `timeout` for the ones in flight; those
    /// still running then are cancelled (they are resent after the next start). Returns
    /// whether everything in flight finished in time.
    public func shutdown(within timeout: Duration) async -> Bool {
        stopping = true
        commitFollower?.cancel()
        startupPacer?.cancel()
        delayedPacer?.cancel()
        for name in destinations.keys {
            destinations[name]?.retryTimer?.cancel()
            destinations[name]?.retryTimer = nil
        }
        guard runningCount > 0 else {
            await flushProgress()
            return true
        }
        let deadline = Task {
            try? await Task.sleep(for: timeout)
            self.resumeIdleWaiters()
        }
        await withCheckedContinuation { idleWaiters.append($0) }
        deadline.cancel()
        let finished = runningCount == 0
        if !finished {
            for state in destinations.values { state.loop?.cancel() }
        }
        progressFlusher?.cancel()
        await flushProgress()
        return finished
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

    /// The in-memory state of `name`; nil when the sender has not met it since start.
    public func status(of name: String) -> DestinationStatus? {
        guard let state = destinations[name] else { return nil }
        return DestinationStatus(
            isSending: state.running, phase: state.queue.phase, transactionInFlight: state.queue.inFlight?.txnID,
            pdusInFlight: state.queue.inFlight?.pdus.count ?? 0, edusInFlight: state.queue.inFlight?.edus.count ?? 0,
            queuedPDUs: state.queue.queuedPDUCount, queuedEphemeralEDUs: ephemeral.hasPending(for: name),
            retryScheduled: state.retryTimer != nil)
    }

    /// Clears the destination's backoff and tries it at once: the one entry point for the
    /// admin API's `wake` and `DELETE …/backoff` and the replication command
    /// `REMOTE_SERVER_UP`. Returns false when the destination is unknown.
    @discardableResult
    public func resetBackoffAndWake(_ name: String) async throws -> Bool {
        let known = try await outbox.resetBackoff(destination: name)
        guard known || destinations[name] != nil else { return false }
        destinations[name]?.retryTimer?.cancel()
        destinations[name]?.retryTimer = nil
        destinations[name]?.queue.clearBackoff()
        logger.info("backoff cleared; trying the destination now", metadata: ["destination": "\(name)"])
        wake(name)
        return true
    }

    /// When `name`'s backoff ends, in wall-clock ms, or nil when it is not backing off: from
    /// the state in memory, or for a destination not loaded from its outbox record, read as
    /// `PerDestinationQueue.loaded` reads it (ending at most one interval from now).
    public func backoffEnd(of name: String) async -> Int64? {
        let monotonicNow = clock.monotonicMS()
        let wallNow = clock.nowMS()
        if let queue = destinations[name]?.queue, queue.phase != .unloaded, queue.phase != .loading {
            guard queue.retryIntervalMS > 0, queue.retryDueMS > monotonicNow else { return nil }
            return wallNow + (queue.retryDueMS - monotonicNow)
        }
        guard let record = try? await outbox.destination(name), record.retryIntervalMS > 0 else { return nil }
        var queue = PerDestinationQueue(budget: 1, catchUpAfterMS: settings.catchUpAfterMS)
        queue.loaded(record, owed: [], nowMS: monotonicNow, wallNowMS: wallNow)
        guard queue.retryDueMS > monotonicNow else { return nil }
        return wallNow + (queue.retryDueMS - monotonicNow)
    }

    /// Answers once the actor has run a job: the watchdog's health probe.
    public func probe() {}

    // MARK: - Commits and wake-ups

    private func follow(_ inputs: AsyncStream<Input>) async {
        for await input in inputs {
            switch input {
            case .commit(let commit):
                committed(commit)
            case .handoff(.recentEvents(let events)):
                noteRecentEvents(events)
            case .handoff(.ephemeral(let edu, let names)):
                queueEphemeral(edu, to: names)
            }
        }
    }

    private func committed(_ commit: OutboxCommit) {
        // A destination backing off has its units queued and its retry timer armed: waking it
        // would only arm the timer again, for every destination of the room on every commit.
        var woken = Set<String>()
        for pdu in commit.pdus {
            for name in pdu.destinations {
                let (released, backingOff) = updateDestination(name) { state in
                    (state.queue.pduCommitted(pdu.pdu), state.retryTimer != nil)
                }
                if released > 0 {
                    metrics.queueSpills += 1
                    logger.info("destination's queue passed its memory budget; reading its backlog from the outbox",
                                metadata: ["destination": "\(name)", "pdus_released": "\(released)"])
                }
                if !backingOff { woken.insert(name) }
            }
        }
        var pacedWakes = Set<String>()
        for edu in commit.edus {
            for name in edu.destinations {
                let backingOff = updateDestination(name) { state in
                    state.queue.persistentEDUsMayBePending = true
                    state.eduNotifications += 1
                    return state.retryTimer != nil
                }
                guard !backingOff else { continue }
                // To-device messages go at once; device-list updates reach many servers at
                // once and wake them at a pace (Synapse's `immediate=False`).
                if edu.isDeviceListUpdate { pacedWakes.insert(name) } else { woken.insert(name) }
            }
        }
        for name in woken { wake(name) }
        for name in pacedWakes.subtracting(woken) { wakeLater(name) }
        enforceGlobalBudget()
    }

    /// Once the references held pass `maxPDUsInMemory`, spills the largest queues until three
    /// quarters of it are held. A fan-out to thousands of servers adds thousands of references
    /// per commit: the slack makes the pass over every destination an occasional cost, not one
    /// per commit, and one sorted pass replaces a search for the largest queue per spill.
    private func enforceGlobalBudget() {
        guard pdusInMemory > settings.maxPDUsInMemory else { return }
        let target = settings.maxPDUsInMemory - settings.maxPDUsInMemory / 4
        var largestFirst: [(name: String, references: Int)] = []
        for (name, state) in destinations where state.queue.pduReferenceCount > 0 {
            largestFirst.append((name, state.queue.pduReferenceCount))
        }
        largestFirst.sort { $0.references > $1.references }
        var spilled: [String] = []
        var releasedTotal = 0
        for (name, _) in largestFirst where pdusInMemory > target {
            let released = destinations[name]!.queue.spill()
            pdusInMemory -= released
            releasedTotal += released
            metrics.queueSpills += 1
            spilled.append(name)
        }
        logger.info("sender memory budget reached; the largest queues read their backlogs from the outbox",
                    metadata: ["destinations": "\(spilled.count)", "first": "\(spilled.first ?? "")",
                               "pdus_released": "\(releasedTotal)"])
    }

    private func destination(_ name: String) -> Destination {
        if let existing = destinations[name] { return existing }
        let created = newDestination()
        destinations[name] = created
        return created
    }

    private func newDestination() -> Destination {
        Destination(queue: PerDestinationQueue(
            budget: settings.maxPDUsInMemoryPerDestination, catchUpAfterMS: settings.catchUpAfterMS,
            backlogKnownEmpty: backlogsKnown))
    }

    private func wake(_ name: String) {
        guard !stopping else { return }
        startupWakeups.remove(name)
        pacedWakeups.remove(name)
        var state = destination(name)
        state.wakeRequested = true
        destinations[name] = state
        guard !state.running, !state.readyToRun else { return }
        if runningCount < settings.maxDestinationsSending {
            run(name)
        } else {
            destinations[name]?.readyToRun = true
            readyToRun.append(name)
        }
    }

    private func run(_ name: String) {
        guard var state = destinations[name] else { return }
        runningCount += 1
        state.readyToRun = false
        state.running = true
        state.loop = Task { await self.transmissionLoop(name) }
        destinations[name] = state
    }

    /// Gives free sending slots to the destinations waiting longest for one.
    private func runReadyDestinations() {
        while runningCount < settings.maxDestinationsSending, !stopping, let name = readyToRun.popFirst() {
            if destinations[name]?.readyToRun == true { run(name) }
        }
    }

    /// Wakes `name` through the paced queue, unless it is sending already.
    private func wakeLater(_ name: String) {
        guard !stopping else { return }
        if destinations[name]?.running == true || destinations[name]?.readyToRun == true {
            destinations[name]?.wakeRequested = true
            return
        }
        pacedWakeups.enqueue(name)
        startPacers()
    }

    /// The two paced wake-up queues: start-up (at the new-connection budget's pace) and
    /// delayed (presence, receipts, device lists; everyone within 30 s).
    private enum Pace {
        case startup, delayed
    }

    private func startPacers() {
        if startupPacer == nil, startupWakeups.count > 0 {
            startupPacer = Task { await self.pace(.startup) }
        }
        if delayedPacer == nil, pacedWakeups.count > 0 {
            delayedPacer = Task { await self.pace(.delayed) }
        }
    }

    private func pace(_ which: Pace) async {
        let clock = ContinuousClock()
        while !stopping, !Task.isCancelled {
            let (names, nextAt) = which == .startup ? startupWakeups.due(at: clock.now) : pacedWakeups.due(at: clock.now)
            for name in names { wake(name) }
            guard let nextAt else { break }
            try? await Task.sleep(until: nextAt, clock: clock)
        }
        switch which {
        case .startup: startupPacer = nil
        case .delayed: delayedPacer = nil
        }
        if !stopping { startPacers() }
    }

    // MARK: - Transmission

    private func transmissionLoop(_ name: String) async {
        var log = logger
        log[metadataKey: "destination"] = "\(name)"
        loop: while !stopping, !Task.isCancelled {
            destinations[name]?.wakeRequested = false
            let step = updateQueue(name) { $0.nextStep(nowMS: clock.monotonicMS(), maxPDUs: settings.maxPDUsPerTransaction) }
            let transaction: OutgoingTransaction
            do {
                switch step {
                case .waitUntil(let deadline):
                    scheduleRetry(name, atMS: deadline)
                    break loop
                case .load:
                    let record = try await outbox.destination(name)
                    var owed: [StoredPDU] = []
                    if destinations[name]?.queue.needsBacklogRead != false {
                        owed = try await outbox.pendingPDUs(
                            for: name, after: record?.lastSuccessfulStreamOrdering ?? 0,
                            limit: settings.maxPDUsInMemoryPerDestination + 1)
                    }
                    updateQueue(name) { $0.loaded(record, owed: owed, nowMS: clock.monotonicMS(), wallNowMS: clock.nowMS()) }
                    enforceGlobalBudget()
                    if destinations[name]?.queue.phase == .catchingUp {
                        log.info("catching up: sending the newest PDU of each room", metadata: [
                            "after_stream_ordering": "\(destinations[name]?.queue.lastSuccessfulStreamOrdering ?? 0)",
                        ])
                    }
                    continue loop
                case .resend:
                    guard let inFlight = destinations[name]?.queue.inFlight else { continue loop }
                    transaction = inFlight
                case .readCatchUp(let after, let limit), .readBacklog(let after, let limit):
                    let isCatchUp = step == .readCatchUp(after: after, limit: limit)
                    let read = isCatchUp
                        ? try await outbox.catchUpPDUs(for: name, after: after, limit: limit)
                        : try await outbox.pendingPDUs(for: name, after: after, limit: limit)
                    guard let pdus = updateQueue(name, { $0.caughtUp(with: read) }) else {
                        log.info("caught up; back to sending PDUs as they are accepted")
                        continue loop
                    }
                    if pdus.isEmpty { continue loop }
                    guard let built = try await buildTransaction(name, pdus: pdus, isCatchUp: isCatchUp) else { continue loop }
                    transaction = built
                case .build(let pdus):
                    guard let built = try await buildTransaction(name, pdus: pdus, isCatchUp: false) else {
                        if destinations[name]?.wakeRequested == true { continue loop }
                        break loop
                    }
                    transaction = built
                }
            } catch {
                // The units are still in the outbox: try again later rather than forget them.
                await recordFailure(name, reason: "cannot read outstanding units from the outbox: \(error)", logger: log)
                break loop
            }
            if await deliver(transaction, to: name, logger: log) == false { break loop }
        }
        finishLoop(name)
    }

    /// Runs `change` on the destination's queue, in place, keeping the count of PDU
    /// references in step.
    @discardableResult
    private func updateQueue<T>(_ name: String, _ change: (inout PerDestinationQueue) -> T) -> T {
        updateDestination(name) { change(&$0.queue) }
    }

    /// Changes `name`'s state in place (creating it if new), with one lookup: a commit for a
    /// room of thousands of servers comes here once per server.
    private func updateDestination<T>(_ name: String, _ change: (inout Destination) -> T) -> T {
        var referencesAdded = 0
        let result = { (state: inout Destination) -> T in
            let before = state.queue.pduReferenceCount
            let result = change(&state)
            referencesAdded = state.queue.pduReferenceCount - before
            return result
        }(&destinations[name, default: newDestination()])
        pdusInMemory += referencesAdded
        return result
    }

    /// A transaction of `pdus` and whatever EDUs are waiting, or nil when there is nothing to send.
    private func buildTransaction(_ name: String, pdus: [StoredPDU], isCatchUp: Bool) async throws -> OutgoingTransaction? {
        let unitLimit = destinations[name]?.queue.unitLimit ?? .max
        let eduRoom = min(TransactionBody.maximumEDUCount, max(0, unitLimit - pdus.count))
        var persistent: [StoredEDU] = []
        if eduRoom > 0, destinations[name]?.queue.persistentEDUsMayBePending == true {
            let notifications = destinations[name]?.eduNotifications ?? 0
            // Read per kind, so a flood of to-device messages cannot push device-list updates
            // out of the read and out of their reserved slots.
            let limit = TransactionBody.maximumEDUCount
            let toDevice: Set<String> = [TransactionEDUPlan.toDeviceEDUType]
            let deviceLists = TransactionEDUPlan.deviceListEDUTypes
            persistent = try await outbox.pendingEDUs(for: name, limit: limit, onlyTypes: toDevice)
            persistent += try await outbox.pendingEDUs(for: name, limit: limit, onlyTypes: deviceLists)
            persistent += try await outbox.pendingEDUs(for: name, limit: limit, exceptTypes: toDevice.union(deviceLists))
            let unflushed = unflushedEDUIDs(of: name)
            if !unflushed.isEmpty { persistent.removeAll { unflushed.contains($0.eduID) } }
            persistent.sort { $0.eduID < $1.eduID }
            if persistent.isEmpty, destinations[name]?.eduNotifications == notifications {
                destinations[name]?.queue.persistentEDUsMayBePending = false
            }
        }
        let plan = TransactionEDUPlan.assemble(for: name, ephemeral: &ephemeral, persistent: persistent,
                                               nowMS: clock.monotonicMS(), maxEDUs: eduRoom)
        guard !pdus.isEmpty || !plan.edus.isEmpty else { return nil }
        txnCounter += 1
        let transaction = OutgoingTransaction(
            txnID: "\(txnIDPrefix)\(txnCounter)", originServerTS: clock.nowMS(), pdus: pdus, edus: plan.edus,
            persistentEDUIDs: plan.persistentEDUIDs, isCatchUp: isCatchUp)
        updateQueue(name) { $0.send(transaction) }
        enforceGlobalBudget()
        return transaction
    }

    /// Sends one transaction; returns whether the destination may go on to the next one.
    private func deliver(_ transaction: OutgoingTransaction, to name: String, logger: Logger) async -> Bool {
        var log = logger
        log[metadataKey: "txn_id"] = "\(transaction.txnID)"
        let request = FederationRequest(method: "PUT", target: "/_matrix/federation/v1/send/\(transaction.txnID)",
                                        makeBody: { [origin] in transaction.body(origin: origin) })
        let requestClass: RequestClass = transaction.isCatchUp ? .catchUp : transaction.pdus.isEmpty ? .eduTransaction : .pduTransaction
        let outcome: TransactionOutcome
        do {
            let response = try await client.send(request, to: try ServerName(name), class: requestClass)
            outcome = TransactionOutcome.classify(statusCode: response.statusCode, body: response.bodyBytes)
            if outcome == .delivered { logPDUErrors(response.bodyBytes, logger: log) }
        } catch {
            outcome = TransactionOutcome.classify(error: error)
        }
        switch outcome {
        case .delivered:
            let wasBackingOff = updateQueue(name) { $0.delivered(transaction) }
            metrics.transactionsSent += 1
            metrics.pdusDelivered += transaction.pdus.count
            metrics.edusDelivered += transaction.edus.count
            recordProgress(of: transaction, to: name)
            if wasBackingOff { log.info("destination is reachable again") }
            log.debug("transaction delivered", metadata: [
                "pdus": "\(transaction.pdus.count)", "edus": "\(transaction.edus.count)",
                "stream_ordering": "\(transaction.lastStreamOrdering ?? 0)",
            ])
            return true
        case .rejected(let reason):
            let skipped = updateQueue(name) { $0.rejected(transaction) }
            if skipped {
                metrics.unitsRejected += transaction.unitCount
                log.error("destination refuses this unit; skipping it", metadata: [
                    "error": "\(reason)", "event_id": "\(transaction.pdus.first?.eventID ?? "")",
                ])
                recordProgress(of: transaction, to: name)
            } else {
                destinations[name]?.queue.persistentEDUsMayBePending = true
                log.warning("destination refuses the transaction; splitting it", metadata: [
                    "error": "\(reason)", "units": "\(transaction.unitCount)",
                ])
            }
            return true
        case .failed(let reason):
            await recordFailure(name, reason: reason, logger: log)
            return false
        case .deferred(let reason):
            metrics.transactionsDeferred += 1
            let retryAt = clock.monotonicMS() + Int64.random(in: Self.localRetryDelayMS, using: &random)
            updateQueue(name) { $0.deferred(untilMS: retryAt) }
            log.info("transaction held back by southbridge's own limits; trying it again shortly", metadata: [
                "error": "\(reason)",
            ])
            scheduleRetry(name, atMS: retryAt)
            return false
        }
    }

    /// How soon a transaction that southbridge's own limits held back is tried again: soon,
    /// since the destination did nothing wrong, and spread over a second so that destinations
    /// held back together do not come back together.
    static let localRetryDelayMS: ClosedRange<Int64> = 1_000...2_000

    /// How long delivery progress may wait in memory before it is written: long enough for a
    /// paced fan-out's deliveries to share commits, short enough that a crash re-sends little.
    static let progressFlushInterval: Duration = .milliseconds(500)

    /// Notes what `transaction` delivered; `flushProgress` writes it to the outbox with the
    /// progress of every other destination, at most `progressFlushInterval` later.
    private func recordProgress(of transaction: OutgoingTransaction, to name: String) {
        guard transaction.lastStreamOrdering != nil || !transaction.persistentEDUIDs.isEmpty else { return }
        var delivery = unflushedProgress[name] ?? Outbox.Delivery(destination: name, upTo: nil, eduIDs: [])
        if let last = transaction.lastStreamOrdering { delivery.upTo = max(delivery.upTo ?? last, last) }
        delivery.eduIDs += transaction.persistentEDUIDs
        unflushedProgress[name] = delivery
        guard progressFlusher == nil else { return }
        progressFlusher = Task {
            try? await Task.sleep(for: Self.progressFlushInterval)
            await self.flushProgress()
        }
    }

    /// Writes the progress noted since the last flush, every destination's in one commit.
    private func flushProgress() async {
        progressFlusher = nil
        guard !unflushedProgress.isEmpty else { return }
        let deliveries = Array(unflushedProgress.values)
        unflushedProgress.removeAll()
        do {
            try await outbox.recordDeliveries(deliveries)
        } catch {
            // Delivery goes on from memory; only a restart would send these units again.
            logger.error("could not record delivery progress in the outbox", metadata: [
                "error": "\(error)", "destinations": "\(deliveries.count)",
            ])
        }
    }

    /// Delivered persistent EDUs whose delivery is not written yet: not to be read back and sent again.
    private func unflushedEDUIDs(of name: String) -> Set<Int64> {
        Set(unflushedProgress[name]?.eduIDs ?? [])
    }

    private func recordFailure(_ name: String, reason: String, logger: Logger) async {
        // Writing a delivery clears the retry state: the progress noted before this failure
        // goes first, so it cannot undo the failure written after it.
        if unflushedProgress[name] != nil { await flushProgress() }
        metrics.transactionsFailed += 1
        let interval = retryPolicy.interval(after: destinations[name]?.queue.retryIntervalMS ?? 0, using: &random)
        let now = clock.monotonicMS()
        let enteredCatchUp = updateQueue(name) { $0.failed(nowMS: now, intervalMS: interval) }
        if enteredCatchUp {
            ephemeral.removeAll(for: name)
            destinations[name]?.queue.persistentEDUsMayBePending = true
        }
        logger.warning("transaction failed, will retry", metadata: [
            "error": "\(reason)", "retry_in_ms": "\(interval)", "catching_up": "\(enteredCatchUp)",
        ])
        do {
            try await outbox.recordFailure(destination: name, retryLastTS: clock.nowMS(), retryIntervalMS: interval)
        } catch {
            logger.error("could not record the failure in the outbox", metadata: ["error": "\(error)"])
        }
        scheduleRetry(name, atMS: now + interval)
    }

    private func finishLoop(_ name: String) {
        guard var state = destinations[name] else { return }
        state.running = false
        state.loop = nil
        destinations[name] = state
        runningCount -= 1
        if state.wakeRequested, state.retryTimer == nil, !stopping {
            wake(name)
        } else if isQuiet(name) {
            destinations[name]?.quietTicket = nextQuietTicket
            quietOrder.append((name, nextQuietTicket))
            nextQuietTicket += 1
            forgetOldestQuietDestinations()
        }
        runReadyDestinations()
        if runningCount == 0 { resumeIdleWaiters() }
    }

    /// Whether `name` has nothing owed, in flight, scheduled or waiting in memory, so that its
    /// state can be dropped: met again, it is loaded from its outbox record and owes exactly
    /// what commits bring from then on (`backlogsKnown`), as a destination never met would.
    private func isQuiet(_ name: String) -> Bool {
        guard backlogsKnown, let state = destinations[name] else { return false }
        return !state.running && !state.readyToRun && !state.wakeRequested && state.retryTimer == nil
            && state.queue.isQuiet && !state.queue.persistentEDUsMayBePending && !ephemeral.hasPending(for: name)
    }

    /// Drops the state of the destinations quiet the longest while the sender holds more than
    /// `settings.maxQuietDestinations` besides those sending. Entries of destinations busy again
    /// since are stale: skipped at the front, and cleared out once they outnumber the destinations.
    private func forgetOldestQuietDestinations() {
        let isCurrent = { (entry: (name: String, ticket: Int)) in
            self.destinations[entry.name]?.quietTicket == entry.ticket && self.isQuiet(entry.name)
        }
        if quietOrder.count > 2 * destinations.count + 64 { quietOrder.keepOnly(isCurrent) }
        while let oldest = quietOrder.first {
            guard isCurrent(oldest) else {
                _ = quietOrder.popFirst()
                continue
            }
            guard destinations.count > settings.maxQuietDestinations + runningCount + readyToRun.count else { return }
            _ = quietOrder.popFirst()
            destinations[oldest.name] = nil
        }
    }

    private func resumeIdleWaiters() {
        let waiters = idleWaiters
        idleWaiters.removeAll()
        for waiter in waiters { waiter.resume() }
    }

    private func scheduleRetry(_ name: String, atMS deadline: Int64) {
        destinations[name]?.retryTimer?.cancel()
        let clock = self.clock
        destinations[name]?.retryTimer = Task {
            do {
                try await clock.sleep(untilMonotonicMS: deadline)
            } catch {
                return
            }
            self.retryTimerFired(name)
        }
    }

    private func retryTimerFired(_ name: String) {
        destinations[name]?.retryTimer = nil
        wake(name)
    }

    /// A 200 may still carry per-PDU errors; they are logged and never block the queue.
    private nonisolated func logPDUErrors(_ body: [UInt8], logger: Logger) {
        guard let response = try? JSONValue.parse(body), case .object(let fields) = response,
              case .object(let results)? = fields["pdus"] else { return }
        for (eventID, result) in results {
            if case .object(let entry) = result, case .string(let message)? = entry["error"] {
                logger.warning("destination rejected a PDU", metadata: ["event_id": "\(eventID)", "error": "\(message)"])
            }
        }
    }
}
