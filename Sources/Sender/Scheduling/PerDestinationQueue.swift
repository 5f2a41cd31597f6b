import Outbox

/// What the sender knows about one destination, and every decision about what to send it
/// next. Pure: the `FederationSender` does the reading, sending and sleeping, and reports
/// back; time comes in as monotonic milliseconds (`SenderClock.monotonicMS`), which a step of
/// the wall clock does not move: only a stored backoff is converted, once, when it is loaded.
///
/// PDUs reach a destination one of two ways:
/// - `live`: every PDU owed beyond `lastSuccessfulStreamOrdering` is referenced in memory,
///   in stream order, fed by the Outbox's commit stream. At most `budget` references are
///   held (the queue plus the transaction in flight).
/// - `readingBacklog`: the queue passed its memory budget (the destination is slower than
///   ingest, or the sender's total budget is needed elsewhere), so it was dropped and every
///   PDU owed is read back from the Outbox in stream order, a transaction at a time, until
///   the destination has caught up with ingest. Nothing is skipped: a live destination gets
///   every PDU, in order.
/// - `catchingUp`: transactions are made of the newest PDU of each room beyond the mark (the
///   receiver fetches the rest itself), 50 rooms at a time, read from the Outbox. Entered
///   when the backoff grows past `catchUpAfterMS` or when a restart finds more owed than the
///   budget: a server back from a long outage needs the present, not the whole history.
/// In both, PDUs committed meanwhile are not queued: their stream ordering is remembered, so
/// one more read runs if a read came back empty before they were committed.
/// Before the first transaction after a start the queue is `unloaded`: the sender reads the
/// destination's record and up to `budget + 1` owed PDUs (`loading`), and `loaded` decides.
public struct PerDestinationQueue: Sendable {
    public enum Phase: String, Sendable, Equatable {
        case unloaded, loading, live, readingBacklog = "reading_backlog", catchingUp = "catching_up"
    }

    /// What the sender should do next for this destination.
    public enum Step: Sendable, Equatable {
        /// Backing off: nothing until the time given (ms).
        case waitUntil(Int64)
        /// Read the destination's record and its owed PDUs, then call `loaded`.
        case load
        /// Resend the transaction in flight, unchanged.
        case resend
        /// Read the newest PDU per room beyond `after` (at most the given number of rooms),
        /// then call `caughtUp(with:)`.
        case readCatchUp(after: Int64, limit: Int)
        /// Read the PDUs owed beyond `after`, in stream order (at most the given number),
        /// then call `caughtUp(with:)`.
        case readBacklog(after: Int64, limit: Int)
        /// Build a transaction of these PDUs (possibly none) and any EDUs waiting.
        case build(pdus: [StoredPDU])
    }

    // Stored properties are laid out in the order they are declared: the words first, the
    // flags last, so that none is padded. A fan-out holds thousands of these in the scheduler's
    // dictionary, which keeps room for a third more than it holds.
    public let budget: Int
    public let catchUpAfterMS: Int64
    public private(set) var lastSuccessfulStreamOrdering: Int64 = 0
    /// When the backoff ends, in monotonic ms; meaningful while `retryIntervalMS > 0`.
    public private(set) var retryDueMS: Int64 = 0
    public private(set) var retryIntervalMS: Int64 = 0
    /// Not before this time (ms): set when southbridge's own limits held a transaction back.
    /// Unlike a backoff it is kept in memory only and says nothing against the destination.
    public private(set) var deferredUntilMS: Int64 = 0
    /// The most units the next transaction may hold; halved after the receiver refuses a body.
    public private(set) var unitLimit = Int.max
    private var catchUpLastSkipped: Int64 = 0
    private var queued = FrontConsumedQueue<StoredPDU>()
    /// Boxed: a reference in every queue instead of the transaction's fields, most of the time nil.
    private var inFlightBox: InFlightTransaction?
    public private(set) var phase: Phase = .unloaded
    /// Persistent EDUs may be waiting in the Outbox. False from the start for a destination
    /// that owed nothing when the sender started: every EDU accepted since then comes with a
    /// commit, which sets it, so a new destination of a fan-out costs no reads of the EDU tables.
    public var persistentEDUsMayBePending: Bool
    private var spillWhenLoaded = false
    /// Whether `load` must read the PDUs owed from the Outbox: false for a destination that
    /// owed nothing when the sender started, since everything committed for it since then
    /// comes through `pduCommitted` (so a new destination costs no copy of any PDU).
    public let needsBacklogRead: Bool

    /// The transaction sent and not yet answered.
    public private(set) var inFlight: OutgoingTransaction? {
        get { inFlightBox?.transaction }
        set { inFlightBox = newValue.map(InFlightTransaction.init) }
    }

    private final class InFlightTransaction: Sendable {
        let transaction: OutgoingTransaction
        init(_ transaction: OutgoingTransaction) { self.transaction = transaction }
    }

    /// - Parameter backlogKnownEmpty: the destination owed no PDU and no persistent EDU when
    ///   the sender started following commits; it is then loaded from its record alone, PDUs
    ///   committed before that load are queued rather than read back, and the EDU tables are
    ///   read only once a commit brings it an EDU.
    public init(budget: Int, catchUpAfterMS: Int64, backlogKnownEmpty: Bool = false) {
        self.budget = max(1, budget)
        self.catchUpAfterMS = catchUpAfterMS
        self.needsBacklogRead = !backlogKnownEmpty
        self.persistentEDUsMayBePending = !backlogKnownEmpty
        if backlogKnownEmpty { phase = .loading }
    }

    /// PDU references held: the queue, and the transaction in flight when it is a catch-up
    /// one (a live transaction's PDUs stay at the head of the queue until delivered).
    public var pduReferenceCount: Int {
        queued.count + (isReadingFromOutbox ? inFlight?.pdus.count ?? 0 : 0)
    }
    public var queuedPDUCount: Int { queued.count }
    public var isBackingOff: Bool { retryIntervalMS > 0 }

    private var highestKnownStreamOrdering: Int64 {
        max(lastSuccessfulStreamOrdering, inFlight?.lastStreamOrdering ?? 0, queued.last?.streamOrdering ?? 0)
    }

    /// A PDU for this destination was committed. Returns the number of references released
    /// when this made the queue spill (0 otherwise).
    @discardableResult
    public mutating func pduCommitted(_ pdu: StoredPDU) -> Int {
        switch phase {
        case .unloaded:
            // The load reads it from the Outbox.
            return 0
        case .loading:
            guard !spillWhenLoaded else { return 0 }
            if let last = queued.last, pdu.streamOrdering <= last.streamOrdering { return 0 }
            if queuedPDUCount >= budget {
                spillWhenLoaded = true
                return dropQueue()
            }
            queued.append(pdu)
            return 0
        case .live:
            guard pdu.streamOrdering > highestKnownStreamOrdering else { return 0 }
            if pduReferenceCount >= budget {
                catchUpLastSkipped = pdu.streamOrdering
                return readFromOutbox(.readingBacklog)
            }
            queued.append(pdu)
            return 0
        case .readingBacklog, .catchingUp:
            catchUpLastSkipped = max(catchUpLastSkipped, pdu.streamOrdering)
            return 0
        }
    }

    /// Drops the in-memory queue and the transaction in flight, and catches up from the Outbox
    /// instead: the memory budget is needed elsewhere. A transaction being sent at this moment
    /// still counts when its answer comes (`delivered(_:)` takes it back). Returns the
    /// references released.
    @discardableResult
    public mutating func spill() -> Int {
        switch phase {
        case .live, .readingBacklog, .catchingUp:
            let before = pduReferenceCount
            readFromOutbox(phase == .catchingUp ? .catchingUp : .readingBacklog)
            inFlight = nil
            unitLimit = .max
            return before
        case .loading:
            spillWhenLoaded = true
            return dropQueue()
        case .unloaded:
            return 0
        }
    }

    /// What to do next at `nowMS`.
    public mutating func nextStep(nowMS: Int64, maxPDUs: Int) -> Step {
        if retryIntervalMS > 0, retryDueMS > nowMS {
            return .waitUntil(retryDueMS)
        }
        if deferredUntilMS > nowMS { return .waitUntil(deferredUntilMS) }
        if inFlight != nil { return .resend }
        switch phase {
        case .unloaded, .loading:
            phase = .loading
            return .load
        case .catchingUp:
            return .readCatchUp(after: lastSuccessfulStreamOrdering, limit: min(maxPDUs, unitLimit))
        case .readingBacklog:
            return .readBacklog(after: lastSuccessfulStreamOrdering, limit: min(maxPDUs, unitLimit))
        case .live:
            let count = min(maxPDUs, unitLimit, queuedPDUCount)
            return .build(pdus: Array(queued.elements.prefix(count)))
        }
    }

    /// The destination's stored state and up to `budget + 1` PDUs owed beyond its mark, read
    /// at `nowMS` (monotonic) and `wallNowMS`. The stored backoff, from the wall clock of
    /// another boot perhaps, ends at most one interval from now: a clock found behind (a Pi
    /// without a clock battery, before NTP) cannot stall a retry for longer, and one ahead
    /// makes it due now, not in a storm later.
    public mutating func loaded(_ record: DestinationRecord?, owed: [StoredPDU], nowMS: Int64, wallNowMS: Int64) {
        lastSuccessfulStreamOrdering = record?.lastSuccessfulStreamOrdering ?? 0
        retryIntervalMS = record?.retryIntervalMS ?? 0
        let storedRemaining = (record?.retryLastTS ?? wallNowMS) + retryIntervalMS - wallNowMS
        retryDueMS = retryIntervalMS > 0 ? nowMS + min(max(0, storedRemaining), retryIntervalMS) : 0
        let arrivedWhileLoading = Array(queued.elements)
        _ = dropQueue()
        if spillWhenLoaded || owed.count > budget || retryIntervalMS > catchUpAfterMS {
            catchUpLastSkipped = max(catchUpLastSkipped, arrivedWhileLoading.last?.streamOrdering ?? 0)
            // A long outage or a large backlog found at start is caught up; a queue that only
            // outgrew its memory is read back in full.
            phase = owed.count > budget || retryIntervalMS > catchUpAfterMS ? .catchingUp : .readingBacklog
            spillWhenLoaded = false
            return
        }
        phase = .live
        queued = FrontConsumedQueue(owed)
        let mark = owed.last?.streamOrdering ?? lastSuccessfulStreamOrdering
        queued.append(contentsOf: arrivedWhileLoading.lazy.filter { $0.streamOrdering > mark })
        if pduReferenceCount > budget { readFromOutbox(.readingBacklog) }
    }

    /// What a catch-up or backlog read returned. Returns the PDUs to send, or nil when the
    /// destination has caught up (the queue is live again and `nextStep` gives the next
    /// thing to do).
    public mutating func caughtUp(with pdus: [StoredPDU]) -> [StoredPDU]? {
        guard isReadingFromOutbox else { return nil }
        if !pdus.isEmpty { return pdus }
        if catchUpLastSkipped > lastSuccessfulStreamOrdering {
            // Committed after that read began: read once more. Resetting the mark keeps a PDU
            // that was pruned meanwhile from making this loop forever.
            catchUpLastSkipped = 0
            return []
        }
        catchUpLastSkipped = 0
        phase = .live
        return nil
    }

    /// `transaction` is about to be sent; it stays in flight until it is delivered, rejected
    /// or dropped.
    public mutating func send(_ transaction: OutgoingTransaction) {
        inFlight = transaction
    }

    /// `transaction` got a 200. Returns whether the destination was backing off.
    @discardableResult
    public mutating func delivered(_ transaction: OutgoingTransaction) -> Bool {
        let wasBackingOff = retryIntervalMS > 0
        advance(past: transaction)
        unitLimit = .max
        retryIntervalMS = 0
        retryDueMS = 0
        return wasBackingOff
    }

    /// The receiver refused `transaction` as a body (400, 413). A transaction of several units
    /// is split: the next one holds half as many. A single unit is skipped. Returns whether
    /// the units were skipped.
    public mutating func rejected(_ transaction: OutgoingTransaction) -> Bool {
        if transaction.unitCount > 1 {
            unitLimit = max(1, transaction.unitCount / 2)
            if inFlight?.txnID == transaction.txnID { inFlight = nil }
            return false
        }
        advance(past: transaction)
        return true
    }

    /// The transaction in flight failed; the destination waits `intervalMS` from `nowMS`.
    /// When that is longer than `catchUpAfterMS` the queue and the transaction are dropped
    /// and the destination will be caught up. Returns whether it entered catch-up.
    @discardableResult
    public mutating func failed(nowMS: Int64, intervalMS: Int64) -> Bool {
        retryDueMS = nowMS + intervalMS
        retryIntervalMS = intervalMS
        guard intervalMS > catchUpAfterMS, phase == .live || isReadingFromOutbox else { return false }
        inFlight = nil
        unitLimit = .max
        readFromOutbox(.catchingUp)
        return true
    }

    /// southbridge's own limits held the transaction in flight back (no connection slot in
    /// time); it is tried again, unchanged, from `untilMS`. The retry state is not touched.
    public mutating func deferred(untilMS: Int64) {
        deferredUntilMS = untilMS
    }

    /// The backoff was cleared by an operator or because the destination is known to be up.
    public mutating func clearBackoff() {
        retryIntervalMS = 0
        retryDueMS = 0
        deferredUntilMS = 0
    }

    /// Nothing owed in memory and nothing in flight or scheduled.
    public var isQuiet: Bool {
        phase == .live && queuedPDUCount == 0 && inFlight == nil && retryIntervalMS == 0
    }

    private mutating func advance(past transaction: OutgoingTransaction) {
        if inFlight?.txnID == transaction.txnID { inFlight = nil }
        guard let last = transaction.lastStreamOrdering else { return }
        lastSuccessfulStreamOrdering = max(lastSuccessfulStreamOrdering, last)
        while let first = queued.first, first.streamOrdering <= last {
            _ = queued.popFirst()
        }
    }

    /// Reading back from the Outbox: the backlog in order, or the newest PDU per room.
    public var isReadingFromOutbox: Bool { phase == .readingBacklog || phase == .catchingUp }

    /// Drops the queue and reads from the Outbox from now on; returns the references released.
    @discardableResult
    private mutating func readFromOutbox(_ next: Phase) -> Int {
        phase = next
        return dropQueue()
    }

    private mutating func dropQueue() -> Int {
        let released = queuedPDUCount
        queued.removeAll()
        return released
    }
}
