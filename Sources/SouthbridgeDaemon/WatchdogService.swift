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
        // Pings go out on a fixed schedule, each after a probe that must answer within half
        // the interval, so a slow but healthy moment never stretches the gap towards WatchdogSec.
        let interval = notifier.watchdogPingInterval ?? Self.statusInterval
        let clock = ContinuousClock()
        var nextTick = clock.now
        var healthy = true
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            nextTick += interval
            do {
                try await probe.check(timeout: interval / 2)
                if notifier.watchdogPingInterval != nil { notifier.watchdogPing() }
                if !healthy { logger.notice("health probe passes again; watchdog pings resumed") }
                healthy = true
            } catch {
                if healthy { logger.critical("health probe failed; withholding watchdog pings", metadata: ["error": "\(error)"]) }
                healthy = false
            }
            notifier.status(await statusLine())
            let tick = nextTick
            try? await cancelWhenGracefulShutdown { try await Task.sleep(until: tick, clock: clock) }
        }
        notifier.stopping(status: "stopping: finishing transactions in flight")
    }
}
