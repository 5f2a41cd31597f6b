import Ingest
import Logging
import NIOCore
import Outbox
import Sender
import ServiceLifecycle
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
    let sender: FederationSender
    let stopTimeout: Duration
    let logger: Logger

    func run() async throws {
        try await sender.start()
        try? await gracefulShutdown()
        if await sender.shutdown(within: stopTimeout) == false {
            logger.warning("stop timeout reached with transactions in flight; they will be resent after restart")
        }
    }
}

/// Prunes delivered rows from the Outbox once a minute and closes it last at shutdown.
struct OutboxService: Service {
    let outbox: Outbox
    let logger: Logger
    static let pruneInterval: Duration = .seconds(60)
    /// How long a repeated ingest txnId is still recognised: a homeserver retries within
    /// minutes, never a day later.
    static let ingestTransactionRetentionMS: Int64 = 24 * 3600 * 1000

    func run() async throws {
        while true {
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: Self.pruneInterval) }
            if Task.isShuttingDownGracefully || Task.isCancelled { break }
            do {
                let cutoff = WallClock.nowMS() - Self.ingestTransactionRetentionMS
                let removed = try await outbox.prune(ingestTransactionsReceivedBefore: cutoff)
                if removed > 0 { logger.debug("pruned delivered rows", metadata: ["rows": "\(removed)"]) }
            } catch {
                logger.error("pruning the outbox failed", metadata: ["error": "\(error)"])
            }
        }
        outbox.close()
    }
}
