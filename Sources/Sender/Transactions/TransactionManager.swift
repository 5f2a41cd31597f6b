import Federation
import Logging
import Outbox
import Transport

/// Carries out the `SenderScheduler`'s I/O for one destination at a time: reads what a
/// transaction needs from the Outbox, signs and sends the transaction through the
/// `FederationClient`, classifies the remote's answer (`TransactionOutcome`, the only place
/// that does) and writes delivery progress and backoffs back. Each call reports what
/// happened as the event the scheduler takes next; nothing here decides what comes next.
///
/// A failed transaction is retried by sending the same `OutgoingTransaction` again (same
/// txnId, same bytes): the scheduler hands it back here when its destination's queue says
/// `resend`.
struct TransactionManager: Sendable {
    let origin: String
    let outbox: Outbox
    let client: FederationClient
    let logger: Logger

    /// Performs a reading or sending action; nil for actions that are not this kind.
    ///
    /// Each kind runs in a function of its own, never inlined here: an async function's frame
    /// holds every value any of its paths keeps across a suspension, and a task keeps the largest
    /// frames it has held, so the hundreds of sends in flight in a fan-out would each carry the
    /// reads' frames as well.
    @inline(never)
    func perform(_ action: SenderScheduler.Action) async -> SenderScheduler.Event? {
        switch action {
        case .load(let name, let owedPDULimit):
            await load(name, owedPDULimit: owedPDULimit)
        case .read(let name, let kind, let after, let limit):
            await read(name, kind, after: after, limit: limit)
        case .readPersistentEDUs(let name, let draft, let limit):
            await readPersistentEDUs(name, draft, limit: limit)
        case .send(let name, let transaction):
            await send(transaction, to: name)
        case .recordProgress, .recordFailure, .armTimer, .publish, .queueSpilled:
            nil
        }
    }

    @inline(never)
    private func load(_ name: String, owedPDULimit: Int?) async -> SenderScheduler.Event {
        do {
            let record = try await outbox.destination(name)
            var owed: [StoredPDU] = []
            if let owedPDULimit {
                owed = try await outbox.pendingPDUs(for: name, after: record?.lastSuccessfulStreamOrdering ?? 0,
                                                    limit: owedPDULimit)
            }
            return .loaded(name, record, owed: owed)
        } catch {
            return .outboxReadFailed(name, reason: "\(error)")
        }
    }

    @inline(never)
    private func read(_ name: String, _ kind: SenderScheduler.ReadKind, after: Int64, limit: Int) async -> SenderScheduler.Event {
        do {
            let pdus = kind == .catchUp
                ? try await outbox.catchUpPDUs(for: name, after: after, limit: limit)
                : try await outbox.pendingPDUs(for: name, after: after, limit: limit)
            return .read(name, kind, pdus: pdus)
        } catch {
            return .outboxReadFailed(name, reason: "\(error)")
        }
    }

    @inline(never)
    private func readPersistentEDUs(_ name: String, _ draft: SenderScheduler.TransactionDraft, limit: Int) async -> SenderScheduler.Event {
        do {
            // Read per kind, so a flood of to-device messages cannot push device-list updates
            // out of the read and out of their reserved slots.
            let toDevice: Set<String> = [TransactionEDUPlan.toDeviceEDUType]
            let deviceLists = TransactionEDUPlan.deviceListEDUTypes
            var edus = try await outbox.pendingEDUs(for: name, limit: limit, onlyTypes: toDevice)
            edus += try await outbox.pendingEDUs(for: name, limit: limit, onlyTypes: deviceLists)
            edus += try await outbox.pendingEDUs(for: name, limit: limit, exceptTypes: toDevice.union(deviceLists))
            return .persistentEDUsRead(name, draft, edus)
        } catch {
            return .outboxReadFailed(name, reason: "\(error)")
        }
    }

    /// Sends one transaction and says what its answer means. It waits for its connection
    /// (`FederationClient.connect`) before it builds or signs anything, so a destination waiting
    /// at the pool's caps holds only the frames of the wait.
    @inline(never)
    private func send(_ transaction: OutgoingTransaction, to name: String) async -> SenderScheduler.Event {
        let answer: Result<HTTPClientResponse, any Error>
        do {
            let connection = try await client.connect(to: try ServerName(name), class: transaction.requestClass)
            answer = .success(try await send(transaction, on: connection))
        } catch {
            answer = .failure(error)
        }
        return .transactionFinished(name, transaction, outcome(of: answer, for: transaction, to: name))
    }

    @inline(never) // its frame exists only once the connection is there
    private func send(_ transaction: OutgoingTransaction,
                      on connection: FederationClient.LeasedConnection) async throws(FederationRequestError) -> HTTPClientResponse {
        let request = FederationRequest(method: "PUT", target: "/_matrix/federation/v1/send/\(transaction.txnID)",
                                        makeBody: { [origin] in transaction.body(origin: origin) })
        return try await client.send(request, on: connection)
    }

    /// Classifies a transaction's answer and logs what it means. Not inlined into `send`, whose
    /// frame every send in flight holds while it waits for its answer.
    @inline(never)
    private func outcome(of answer: Result<HTTPClientResponse, any Error>, for transaction: OutgoingTransaction,
                         to name: String) -> TransactionOutcome {
        var log = logger
        log[metadataKey: "destination"] = "\(name)"
        log[metadataKey: "txn_id"] = "\(transaction.txnID)"
        let outcome: TransactionOutcome
        switch answer {
        case .success(let response):
            outcome = TransactionOutcome.classify(statusCode: response.statusCode, body: response.bodyBytes)
            if outcome == .delivered { logPDUErrors(response.bodyBytes, logger: log) }
        case .failure(let error):
            outcome = TransactionOutcome.classify(error: error)
        }
        switch outcome {
        case .delivered:
            log.debug("transaction delivered", metadata: [
                "pdus": "\(transaction.pdus.count)", "edus": "\(transaction.edus.count)",
                "stream_ordering": "\(transaction.lastStreamOrdering ?? 0)",
            ])
        case .rejected(let reason) where transaction.unitCount > 1:
            log.warning("destination refuses the transaction; splitting it", metadata: [
                "error": "\(reason)", "units": "\(transaction.unitCount)",
            ])
        case .rejected(let reason):
            log.error("destination refuses this unit; skipping it", metadata: [
                "error": "\(reason)", "event_id": "\(transaction.pdus.first?.eventID ?? "")",
            ])
        case .deferred(let reason):
            log.info("transaction held back by southbridge's own limits; trying it again shortly", metadata: [
                "error": "\(reason)",
            ])
        case .failed:
            // Logged with its retry interval once the scheduler has drawn it (`record`).
            break
        }
        return outcome
    }

    /// Writes a `recordProgress`, `recordFailure` or `publish` action to the Outbox; errors are
    /// logged, since delivery goes on from memory either way.
    func record(_ action: SenderScheduler.Action) async {
        switch action {
        case .recordProgress(let deliveries):
            do {
                try await outbox.recordDeliveries(deliveries)
            } catch {
                // Only a restart would send these units again.
                logger.error("could not record delivery progress in the outbox", metadata: [
                    "error": "\(error)", "destinations": "\(deliveries.count)",
                ])
            }
        case .recordFailure(let name, let failure):
            logger.warning("transaction failed, will retry", metadata: [
                "destination": "\(name)", "error": "\(failure.reason)", "retry_in_ms": "\(failure.retryIntervalMS)",
                "catching_up": "\(failure.enteredCatchUp)",
            ])
            do {
                try await outbox.recordFailure(destination: name, retryLastTS: failure.retryLastTS,
                                               retryIntervalMS: failure.retryIntervalMS)
            } catch {
                logger.error("could not record the failure in the outbox", metadata: [
                    "destination": "\(name)", "error": "\(error)",
                ])
            }
        case .publish(let change):
            // After the failure it follows is written, so a backoff's failure count is the stored one.
            var retryIntervalMS: Int64?
            var failureCount: Int64?
            switch change.state {
            case .backingOff(let interval): retryIntervalMS = interval
            case .up: (retryIntervalMS, failureCount) = (0, 0)
            case .catchingUp, .caughtUp: break
            }
            do {
                try await outbox.recordDestinationChange(
                    destination: change.destination, state: change.state.name, retryIntervalMS: retryIntervalMS,
                    failureCount: failureCount, lastSuccessfulStreamOrdering: change.lastSuccessfulStreamOrdering)
            } catch {
                logger.error("could not record the destination's state change in the outbox", metadata: [
                    "destination": "\(change.destination)", "state": "\(change.state.name)", "error": "\(error)",
                ])
            }
        default:
            break
        }
    }

    /// A 200 may still carry per-PDU errors; they are logged and never block the queue.
    private func logPDUErrors(_ body: [UInt8], logger: Logger) {
        guard let response = try? JSONValue.parse(body), case .object(let fields) = response,
              case .object(let results)? = fields["pdus"] else { return }
        for (eventID, result) in results {
            if case .object(let entry) = result, case .string(let message)? = entry["error"] {
                logger.warning("destination rejected a PDU", metadata: ["event_id": "\(eventID)", "error": "\(message)"])
            }
        }
    }
}
