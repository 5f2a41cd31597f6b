import Federation
import Outbox
import Transport

/// Every decision of the `FederationSender` that spans destinations: events go in with the
/// time they happened, actions come out, and the sender only carries the actions out (reads,
/// sends, writes, one timer). What to do next for one destination stays with its
/// `PerDestinationQueue`; this type decides when each destination gets to ask.
///
/// Guarantees, whatever order events arrive in:
/// - at most `maxDestinationsSending` destinations hold a sending slot (preparing or sending a
///   transaction); a destination woken while the slots are taken waits in a ready queue, and
///   slots go to the ready destinations in the order they were woken. A destination keeps its
///   slot for its next transaction only while nobody waits, so none starves;
/// - a destination with work is sending, ready, or has a deadline (a backoff, a transaction
///   held back by southbridge's own limits) or a paced wake-up: every deadline of every
///   destination is in one ordered structure, and `armTimer` always names the earliest time
///   anything is due (deadlines, the start-up and delayed wake-up queues, the delivery
///   progress to write), so the whole sender needs one timer;
/// - PDUs leave in stream order (the queue's rule), and at most `maxPDUsInMemory` PDU
///   references are held across destinations once an event has been handled: past it the
///   largest queues are dropped and read back from the Outbox (`queueSpilled`);
/// - besides those sending or ready, at most `maxQuietDestinations` destinations with nothing
///   owed, in flight or scheduled are held; the ones quiet the longest are forgotten;
/// - a destination's state changes (backing off, up again, catching up, caught up) come out
///   as `publish` actions, in the order they happened.
///
/// Time is passed in as `SenderTime`; the scheduler reads no clock, starts no task and does no
/// I/O. Randomness (retry jitter) comes from the generator it is given.
public struct SenderScheduler: Sendable {
    /// What the driver must do.
    public enum Action: Sendable {
        /// Read the destination's record and, when `owedPDULimit` is set, up to that many PDUs
        /// owed past its mark; report `loaded` (or `outboxReadFailed`).
        case load(String, owedPDULimit: Int?)
        /// Read PDUs owed beyond `after` in stream order (`backlog`) or the newest PDU of each
        /// room (`catchUp`); report `read` (or `outboxReadFailed`).
        case read(String, ReadKind, after: Int64, limit: Int)
        /// Read the persistent EDUs waiting for the destination, up to `limit` of each kind;
        /// report `persistentEDUsRead` (or `outboxReadFailed`).
        case readPersistentEDUs(String, TransactionDraft, limit: Int)
        /// Send the transaction (the same txnId and bytes when it is a retry); report
        /// `transactionFinished`.
        case send(String, OutgoingTransaction)
        /// Write this delivery progress to the Outbox in one commit. Writes happen in the
        /// order they are asked for: a failure written after a delivery must stay written.
        case recordProgress([Outbox.Delivery])
        /// Write the destination's backoff to the Outbox, after any write asked for before.
        case recordFailure(String, Failure)
        /// Report `timerFired` at this monotonic time (nil: nothing is due); replaces any
        /// earlier timer.
        case armTimer(atMS: Int64?)
        /// A destination's state changed: log it and tell whoever follows destinations.
        case publish(DestinationStateChange)
        /// A destination's queue was dropped for the memory budget; it reads its backlog from
        /// the Outbox from now on.
        case queueSpilled(String, pdusReleased: Int, reason: SpillReason)
    }

    /// What happened.
    public enum Event: Sendable {
        /// The sender started following commits; these destinations were owed something then.
        case started(owing: [String])
        case committed(OutboxCommit)
        /// A typing, presence or receipt EDU for these destinations.
        case ephemeralQueued(EphemeralEDU, destinations: [String])
        /// Events just accepted, for the read-receipt rules.
        case recentEvents([(eventID: String, senderServer: String)])
        case loaded(String, DestinationRecord?, owed: [StoredPDU])
        case read(String, ReadKind, pdus: [StoredPDU])
        case persistentEDUsRead(String, TransactionDraft, [StoredEDU])
        case transactionFinished(String, OutgoingTransaction, TransactionOutcome)
        /// A `recordProgress` write has finished: reads asked for from now on no longer find
        /// the persistent EDUs it removed.
        case progressRecorded([Outbox.Delivery])
        /// A read for the destination failed: its units are still in the Outbox, so it backs
        /// off rather than forgetting them.
        case outboxReadFailed(String, reason: String)
        /// An operator or the homeserver says the destination is up: clear its backoff and try it now.
        case backoffReset(String)
        case timerFired
        /// Start no more transactions; those being prepared or sent end after their current step.
        case stop
    }

    public enum ReadKind: Sendable, Equatable {
        case backlog, catchUp
    }

    public enum SpillReason: Sendable, Equatable {
        /// The destination's own queue passed `maxPDUsInMemoryPerDestination`.
        case destinationBudget
        /// The references held across destinations passed `maxPDUsInMemory`.
        case senderBudget
    }

    /// A transaction's PDUs, waiting for the destination's persistent EDUs to be read.
    public struct TransactionDraft: Sendable {
        public var pdus: [StoredPDU]
        public var isCatchUp: Bool
        /// EDU slots left beside the PDUs.
        public var eduRoom: Int
        /// `eduNotifications` when the read was asked for: an EDU committed after it may be missing.
        var eduNotifications: Int
        /// Persistent EDUs delivered whose removal was not yet written when the read was asked
        /// for: the read may still find them.
        var deliveredEDUIDs: Set<Int64> = []
    }

    public struct Failure: Sendable, Equatable {
        public var reason: String
        public var retryLastTS: Int64
        public var retryIntervalMS: Int64
        /// The backoff grew past `catchUpAfterMS`: the queue was dropped for catch-up.
        public var enteredCatchUp: Bool
    }

    private enum Activity {
        case idle, ready, sending
    }

    /// The flags come right after the queue, in the end of its last word (see `PerDestinationQueue`).
    private struct Destination {
        var queue: PerDestinationQueue
        var activity = Activity.idle
        var wakeRequested = false
        /// Bumped whenever persistent EDUs are committed for the destination.
        var eduNotifications = 0
        /// Its place in `quietOrder` when it last went quiet; an entry with another ticket is stale.
        var quietTicket = 0
        /// When it started waiting for a sending slot.
        var readySinceMS: Int64 = 0
    }

    /// Deadlines in time order, then in the order they were set.
    private struct DeadlineRank: Comparable, Sendable {
        var atMS: Int64
        var sequence: Int
        static func < (lhs: Self, rhs: Self) -> Bool { (lhs.atMS, lhs.sequence) < (rhs.atMS, rhs.sequence) }
    }

    /// How soon a transaction that southbridge's own limits held back is tried again: soon,
    /// since the destination did nothing wrong, and spread over a second so that destinations
    /// held back together do not come back together.
    public static let localRetryDelayMS: ClosedRange<Int64> = 1_000...2_000

    /// How long delivery progress may wait in memory before it is written: long enough for a
    /// paced fan-out's deliveries to share commits, short enough that a crash re-sends little.
    public static let progressWriteDelayMS: Int64 = 500

    public let settings: FederationSender.Settings
    private let retryPolicy: RetryPolicy
    private var random: any RandomNumberGenerator & Sendable
    private let txnIDPrefix: String
    private var txnCounter = 0

    private var destinations: [String: Destination] = [:]
    public private(set) var sendingCount = 0
    private var ready = FrontConsumedQueue<String>()
    private var deadlines = IndexedHeap<String, DeadlineRank>()
    private var deadlineSequence = 0
    private var startupWakeups: DestinationWakeupQueue
    private var pacedWakeups: DestinationWakeupQueue
    private var startupWakeupAtMS: Int64?
    private var pacedWakeupAtMS: Int64?
    /// Destinations in the order they went quiet, oldest first, with their tickets.
    private var quietOrder = FrontConsumedQueue<(name: String, ticket: Int)>()
    private var nextQuietTicket = 1
    private var pdusInMemory = 0
    private var ephemeral: EphemeralEDUBuffer
    private var receiptPacer = ReadReceiptPacer(recentEventCapacity: ReadReceiptPacer.recentEventCapacity)
    /// Delivery progress not written to the Outbox yet, by destination: deliveries that finish
    /// one after the other share one write, which the Outbox commits with its next commit (the
    /// marks within its `progressSaveIntervalMS`); a crash loses at most `progressWriteDelayMS`
    /// and that interval of it, which only means re-sending.
    private var unwrittenProgress: [String: Outbox.Delivery] = [:]
    private var unwrittenOrder: [String] = []
    /// Persistent EDUs delivered whose removal is being written (`recordProgress` asked for,
    /// `progressRecorded` not yet reported), by destination.
    private var progressBeingWritten: [String: Set<Int64>] = [:]
    private var progressWriteAtMS: Int64?
    private var armedTimerMS: Int64?
    /// Set once `started` has listed the destinations owed something: any destination met
    /// after that owed nothing at start.
    private var backlogsKnown = false
    public private(set) var isStopping = false
    private var metrics = FederationSender.Metrics()
    private var actions: [Action] = []
    /// The time of the event being handled.
    private var eventTime = SenderTime(monotonicMS: 0, wallMS: 0)
    /// Destinations given a slot while handling the current event, to be started once it is handled.
    private var granted = FrontConsumedQueue<String>()

    /// - Parameter txnIDPrefix: unique to this run of the sender; transaction ids are it
    ///   followed by a counter.
    public init(settings: FederationSender.Settings, retryPolicy: RetryPolicy, txnIDPrefix: String,
                random: some RandomNumberGenerator & Sendable) {
        self.settings = settings
        self.retryPolicy = retryPolicy
        self.txnIDPrefix = txnIDPrefix
        self.random = random
        self.ephemeral = EphemeralEDUBuffer(maxEntries: settings.maxEphemeralEDUs)
        self.startupWakeups = DestinationWakeupQueue(interval: settings.startupWakeupInterval)
        self.pacedWakeups = ReadReceiptPacer.delayedWakeupQueue(
            transactionsPerRoomPerSecond: settings.readReceiptTransactionsPerRoomPerSecond)
    }

    // MARK: - Events

    public mutating func handle(_ event: Event, at now: SenderTime) -> [Action] {
        eventTime = now
        switch event {
        case .started(let owing):
            for name in owing where destinations[name] == nil {
                _ = destination(name)
                startupWakeups.enqueue(name)
            }
            backlogsKnown = true
            pollWakeups(now)
        case .committed(let commit):
            committed(commit, now)
        case .ephemeralQueued(let edu, let names):
            ephemeralQueued(edu, names, now)
        case .recentEvents(let events):
            for event in events {
                receiptPacer.eventReceived(eventID: event.eventID, senderServer: event.senderServer, receivedMS: now.monotonicMS)
            }
        case .loaded(let name, let record, let owed):
            guard isSending(name) else { break }
            updateQueue(name) { $0.loaded(record, owed: owed, nowMS: now.monotonicMS, wallNowMS: now.wallMS) }
            enforceSenderBudget()
            if destinations[name]?.queue.phase == .catchingUp { publish(name, .catchingUp) }
            continueSending(name, now)
        case .read(let name, let kind, let read):
            guard isSending(name) else { break }
            guard let pdus = updateQueue(name, { $0.caughtUp(with: read) }) else {
                publish(name, .caughtUp)
                continueSending(name, now)
                break
            }
            if pdus.isEmpty {
                continueSending(name, now)
            } else {
                prepareTransaction(name, pdus: pdus, isCatchUp: kind == .catchUp, now)
            }
        case .persistentEDUsRead(let name, let draft, let edus):
            guard isSending(name) else { break }
            buildTransaction(name, draft, persistent: edus, now)
        case .transactionFinished(let name, let transaction, let outcome):
            guard isSending(name) else { break }
            transactionFinished(name, transaction, outcome, now)
        case .progressRecorded(let deliveries):
            for delivery in deliveries where !delivery.eduIDs.isEmpty {
                progressBeingWritten[delivery.destination]?.subtract(delivery.eduIDs)
                if progressBeingWritten[delivery.destination]?.isEmpty == true { progressBeingWritten[delivery.destination] = nil }
            }
        case .outboxReadFailed(let name, let reason):
            guard isSending(name) else { break }
            failed(name, reason: "cannot read outstanding units from the outbox: \(reason)", now)
        case .backoffReset(let name):
            if let queue = destinations[name]?.queue {
                deadlines.remove(name)
                destinations[name]?.queue.clearBackoff()
                if queue.isBackingOff { publish(name, .up) }
            }
            wake(name, now)
        case .timerFired:
            timerFired(now)
        case .stop:
            isStopping = true
            deadlines = IndexedHeap()
            startupWakeups = DestinationWakeupQueue(interval: settings.startupWakeupInterval)
            pacedWakeups = ReadReceiptPacer.delayedWakeupQueue(
                transactionsPerRoomPerSecond: settings.readReceiptTransactionsPerRoomPerSecond)
            (startupWakeupAtMS, pacedWakeupAtMS, progressWriteAtMS) = (nil, nil, nil)
        }
        // Started here rather than where they were granted, so that a long ready queue of
        // destinations with nothing to do is worked through in a loop, not by recursion.
        while let name = granted.popFirst() { continueSending(name, now) }
        return finishEvent()
    }

    /// Takes every delivery progress not written yet, for a write at shutdown.
    public mutating func takeUnwrittenProgress() -> [Outbox.Delivery] {
        defer {
            unwrittenProgress.removeAll()
            unwrittenOrder.removeAll()
        }
        return unwrittenOrder.compactMap { unwrittenProgress[$0] }
    }

    private mutating func finishEvent() -> [Action] {
        let next = [deadlines.first?.priority.atMS, startupWakeupAtMS, pacedWakeupAtMS, progressWriteAtMS]
            .compactMap { $0 }.min()
        if next != armedTimerMS {
            armedTimerMS = next
            actions.append(.armTimer(atMS: next))
        }
        defer { actions.removeAll(keepingCapacity: true) }
        return actions
    }

    private mutating func committed(_ commit: OutboxCommit, _ now: SenderTime) {
        // A destination whose record this commit created owes nothing from before it: it
        // starts live, without a read of that default record.
        if backlogsKnown {
            for name in commit.createdDestinations where destinations[name] == nil {
                updateQueue(name) { $0.loaded(nil, owed: [], nowMS: now.monotonicMS, wallNowMS: now.wallMS) }
            }
        }
        // A destination with a deadline has its units queued and is woken by it: waking it
        // would only set the deadline again, for every destination of the room on every commit.
        var woken = Set<String>()
        for pdu in commit.pdus {
            for name in pdu.destinations {
                let released = updateQueue(name) { $0.pduCommitted(pdu.pdu) }
                if released > 0 {
                    metrics.queueSpills += 1
                    actions.append(.queueSpilled(name, pdusReleased: released, reason: .destinationBudget))
                }
                if !deadlines.contains(name) { woken.insert(name) }
            }
        }
        var pacedWakes = Set<String>()
        for edu in commit.edus {
            for name in edu.destinations {
                updateDestination(name) { state in
                    state.queue.persistentEDUsMayBePending = true
                    state.eduNotifications += 1
                }
                guard !deadlines.contains(name) else { continue }
                // To-device messages go at once; device-list updates reach many servers at
                // once and wake them at a pace (Synapse's `immediate=False`).
                if edu.isDeviceListUpdate { pacedWakes.insert(name) } else { woken.insert(name) }
            }
        }
        for name in woken { wake(name, now) }
        for name in pacedWakes.subtracting(woken) { wakeLater(name, now) }
        enforceSenderBudget()
    }

    /// Typing goes out at once; presence wakes destinations at a pace; read receipts go out at
    /// once to small rooms, for recent events and to the event's own server, and at a pace to
    /// the rest (Synapse's rules).
    private mutating func ephemeralQueued(_ edu: EphemeralEDU, _ names: [String], _ now: SenderTime) {
        guard !isStopping, !names.isEmpty else { return }
        ephemeral.add(edu, for: names, nowMS: now.monotonicMS)
        switch edu {
        case .typing:
            for name in names { wake(name, now) }
        case .presence:
            for name in names { wakeLater(name, now) }
        case .receipts:
            let delivery = receiptPacer.schedule(receiptFor: edu.receiptedEventIDs, to: names, nowMS: now.monotonicMS)
            for name in delivery.immediate { wake(name, now) }
            for name in delivery.delayed { wakeLater(name, now) }
        }
    }

    private mutating func timerFired(_ now: SenderTime) {
        while let first = deadlines.first, first.priority.atMS <= now.monotonicMS {
            deadlines.remove(first.key)
            wake(first.key, now)
        }
        pollWakeups(now)
        if let writeAt = progressWriteAtMS, writeAt <= now.monotonicMS { writeProgress() }
    }

    // MARK: - Slots

    private func isSending(_ name: String) -> Bool {
        destinations[name]?.activity == .sending
    }

    private mutating func wake(_ name: String, _ now: SenderTime) {
        guard !isStopping else { return }
        startupWakeups.remove(name)
        pacedWakeups.remove(name)
        _ = destination(name)
        destinations[name]!.wakeRequested = true
        guard destinations[name]!.activity == .idle else { return }
        if sendingCount < settings.maxDestinationsSending {
            grantSlot(name)
        } else {
            queueForSlot(name)
        }
    }

    /// Wakes `name` through the paced queue, unless it is sending or ready already.
    private mutating func wakeLater(_ name: String, _ now: SenderTime) {
        guard !isStopping else { return }
        if let activity = destinations[name]?.activity, activity != .idle {
            destinations[name]?.wakeRequested = true
            return
        }
        pacedWakeups.enqueue(name)
        pollWakeups(now)
    }

    /// Wakes the destinations whose paced turn has come and notes when the next turns are.
    private mutating func pollWakeups(_ now: SenderTime) {
        let at = Duration.milliseconds(now.monotonicMS)
        let startup = startupWakeups.due(at: at)
        for name in startup.names { wake(name, now) }
        startupWakeupAtMS = startup.nextAt.map(Self.millisecondsRoundedUp)
        let paced = pacedWakeups.due(at: at)
        for name in paced.names { wake(name, now) }
        pacedWakeupAtMS = paced.nextAt.map(Self.millisecondsRoundedUp)
    }

    private static func millisecondsRoundedUp(_ time: Duration) -> Int64 {
        let (seconds, attoseconds) = time.components
        let perMS: Int64 = 1_000_000_000_000_000
        return seconds * 1000 + (attoseconds + perMS - 1) / perMS
    }

    /// Asks the destination's queue what to do next, and does it or asks the driver to.
    private mutating func continueSending(_ name: String, _ now: SenderTime) {
        let maxPDUs = settings.maxPDUsPerTransaction
        while !isStopping {
            destinations[name]!.wakeRequested = false
            let step = updateQueue(name) { $0.nextStep(nowMS: now.monotonicMS, maxPDUs: maxPDUs) }
            switch step {
            case .waitUntil(let deadline):
                setDeadline(name, atMS: deadline)
            case .load:
                let needsBacklog = destinations[name]!.queue.needsBacklogRead
                actions.append(.load(name, owedPDULimit: needsBacklog ? settings.maxPDUsInMemoryPerDestination + 1 : nil))
                return
            case .resend:
                guard let inFlight = destinations[name]!.queue.inFlight else { continue }
                actions.append(.send(name, inFlight))
                return
            case .readCatchUp(let after, let limit):
                actions.append(.read(name, .catchUp, after: after, limit: limit))
                return
            case .readBacklog(let after, let limit):
                actions.append(.read(name, .backlog, after: after, limit: limit))
                return
            case .build(let pdus):
                prepareTransaction(name, pdus: pdus, isCatchUp: false, now)
                return
            }
            break
        }
        finishSending(name)
    }

    /// Gives `name` a sending slot; it asks its queue what to do once the event is handled.
    private mutating func grantSlot(_ name: String) {
        sendingCount += 1
        destinations[name]!.activity = .sending
        granted.append(name)
    }

    /// The sending slot is given up; the destination waiting longest for one takes it.
    private mutating func finishSending(_ name: String) {
        guard destinations[name]?.activity == .sending else { return }
        destinations[name]!.activity = .idle
        sendingCount -= 1
        if destinations[name]!.wakeRequested, !deadlines.contains(name), !isStopping {
            // Woken while it was sending: behind any destination already waiting for a slot.
            queueForSlot(name)
        } else {
            noteIfQuiet(name)
        }
        runReadyDestinations()
    }

    /// Puts a destination that just went quiet at the back of the order quiet ones are forgotten in.
    private mutating func noteIfQuiet(_ name: String) {
        guard isQuiet(name) else { return }
        destinations[name]!.quietTicket = nextQuietTicket
        quietOrder.append((name, nextQuietTicket))
        nextQuietTicket += 1
        forgetOldestQuietDestinations()
    }

    private mutating func queueForSlot(_ name: String) {
        destinations[name]!.activity = .ready
        destinations[name]!.readySinceMS = eventTime.monotonicMS
        ready.append(name)
    }

    /// Gives free sending slots to the destinations waiting longest for one.
    private mutating func runReadyDestinations() {
        while sendingCount < settings.maxDestinationsSending, !isStopping, let name = ready.popFirst() {
            guard destinations[name]?.activity == .ready else { continue }
            grantSlot(name)
        }
    }

    private mutating func setDeadline(_ name: String, atMS deadline: Int64) {
        deadlineSequence += 1
        deadlines.set(name, DeadlineRank(atMS: deadline, sequence: deadlineSequence))
    }

    // MARK: - Transactions

    private mutating func prepareTransaction(_ name: String, pdus: [StoredPDU], isCatchUp: Bool, _ now: SenderTime) {
        let queue = destinations[name]!.queue
        let eduRoom = min(TransactionBody.maximumEDUCount, max(0, queue.unitLimit - pdus.count))
        var draft = TransactionDraft(pdus: pdus, isCatchUp: isCatchUp, eduRoom: eduRoom,
                                     eduNotifications: destinations[name]!.eduNotifications)
        if eduRoom > 0, queue.persistentEDUsMayBePending {
            draft.deliveredEDUIDs = progressBeingWritten[name, default: []].union(unwrittenProgress[name]?.eduIDs ?? [])
            actions.append(.readPersistentEDUs(name, draft, limit: TransactionBody.maximumEDUCount))
        } else {
            buildTransaction(name, draft, persistent: [], now)
        }
    }

    private mutating func buildTransaction(_ name: String, _ draft: TransactionDraft, persistent read: [StoredEDU],
                                           _ now: SenderTime) {
        var persistent = read
        // Delivered, but still in the Outbox when the read began: not to be sent again.
        if !draft.deliveredEDUIDs.isEmpty {
            persistent.removeAll { draft.deliveredEDUIDs.contains($0.eduID) }
        }
        persistent.sort { $0.eduID < $1.eduID }
        if draft.eduRoom > 0, persistent.isEmpty, destinations[name]!.eduNotifications == draft.eduNotifications {
            destinations[name]!.queue.persistentEDUsMayBePending = false
        }
        let plan = TransactionEDUPlan.assemble(for: name, ephemeral: &ephemeral, persistent: persistent,
                                               nowMS: now.monotonicMS, maxEDUs: draft.eduRoom)
        guard !draft.pdus.isEmpty || !plan.edus.isEmpty else {
            if destinations[name]!.wakeRequested {
                continueSending(name, now)
            } else {
                finishSending(name)
            }
            return
        }
        txnCounter += 1
        let transaction = OutgoingTransaction(
            txnID: "\(txnIDPrefix)\(txnCounter)", originServerTS: now.wallMS, pdus: draft.pdus, edus: plan.edus,
            persistentEDUIDs: plan.persistentEDUIDs, isCatchUp: draft.isCatchUp)
        updateQueue(name) { $0.send(transaction) }
        enforceSenderBudget()
        actions.append(.send(name, transaction))
    }

    private mutating func transactionFinished(_ name: String, _ transaction: OutgoingTransaction,
                                              _ outcome: TransactionOutcome, _ now: SenderTime) {
        switch outcome {
        case .delivered:
            let wasBackingOff = updateQueue(name) { $0.delivered(transaction) }
            metrics.transactionsSent += 1
            metrics.pdusDelivered += transaction.pdus.count
            metrics.edusDelivered += transaction.edus.count
            noteProgress(of: transaction, to: name, now)
            if wasBackingOff { publish(name, .up) }
            continueOrTakeTurns(name, now)
        case .rejected:
            if updateQueue(name, { $0.rejected(transaction) }) {
                metrics.unitsRejected += transaction.unitCount
                noteProgress(of: transaction, to: name, now)
            } else {
                destinations[name]!.queue.persistentEDUsMayBePending = true
            }
            continueOrTakeTurns(name, now)
        case .failed(let reason):
            failed(name, reason: reason, now)
        case .deferred:
            metrics.transactionsDeferred += 1
            let retryAt = now.monotonicMS + Int64.random(in: Self.localRetryDelayMS, using: &random)
            updateQueue(name) { $0.deferred(untilMS: retryAt) }
            setDeadline(name, atMS: retryAt)
            finishSending(name)
        }
    }

    /// After an answered transaction: goes on, or, when other destinations wait for a slot,
    /// gives the slot to the one waiting longest and queues behind it, so that a destination
    /// that always has more to send cannot keep a slot from the others.
    private mutating func continueOrTakeTurns(_ name: String, _ now: SenderTime) {
        guard !ready.isEmpty, !isStopping else { return continueSending(name, now) }
        queueForSlot(name)
        sendingCount -= 1
        runReadyDestinations()
    }

    /// Backs the destination off: the one place a failure's interval is drawn.
    private mutating func failed(_ name: String, reason: String, _ now: SenderTime) {
        // Writing a delivery clears the retry state: the progress noted before this failure
        // is written first, so it cannot undo the failure written after it.
        if unwrittenProgress[name] != nil { writeProgress() }
        metrics.transactionsFailed += 1
        let interval = retryPolicy.interval(after: destinations[name]!.queue.retryIntervalMS, using: &random)
        let enteredCatchUp = updateQueue(name) { $0.failed(nowMS: now.monotonicMS, intervalMS: interval) }
        if enteredCatchUp {
            ephemeral.removeAll(for: name)
            destinations[name]!.queue.persistentEDUsMayBePending = true
        }
        actions.append(.recordFailure(name, Failure(reason: reason, retryLastTS: now.wallMS, retryIntervalMS: interval,
                                                    enteredCatchUp: enteredCatchUp)))
        publish(name, .backingOff(retryIntervalMS: interval))
        if enteredCatchUp { publish(name, .catchingUp) }
        setDeadline(name, atMS: now.monotonicMS + interval)
        finishSending(name)
    }

    /// Notes what `transaction` delivered, to be written with every other destination's
    /// progress at most `progressWriteDelayMS` later.
    private mutating func noteProgress(of transaction: OutgoingTransaction, to name: String, _ now: SenderTime) {
        guard transaction.lastStreamOrdering != nil || !transaction.persistentEDUIDs.isEmpty else { return }
        if unwrittenProgress[name] == nil { unwrittenOrder.append(name) }
        var delivery = unwrittenProgress[name] ?? Outbox.Delivery(destination: name, upTo: nil, eduIDs: [])
        if let last = transaction.lastStreamOrdering { delivery.upTo = max(delivery.upTo ?? last, last) }
        delivery.eduIDs += transaction.persistentEDUIDs
        unwrittenProgress[name] = delivery
        if progressWriteAtMS == nil { progressWriteAtMS = now.monotonicMS + Self.progressWriteDelayMS }
    }

    private mutating func writeProgress() {
        progressWriteAtMS = nil
        guard !unwrittenProgress.isEmpty else { return }
        // In the order the destinations were first delivered to, which is the order they went quiet in.
        let written = unwrittenOrder.filter { unwrittenProgress[$0] != nil }
        for name in written {
            if let eduIDs = unwrittenProgress[name]?.eduIDs, !eduIDs.isEmpty { progressBeingWritten[name, default: []].formUnion(eduIDs) }
        }
        actions.append(.recordProgress(written.map { unwrittenProgress[$0]! }))
        unwrittenProgress.removeAll()
        unwrittenOrder.removeAll()
        for name in written { noteIfQuiet(name) }
    }

    private mutating func publish(_ name: String, _ state: DestinationStateChange.State) {
        let mark = destinations[name]?.queue.lastSuccessfulStreamOrdering ?? 0
        actions.append(.publish(DestinationStateChange(destination: name, state: state, lastSuccessfulStreamOrdering: mark)))
    }

    // MARK: - Memory

    private mutating func destination(_ name: String) -> Destination {
        if let existing = destinations[name] { return existing }
        let created = newDestination()
        destinations[name] = created
        return created
    }

    private func newDestination() -> Destination {
        Self.newDestination(settings: settings, backlogsKnown: backlogsKnown)
    }

    private static func newDestination(settings: FederationSender.Settings, backlogsKnown: Bool) -> Destination {
        Destination(queue: PerDestinationQueue(
            budget: settings.maxPDUsInMemoryPerDestination, catchUpAfterMS: settings.catchUpAfterMS,
            backlogKnownEmpty: backlogsKnown))
    }

    /// Runs `change` on the destination's queue, in place, keeping the count of PDU
    /// references in step.
    @discardableResult
    private mutating func updateQueue<T>(_ name: String, _ change: (inout PerDestinationQueue) -> T) -> T {
        updateDestination(name) { change(&$0.queue) }
    }

    /// Changes `name`'s state in place (creating it if new) with one lookup, keeping the count
    /// of PDU references in step: a commit for a room of thousands of servers comes here once
    /// per server, and each lookup hashes the name again.
    @discardableResult
    private mutating func updateDestination<T>(_ name: String, _ change: (inout Destination) -> T) -> T {
        var referencesAdded = 0
        let (settings, backlogsKnown) = (settings, backlogsKnown)
        let result = { (state: inout Destination) -> T in
            let before = state.queue.pduReferenceCount
            let result = change(&state)
            referencesAdded = state.queue.pduReferenceCount - before
            return result
        }(&destinations[name, default: Self.newDestination(settings: settings, backlogsKnown: backlogsKnown)])
        pdusInMemory += referencesAdded
        return result
    }

    /// Once the references held pass `maxPDUsInMemory`, spills the largest queues until three
    /// quarters of it are held. A fan-out to thousands of servers adds thousands of references
    /// per commit: the slack makes the pass over every destination an occasional cost, not one
    /// per commit, and one sorted pass replaces a search of every destination per spill.
    private mutating func enforceSenderBudget() {
        guard pdusInMemory > settings.maxPDUsInMemory else { return }
        let target = settings.maxPDUsInMemory - settings.maxPDUsInMemory / 4
        var largestFirst: [(name: String, references: Int)] = []
        for (name, state) in destinations where state.queue.pduReferenceCount > 0 {
            largestFirst.append((name, state.queue.pduReferenceCount))
        }
        largestFirst.sort { $0.references > $1.references }
        for (name, _) in largestFirst where pdusInMemory > target {
            let released = destinations[name]!.queue.spill()
            pdusInMemory -= released
            metrics.queueSpills += 1
            actions.append(.queueSpilled(name, pdusReleased: released, reason: .senderBudget))
        }
    }

    /// Whether `name` has nothing owed, in flight, scheduled or waiting in memory, so that its
    /// state can be dropped: met again, it is loaded from its outbox record and owes exactly
    /// what commits bring from then on (`backlogsKnown`), as a destination never met would.
    /// Its delivery progress must be written first, or that record would be behind.
    private func isQuiet(_ name: String) -> Bool {
        guard backlogsKnown, unwrittenProgress[name] == nil, let state = destinations[name] else { return false }
        return state.activity == .idle && !state.wakeRequested && !deadlines.contains(name)
            && state.queue.isQuiet && !state.queue.persistentEDUsMayBePending && !ephemeral.hasPending(for: name)
    }

    /// Drops the state of the destinations quiet the longest while more than
    /// `maxQuietDestinations` are held besides those sending or ready. Entries of destinations
    /// busy again since are stale: skipped at the front, and cleared out once they outnumber
    /// the destinations.
    private mutating func forgetOldestQuietDestinations() {
        if quietOrder.count > 2 * destinations.count + 64 {
            let current = quietOrder.elements.filter { isCurrentQuiet($0) }
            quietOrder = FrontConsumedQueue(current)
        }
        while let oldest = quietOrder.first {
            guard isCurrentQuiet(oldest) else {
                _ = quietOrder.popFirst()
                continue
            }
            guard destinations.count > settings.maxQuietDestinations + sendingCount + ready.count else { return }
            _ = quietOrder.popFirst()
            destinations[oldest.name] = nil
        }
    }

    private func isCurrentQuiet(_ entry: (name: String, ticket: Int)) -> Bool {
        destinations[entry.name]?.quietTicket == entry.ticket && isQuiet(entry.name)
    }
}

// MARK: - What the scheduler holds, for metrics, the admin API and tests

extension SenderScheduler {
    public var currentMetrics: FederationSender.Metrics {
        var snapshot = metrics
        snapshot.activeDestinations = sendingCount + ready.count
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

    /// The in-memory state of `name`; nil when it is not held (never met, or forgotten while quiet).
    public func status(of name: String) -> FederationSender.DestinationStatus? {
        guard let state = destinations[name] else { return nil }
        return FederationSender.DestinationStatus(
            isSending: state.activity == .sending, phase: state.queue.phase, transactionInFlight: state.queue.inFlight?.txnID,
            pdusInFlight: state.queue.inFlight?.pdus.count ?? 0, edusInFlight: state.queue.inFlight?.edus.count ?? 0,
            queuedPDUs: state.queue.queuedPDUCount, queuedEphemeralEDUs: ephemeral.hasPending(for: name),
            retryScheduled: deadlines.contains(name))
    }

    public func queue(of name: String) -> PerDestinationQueue? {
        destinations[name]?.queue
    }

    /// Where a destination stands with the scheduler.
    public enum Standing: Sendable, Equatable {
        case sending
        /// Waiting for a sending slot since this monotonic time.
        case ready(sinceMS: Int64)
        /// Woken by the timer at this monotonic time.
        case waitingUntil(Int64)
        /// In the start-up or delayed wake-up queue.
        case awaitingWakeup
        /// Nothing owed, in flight or scheduled.
        case quiet
        /// Something owed, but nothing will wake it: never the case after an event is handled.
        case stranded
    }

    public func standing(of name: String) -> Standing? {
        guard let state = destinations[name] else { return nil }
        switch state.activity {
        case .sending: return .sending
        case .ready: return .ready(sinceMS: state.readySinceMS)
        case .idle: break
        }
        if let deadline = deadlines.priority(of: name) { return .waitingUntil(deadline.atMS) }
        if startupWakeups.contains(name) || pacedWakeups.contains(name) { return .awaitingWakeup }
        let owesNothing = state.queue.isQuiet && !state.queue.persistentEDUsMayBePending && !ephemeral.hasPending(for: name)
        return owesNothing ? .quiet : .stranded
    }

    /// Every destination held, for tests that check each one.
    public var heldDestinationNames: [String] { Array(destinations.keys) }

    public var readyCount: Int { ready.count }

    /// The time the driver's timer is set for, if any.
    public var timerMS: Int64? { armedTimerMS }

    public var pduReferencesHeld: Int { pdusInMemory }
}
