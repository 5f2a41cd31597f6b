import Outbox

/// What the admin API, `/metrics`, the watchdog and the query forwarder ask of the sender.
extension FederationSender {
    public var currentMetrics: Metrics { scheduler.currentMetrics }

    /// The in-memory state of `name`; nil when the sender does not hold it (not met since
    /// start, or forgotten while quiet).
    public func status(of name: String) -> DestinationStatus? {
        scheduler.status(of: name)
    }

    /// Clears the destination's backoff and tries it at once: the one entry point for the
    /// admin API's `wake` and `DELETE …/backoff` and the replication command
    /// `REMOTE_SERVER_UP`. Returns false when the destination is unknown.
    @discardableResult
    public func resetBackoffAndWake(_ name: String) async throws -> Bool {
        let stored = try await outbox.resetBackoff(destination: name)
        let held = scheduler.queue(of: name)
        guard stored != .unknown || held != nil else { return false }
        if stored == .cleared || held?.isBackingOff == true {
            logger.info("backoff cleared; trying the destination now", metadata: ["destination": "\(name)"])
        } else {
            // A homeserver wakes every server that contacts it; most are not backing off.
            logger.debug("woken while not backing off", metadata: ["destination": "\(name)"])
        }
        handle(.backoffReset(name))
        return true
    }

    /// When `name`'s backoff ends, in wall-clock ms, or nil when it is not backing off: from
    /// the state in memory, or for a destination not loaded from its outbox record, read as
    /// `PerDestinationQueue.loaded` reads it (ending at most one interval from now).
    public func backoffEnd(of name: String) async -> Int64? {
        let now = clock.now()
        if let queue = scheduler.queue(of: name), queue.phase != .unloaded, queue.phase != .loading {
            guard queue.retryIntervalMS > 0, queue.retryDueMS > now.monotonicMS else { return nil }
            return now.wallMS + (queue.retryDueMS - now.monotonicMS)
        }
        guard let record = try? await outbox.destination(name), record.retryIntervalMS > 0 else { return nil }
        var queue = PerDestinationQueue(budget: 1, catchUpAfterMS: scheduler.settings.catchUpAfterMS)
        queue.loaded(record, owed: [], nowMS: now.monotonicMS, wallNowMS: now.wallMS)
        guard queue.retryDueMS > now.monotonicMS else { return nil }
        return now.wallMS + (queue.retryDueMS - now.monotonicMS)
    }

    /// Answers once the actor has run a job: the watchdog's health probe.
    public func probe() {}
}

extension FederationSender {
    /// Whether the sender has acted on everything due at its clock's current time: the timer is
    /// not due, nobody waits for a sending slot, and no destination is reading or sending except
    /// those in `ignoring` (a blackholed server whose request only ends at its timeout). What a
    /// test waits for after moving a manual clock.
    public func isSettled(ignoring: Set<String> = []) -> Bool {
        guard scheduler.readyCount == 0, scheduler.timerMS.map({ $0 > clock.monotonicMS() }) ?? true else { return false }
        let ignoredSending = ignoring.filter { scheduler.status(of: $0)?.isSending == true }.count
        return scheduler.sendingCount == ignoredSending
    }
}
