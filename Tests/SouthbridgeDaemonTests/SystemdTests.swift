import Glibc
import NIOCore
import NIOPosix
@testable import SouthbridgeDaemon
import SouthbridgeSwarm
import Systemd
import Testing
import Logging

@Suite("systemd notify protocol and watchdog")
struct SystemdTests {
    @Test("the binary sends READY=1, STATUS=, WATCHDOG=1 pings and STOPPING=1 on SIGTERM")
    func notifyLifecycle() async throws {
        let fixture = try await DaemonProcess(destinations: 1)
        defer { Task { await fixture.tearDown() } }
        try await fixture.start(environment: ["WATCHDOG_USEC": "400000"])
        let notify = try #require(fixture.notifySocket)
        #expect(notify.messages().first?.contains("READY=1") == true)
        let pinged = await DaemonProcess.eventually(timeout: .seconds(5)) {
            notify.messages().filter { $0.contains("WATCHDOG=1") }.count >= 3
        }
        #expect(pinged)
        #expect(notify.messages().contains { $0.hasPrefix("STATUS=") || $0.contains("\nSTATUS=") })
        fixture.process?.signal(SIGTERM)
        #expect(await notify.waitFor("STOPPING=1", timeout: .seconds(10)))
        #expect(await fixture.process?.waitForExit(timeout: .seconds(20)) == 0)
    }

    @Test("a stalled event loop stops the watchdog pings until it answers again")
    func stalledLoopStopsPings() async throws {
        let directory = try TemporaryDirectory(prefix: "southbridge-watchdog")
        defer { directory.remove() }
        let notify = try NotifySocket(path: directory.path + "/notify.sock")

        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let service = WatchdogService(
            notifier: SystemdNotifier(socketPath: notify.path, watchdogPingInterval: .milliseconds(100)),
            probe: HealthProbe(checks: HealthProbe.eventLoopChecks(group)),
            statusLine: { "testing" }, logger: Logger(label: "test"))
        let running = Task { try await service.run() }
        defer { running.cancel() }

        func pings() -> Int { notify.messages().filter { $0.contains("WATCHDOG=1") }.count }
        #expect(await DaemonProcess.eventually(timeout: .seconds(5)) { pings() >= 2 })

        // Wedge the only event loop for 1.5 s.
        group.next().execute { usleep(1_500_000) }
        try await Task.sleep(for: .milliseconds(300))
        let duringStallStart = pings()
        try await Task.sleep(for: .milliseconds(900))
        #expect(pings() == duringStallStart, "pings went on while the event loop was stalled")

        #expect(await DaemonProcess.eventually(timeout: .seconds(5)) { pings() > duringStallStart + 1 })
        running.cancel()
        try? await group.shutdownGracefully()
    }
}
