import Logging
import ServiceLifecycle
import Systemd

/// Pings the systemd watchdog while the health probe passes, keeps `STATUS=` current,
/// and announces `STOPPING=1` when graceful shutdown begins.
struct WatchdogService: Service {
    let notifier: SystemdNotifier
    let probe: HealthProbe
    let statusLine: @Sendable () async -> String
    let logger: Logger
    /// How often STATUS= is refreshed when no watchdog is configured.
    static let statusInterval: Duration = .seconds(10)

    func run() async throws {
        let interval = notifier.watchdogPingInterval ?? Self.statusInterval
        var healthy = true
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            do {
                try await probe.check(timeout: interval)
                if notifier.watchdogPingInterval != nil { notifier.watchdogPing() }
                if !healthy { logger.notice("health probe passes again; watchdog pings resumed") }
                healthy = true
            } catch {
                if healthy { logger.critical("health probe failed; withholding watchdog pings", metadata: ["error": "\(error)"]) }
                healthy = false
            }
            notifier.status(await statusLine())
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
        notifier.stopping(status: "stopping: finishing transactions in flight")
    }
}
