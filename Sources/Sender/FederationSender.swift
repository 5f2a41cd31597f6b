import Federation
import Logging
import Outbox
import Transport

/// Delivers every accepted PDU to every destination, in stream order, one transaction in
/// flight per destination.
///
/// PDUs are read from the Outbox in batches of at most `maxPDUsPerTransaction`. A
/// transaction in flight is remembered by its id, timestamp and stream-ordering range only;
/// its body is rebuilt from the Outbox for each attempt, byte for byte the same, so a
/// destination that is down costs a few dozen bytes however large its PDUs are. A failed
/// transaction is retried with the same txnId and body after the `RetryPolicy` interval,
/// by a timer: a quiet destination is retried without waiting for new traffic. Progress
/// (`last_successful_stream_ordering`) and retry state live in the Outbox, so a restart
/// resumes where delivery stopped.
public actor FederationSender {
    /// Totals since start, for `/metrics` and the demo.
    public struct Metrics: Sendable {
        public var transactionsSent = 0
        public var transactionsFailed = 0
        public var pdusDelivered = 0
        public var activeDestinations = 0
        public var destinationsInBackoff = 0
        /// Destinations with outstanding PDUs still waiting for their paced start-up turn.
        public var destinationsAwaitingWakeup = 0
    }

    /// What identifies a transaction: enough to rebuild its body exactly.
    private struct PendingTransaction {
        var txnID: String
        var originServerTS: Int64
        /// The destination's last successful stream ordering when the transaction was built.
        var after: Int64
        var pduCount: Int
        var lastStreamOrdering: Int64
    }

    private struct DestinationState {
        var running = false
        var wakeRequested = false
        var lastSuccessfulStreamOrdering: Int64?
        var retryLastTS: Int64 = 0
        var retryIntervalMS: Int64 = 0
        var inFlight: PendingTransaction?
        var retryTimer: Task<Void, Never>?
        var loop: Task<Void, Never>?
    }

    private struct OutboxReadFailure: Error {
        var reason: String
    }

    private let origin: String
    private let outbox: Outbox
    private let client: FederationClient
    private let retryPolicy: RetryPolicy
    private let maxPDUsPerTransaction: Int
    private let logger: Logger

    private var destinations: [String: DestinationState] = [:]
    private let txnIDPrefix: String
    private var txnCounter = 0
    private var stopping = false
    private var idleWaiters: [CheckedContinuation<Void, Never>] = []
    private var metrics = Metrics()
    private var random = SystemRandomNumberGenerator()
    private var startupWakeups: DestinationWakeupQueue
    private var startupPacer: Task<Void, Never>?

    /// - Parameter wakeupInterval: the pace at which destinations owed PDUs at start-up are
    ///   woken, one per interval (the daemon uses the new-connection budget).
    public init(origin: String, outbox: Outbox, client: FederationClient, retryPolicy: RetryPolicy,
                maxPDUsPerTransaction: Int, wakeupInterval: Duration = .milliseconds(50), logger: Logger) {
        self.startupWakeups = DestinationWakeupQueue(interval: wakeupInterval)
        self.origin = origin
        self.outbox = outbox
        self.client = client
        self.retryPolicy = retryPolicy
        self.maxPDUsPerTransaction = maxPDUsPerTransaction
        self.logger = logger
        // Receivers drop a transaction whose (origin, txnId) they have seen. Start time plus
        // a random part keeps ids unique across restarts, even when a Pi without a clock
        // battery boots with its clock behind.
        var generator = SystemRandomNumberGenerator()
        let letters = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        let nonce = String((0..<6).map { _ in letters.randomElement(using: &generator)! })
        self.txnIDPrefix = "\(WallClock.nowMS())\(nonce)"
    }

    public var currentMetrics: Metrics {
        var snapshot = metrics
        snapshot.activeDestinations = destinations.values.filter(\.running).count
        snapshot.destinationsInBackoff = destinations.values.filter { $0.retryIntervalMS > 0 }.count
        snapshot.destinationsAwaitingWakeup = startupWakeups.count
        return snapshot
    }

    /// Queues every destination the Outbox still owes PDUs to for a paced wake-up (see
    /// `DestinationWakeupQueue`); called once at start-up.
    public func resumeOutstandingDestinations() async throws {
        let outstanding = try await outbox.destinationsWithPendingPDUs()
        if !outstanding.isEmpty {
            logger.info("resuming delivery to destinations with outstanding PDUs", metadata: ["count": "\(outstanding.count)"])
        }
        // Ingest is already open: a destination woken while the list was read has fresher state.
        for record in outstanding where destinations[record.name] == nil {
            var state = DestinationState()
            state.lastSuccessfulStreamOrdering = record.lastSuccessfulStreamOrdering
            state.retryLastTS = record.retryLastTS ?? 0
            state.retryIntervalMS = record.retryIntervalMS
            destinations[record.name] = state
            startupWakeups.enqueue(record.name)
        }
        if startupPacer == nil, startupWakeups.count > 0 {
            startupPacer = Task { await self.paceStartupWakeups() }
        }
    }

    private func paceStartupWakeups() async {
        let clock = ContinuousClock()
        while !stopping, !Task.isCancelled {
            let (names, nextAt) = startupWakeups.due(at: clock.now)
            for name in names { wake(name) }
            guard let nextAt else { break }
            try? await Task.sleep(until: nextAt, clock: clock)
        }
        startupPacer = nil
    }

    /// New PDUs were committed for these destinations.
    public func notifyNewPDUs(for names: Set<String>) {
        for name in names { wake(name) }
    }

    /// Stops starting transactions and waits up to `timeout` for the ones in flight; those
    /// still running then are cancelled (they are resent after the next start). Returns
    /// whether everything in flight finished in time.
    public func shutdown(within timeout: Duration) async -> Bool {
        stopping = true
        startupPacer?.cancel()
        for name in destinations.keys {
            destinations[name]?.retryTimer?.cancel()
            destinations[name]?.retryTimer = nil
        }
        guard destinations.values.contains(where: \.running) else { return true }
        let deadline = Task {
            try? await Task.sleep(for: timeout)
            self.resumeIdleWaiters()
        }
        await withCheckedContinuation { idleWaiters.append($0) }
        deadline.cancel()
        let finished = !destinations.values.contains(where: \.running)
        if !finished {
            for state in destinations.values { state.loop?.cancel() }
        }
        return finished
    }

    /// What the sender holds in memory about one destination, for the admin API.
    public struct DestinationStatus: Sendable, Equatable {
        /// A transaction is being sent or prepared.
        public var isSending: Bool
        /// The id of the transaction awaiting a 200, if any.
        public var transactionInFlight: String?
        /// PDUs in that transaction.
        public var pdusInFlight: Int
        /// A retry timer is set.
        public var retryScheduled: Bool
    }

    /// The in-memory state of `name`; nil when it owes nothing and is not sending.
    public func status(of name: String) -> DestinationStatus? {
        guard let state = destinations[name] else { return nil }
        return DestinationStatus(isSending: state.running, transactionInFlight: state.inFlight?.txnID,
                                 pdusInFlight: state.inFlight?.pduCount ?? 0, retryScheduled: state.retryTimer != nil)
    }

    /// Clears the destination's backoff and tries it at once: the one entry point for the
    /// admin API's `wake` and `DELETE …/backoff` and the replication command
    /// `REMOTE_SERVER_UP`. Returns false when the destination is unknown.
    @discardableResult
    public func resetBackoffAndWake(_ name: String) async throws -> Bool {
        let known = try await outbox.resetBackoff(destination: name)
        destinations[name]?.retryTimer?.cancel()
        destinations[name]?.retryTimer = nil
        destinations[name]?.retryIntervalMS = 0
        destinations[name]?.retryLastTS = 0
        guard known || destinations[name] != nil else { return false }
        logger.info("backoff cleared; trying the destination now", metadata: ["destination": "\(name)"])
        wake(name)
        return true
    }

    /// Answers once the actor has run a job: the watchdog's health probe.
    public func probe() {}

    private func wake(_ name: String) {
        guard !stopping else { return }
        startupWakeups.remove(name)
        var state = destinations[name, default: DestinationState()]
        state.wakeRequested = true
        if !state.running {
            state.running = true
            state.loop = Task { await self.transmissionLoop(name) }
        }
        destinations[name] = state
    }

    private func transmissionLoop(_ name: String) async {
        var log = logger
        log[metadataKey: "destination"] = "\(name)"
        while !stopping, !Task.isCancelled {
            destinations[name]?.wakeRequested = false
            if let remaining = remainingBackoffMS(name) {
                scheduleRetry(name, afterMS: remaining)
                break
            }
            let transaction: PendingTransaction
            let body: [UInt8]
            do {
                guard let next = try await nextTransaction(name) else {
                    if let remaining = remainingBackoffMS(name) {
                        scheduleRetry(name, afterMS: remaining)
                        break
                    }
                    if destinations[name]?.wakeRequested == true { continue }
                    break
                }
                (transaction, body) = next
            } catch {
                if error is OutboxReadFailure { destinations[name]?.inFlight = nil }
                // The PDUs are still in the outbox: try again later rather than forget them.
                await recordFailure(name, reason: "cannot read outstanding PDUs from the outbox: \(error)", logger: log)
                break
            }
            if await deliver(transaction, body: body, to: name, logger: log) == false { break }
        }
        finishLoop(name)
    }

    private func finishLoop(_ name: String) {
        guard var state = destinations[name] else { return }
        state.running = false
        state.loop = nil
        if state.inFlight == nil, state.retryIntervalMS == 0, !state.wakeRequested {
            // Nothing owed: forget the destination until new PDUs arrive; the Outbox remembers its progress.
            destinations.removeValue(forKey: name)
        } else {
            destinations[name] = state
            if state.wakeRequested, state.retryTimer == nil, !stopping { wake(name) }
        }
        if !destinations.values.contains(where: \.running) { resumeIdleWaiters() }
    }

    private func resumeIdleWaiters() {
        let waiters = idleWaiters
        idleWaiters.removeAll()
        for waiter in waiters { waiter.resume() }
    }

    private func remainingBackoffMS(_ name: String) -> Int64? {
        guard let state = destinations[name], state.retryIntervalMS > 0 else { return nil }
        let remaining = state.retryLastTS + state.retryIntervalMS - WallClock.nowMS()
        return remaining > 0 ? remaining : nil
    }

    private func scheduleRetry(_ name: String, afterMS delay: Int64) {
        destinations[name]?.retryTimer?.cancel()
        destinations[name]?.retryTimer = Task {
            try? await Task.sleep(for: .milliseconds(delay))
            guard !Task.isCancelled else { return }
            self.retryTimerFired(name)
        }
    }

    private func retryTimerFired(_ name: String) {
        destinations[name]?.retryTimer = nil
        wake(name)
    }

    /// The transaction to send and its body: the one that failed last time, unchanged, or
    /// a new one made of the next PDUs after the last successful stream ordering. Nil when
    /// nothing is owed, or when the destination turns out to be backing off.
    private func nextTransaction(_ name: String) async throws -> (PendingTransaction, [UInt8])? {
        if let pending = destinations[name]?.inFlight {
            return (pending, try await transactionBody(pending, for: name))
        }
        let after: Int64
        if let known = destinations[name]?.lastSuccessfulStreamOrdering {
            after = known
        } else {
            let record = try await outbox.destination(name)
            after = record?.lastSuccessfulStreamOrdering ?? 0
            destinations[name]?.lastSuccessfulStreamOrdering = after
            destinations[name]?.retryLastTS = record?.retryLastTS ?? 0
            destinations[name]?.retryIntervalMS = record?.retryIntervalMS ?? 0
            if remainingBackoffMS(name) != nil { return nil }
        }
        let pdus = try await outbox.pendingPDUs(for: name, after: after, limit: maxPDUsPerTransaction)
        guard let last = pdus.last else { return nil }
        txnCounter += 1
        let transaction = PendingTransaction(
            txnID: "\(txnIDPrefix)\(txnCounter)", originServerTS: WallClock.nowMS(), after: after,
            pduCount: pdus.count, lastStreamOrdering: last.streamOrdering)
        destinations[name]?.inFlight = transaction
        let body = TransactionBody.encode(origin: origin, originServerTS: transaction.originServerTS,
                                          pdus: pdus.map(\.canonicalJSON), edus: [])
        return (transaction, body)
    }

    /// The canonical body of `transaction`, rebuilt from the Outbox: committed stream
    /// orderings never change, so every attempt sends the same bytes.
    private func transactionBody(_ transaction: PendingTransaction, for name: String) async throws -> [UInt8] {
        let pdus = try await outbox.pendingPDUs(for: name, after: transaction.after, limit: transaction.pduCount)
        guard pdus.count == transaction.pduCount, pdus.last?.streamOrdering == transaction.lastStreamOrdering else {
            throw OutboxReadFailure(reason: "the PDUs of transaction \(transaction.txnID) are no longer in the outbox")
        }
        return TransactionBody.encode(origin: origin, originServerTS: transaction.originServerTS,
                                      pdus: pdus.map(\.canonicalJSON), edus: [])
    }

    /// Sends one transaction; returns whether the destination may go on to the next one.
    private func deliver(_ transaction: PendingTransaction, body: [UInt8], to name: String, logger: Logger) async -> Bool {
        var log = logger
        log[metadataKey: "txn_id"] = "\(transaction.txnID)"
        let request = FederationRequest(method: "PUT", target: "/_matrix/federation/v1/send/\(transaction.txnID)", body: body)
        let failure: String
        do {
            let destination = try ServerName(name)
            let response = try await client.send(request, to: destination)
            if response.statusCode == 200 {
                logPDUErrors(response.bodyBytes, logger: log)
                await recordSuccess(transaction, to: name, logger: log)
                return true
            }
            failure = "HTTP \(response.statusCode): \(String(decoding: response.bodyBytes.prefix(200), as: UTF8.self))"
        } catch {
            failure = "\(error)"
        }
        await recordFailure(name, reason: failure, logger: log)
        return false
    }

    private func recordSuccess(_ transaction: PendingTransaction, to name: String, logger: Logger) async {
        metrics.transactionsSent += 1
        metrics.pdusDelivered += transaction.pduCount
        let wasBackingOff = (destinations[name]?.retryIntervalMS ?? 0) > 0
        destinations[name]?.inFlight = nil
        destinations[name]?.lastSuccessfulStreamOrdering = transaction.lastStreamOrdering
        destinations[name]?.retryIntervalMS = 0
        destinations[name]?.retryLastTS = 0
        do {
            try await outbox.recordDelivered(destination: name, upTo: transaction.lastStreamOrdering)
        } catch {
            logger.error("could not record delivery in the outbox", metadata: ["error": "\(error)"])
        }
        if wasBackingOff { logger.info("destination is reachable again") }
        logger.debug("transaction delivered", metadata: [
            "pdus": "\(transaction.pduCount)", "stream_ordering": "\(transaction.lastStreamOrdering)",
        ])
    }

    private func recordFailure(_ name: String, reason: String, logger: Logger) async {
        metrics.transactionsFailed += 1
        let previous = destinations[name]?.retryIntervalMS ?? 0
        let interval = retryPolicy.interval(after: previous, using: &random)
        let now = WallClock.nowMS()
        destinations[name]?.retryIntervalMS = interval
        destinations[name]?.retryLastTS = now
        logger.warning("transaction failed, will retry", metadata: ["error": "\(reason)", "retry_in_ms": "\(interval)"])
        do {
            try await outbox.recordFailure(destination: name, retryLastTS: now, retryIntervalMS: interval)
        } catch {
            logger.error("could not record the failure in the outbox", metadata: ["error": "\(error)"])
        }
        scheduleRetry(name, afterMS: interval)
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
