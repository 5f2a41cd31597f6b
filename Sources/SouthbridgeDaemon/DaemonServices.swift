import Federation
import Ingest
import Logging
import NIOCore
import Outbox
import Replication
import Sender
import ServiceLifecycle
import Synchronization
import Systemd
import Transport

/// Keeps the ingest listener open until graceful shutdown, then stops accepting work.
struct IngestService: Service {
    let server: IngestServer

    func run() async throws {
        try? await gracefulShutdown()
        await server.close()
    }
}

/// Serves the replication endpoint until graceful shutdown, then tells every follower `ERROR server stopping`.
struct ReplicationService: Service {
    let server: ReplicationServer

    func run() async throws {
        await withDiscardingTaskGroup { group in
            group.addTask { await server.run() }
            try? await gracefulShutdown()
            await server.stop()
        }
    }
}

/// Closes every idle connection at shutdown; the pool closes idle ones on its own timer before that.
struct ConnectionPoolService: Service {
    let pool: ConnectionPool

    func run() async throws {
        try? await gracefulShutdown()
        await pool.closeIdleConnections()
    }
}

/// Runs the sender until graceful shutdown, then lets in-flight transactions finish
/// within the stop timeout; whatever is left is resent after the next start.
struct SenderService: Service {
    let stack: FederationStack
    let stopTimeout: Duration
    let logger: Logger

    func run() async throws {
        let sender = stack.sender
        try await sender.start()
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await stack.runSender() }
            try? await gracefulShutdown()
            if await sender.shutdown(within: stopTimeout) == false {
                logger.warning("stop timeout reached with transactions in flight; they will be resent after restart")
            }
        }
    }
}

/// Prunes the Outbox once a minute, and at once when a commit leaves it near `storage.max_bytes`; closes it last
/// at shutdown. Logs once per episode of dropping units still owed to backing-off destinations.
struct OutboxService: Service {
    let outbox: Outbox
    /// What may go besides delivered units; the ingest txn id cutoff is filled in at each pass.
    let retention: RetentionPolicy
    let logger: Logger
    static let pruneInterval: Duration = .seconds(60)

    private enum Pass {
        case interval, pressure, logGrowth
    }
    /// The least time between two passes for the PDU log's growth: at 100 PDUs a second a
    /// segment lasts about ten seconds.
    var logGrowthPassGap: Duration = .seconds(5)
    /// How long a repeated ingest txnId is at least still recognised (they are forgotten by whole
    /// days, so for up to a day longer): a homeserver retries within minutes, never a day later.
    static let ingestTransactionRetentionMS: Int64 = 24 * 3600 * 1000

    func run() async throws {
        // Requests are kept as a set of kinds, so that many of one kind (one per commit) never
        // push out another.
        let requested = Mutex<Set<Pass>>([])
        let (wakeUps, wakeUp) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let request: @Sendable (Pass) -> Void = { pass in
            requested.withLock { _ = $0.insert(pass) }
            wakeUp.yield()
        }
        outbox.observeStoragePressure { request(.pressure) }
        // Delivered units free log segments only once pruned: pruning when the log has no spare
        // left gives one back before the next segment's zeros must be written.
        outbox.observeLogGrowth { request(.logGrowth) }
        await withDiscardingTaskGroup { group in
            group.addTask {
                while (try? await Task.sleep(for: Self.pruneInterval)) != nil {
                    request(.interval)
                }
            }
            var dropping = false
            // A pass for pressure that could drop nothing (all is owed to reachable servers), or
            // for the log's growth that freed no segment (bodies still owed keep them), would
            // only repeat itself on every commit: the next one waits for the interval.
            var pressureHelps = true
            var logGrowthHelps = true
            var lastPassEnded = ContinuousClock.now
            for await _ in wakeUps.cancelOnGracefulShutdown() {
                let passes = requested.withLock { kinds in
                    defer { kinds.removeAll() }
                    return kinds
                }
                let interval = passes.contains(.interval)
                let forPressure = passes.contains(.pressure) && pressureHelps
                let forLogGrowth = passes.contains(.logGrowth) && logGrowthHelps
                    && ContinuousClock.now - lastPassEnded >= logGrowthPassGap
                guard interval || forPressure || forLogGrowth else { continue }
                let dropped = await prune(droppingBefore: dropping)
                dropping = dropped
                if interval || forPressure { pressureHelps = interval || dropped }
                logGrowthHelps = !outbox.logNeedsSpare
                lastPassEnded = ContinuousClock.now
            }
            group.cancelAll()
        }
        outbox.close()
    }

    /// One pass; returns whether it dropped units, so that only the first pass of an episode logs it.
    private func prune(droppingBefore: Bool) async -> Bool {
        var policy = retention
        policy.ingestTransactionsReceivedBefore = WallClock.nowMS() - Self.ingestTransactionRetentionMS
        do {
            let report = try await outbox.prune(policy)
            if report.rowsDeleted > 0 || report.logBodiesMoved > 0 {
                logger.debug("pruned the outbox", metadata: [
                    "rows": "\(report.rowsDeleted)", "log_bodies_moved": "\(report.logBodiesMoved)",
                ])
            }
            if report.droppedUnits, !droppingBefore {
                logger.warning("""
                    outbox past storage.max_bytes or storage.max_age_ms: dropped the oldest units owed only to \
                    backing-off destinations; they will catch up with the newest PDU of each room
                    """, metadata: [
                        "pdus_dropped": "\(report.pdusDropped)", "edu_copies_dropped": "\(report.eduCopiesDropped)",
                        "used_bytes": "\(report.usedBytes)", "max_bytes": "\(outbox.limits.maxBytes)",
                    ])
            }
            return report.droppedUnits
        } catch {
            logger.error("pruning the outbox failed", metadata: ["error": "\(error)"])
            return droppingBefore
        }
    }
}
