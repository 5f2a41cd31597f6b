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

/// Runs the sender until graceful shutdown, then lets in-flight transactions finish
/// within the stop timeout; whatever is left is resent after the next start.
struct SenderService: Service {
    let sender: FederationSender
    let pool: ConnectionPool
    let stopTimeout: Duration
    let logger: Logger

    func run() async throws {
        try await sender.resumeOutstandingDestinations()
        try? await gracefulShutdown()
        let finished = await withTaskGroup(of: Bool.self) { group in
            group.addTask { await sender.shutdown(); return true }
            group.addTask { try? await Task.sleep(for: stopTimeout); return false }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        if !finished {
            logger.warning("stop timeout reached with transactions in flight; they will be resent after restart")
        }
        await pool.closeIdleConnections()
    }
}

/// Prunes delivered rows from the Outbox once a minute and closes it last at shutdown.
struct OutboxService: Service {
    let outbox: Outbox
    let logger: Logger
    static let pruneInterval: Duration = .seconds(60)

    func run() async throws {
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: Self.pruneInterval) }
            do {
                let removed = try await outbox.prune()
                if removed > 0 { logger.debug("pruned delivered rows", metadata: ["rows": "\(removed)"]) }
            } catch {
                logger.error("pruning the outbox failed", metadata: ["error": "\(error)"])
            }
        }
        outbox.close()
    }
}
