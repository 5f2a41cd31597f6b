import Glibc
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
@testable import SouthbridgeDaemon
import SouthbridgeSwarm
import SouthbridgeTestSupport
import Systemd
import Testing
import Logging

@Suite("systemd notify protocol and watchdog")
struct SystemdTests {
    @Test("the binary sends READY=1, STATUS=, WATCHDOG=1 pings and STOPPING=1 on SIGTERM")
    func notifyLifecycle() async throws {
        let fixture = try await DaemonProcess(destinations: 1)
        try await fixture.withTearDown {
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
    }

    @Test("a stopped process sends no watchdog ping for longer than WATCHDOG_USEC, and pings again once continued")
    func stoppedProcessStopsPings() async throws {
        let fixture = try await DaemonProcess(destinations: 1)
        try await fixture.withTearDown {
            // systemd would act once WATCHDOG_USEC passes without a ping; pings are due every half of it.
            let watchdog: Duration = .milliseconds(400)
            try await fixture.start(environment: ["WATCHDOG_USEC": "400000"])
            let notify = try #require(fixture.notifySocket)
            let process = try #require(fixture.process)
            func pings(after start: Int) -> Int {
                notify.messages().dropFirst(start).filter { $0.contains("WATCHDOG=1") }.count
            }
            #expect(await DaemonProcess.eventually(timeout: .seconds(5)) { pings(after: 0) >= 2 })
            let status = try #require(notify.messages().last { $0.hasPrefix("STATUS=") }?.dropFirst("STATUS=".count))
            #expect(status.wholeMatch(of: /\d+ destinations, \d+ backing off, \d+\/1024 connections, \d+ PDUs queued, \d+ delivered/) != nil,
                    "STATUS=\(status)")

            process.signal(SIGSTOP)
            #expect(await DaemonProcess.eventually(timeout: .seconds(5)) { processState(process.pid) == "T" })
            // Whatever was sent before the stop took effect is in the socket now; from here on nothing may come.
            let stopped = notify.messages().count
            #expect(await DaemonProcess.eventually(timeout: watchdog * 3) { notify.messages().count > stopped } == false,
                    "the stopped process sent \(notify.messages().dropFirst(stopped))")

            process.signal(SIGCONT)
            #expect(await DaemonProcess.eventually(timeout: .seconds(5)) { pings(after: stopped) >= 2 },
                    "no ping after SIGCONT")
        }
    }

    @Test("a stalled event loop stops the watchdog pings until it answers again")
    func stalledLoopStopsPings() async throws {
        let directory = try TemporaryDirectory(prefix: "southbridge-watchdog")
        defer { directory.remove() }
        let notify = try NotifySocket(path: directory.path + "/notify.sock")

        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let service = WatchdogService(
            // Each probe must answer within half the interval: 250 ms, so a loaded machine that
            // leaves the loop's thread waiting for a core tens of milliseconds is still healthy.
            notifier: SystemdNotifier(socketPath: notify.path, watchdogPingInterval: .milliseconds(500)),
            probe: HealthProbe(checks: HealthProbe.eventLoopChecks(group)),
            statusLine: { "testing" }, logger: Logger(label: "test"))
        let running = Task { try await service.run() }
        defer { running.cancel() }

        func pings(after start: Int = 0) -> Int {
            notify.messages().dropFirst(start).filter { $0.contains("WATCHDOG=1") }.count
        }
        /// Ticks of the service: it sends STATUS= on each, healthy or not.
        func ticks(after start: Int) -> Int {
            notify.messages().dropFirst(start).filter { $0.contains("STATUS=") }.count
        }
        #expect(await DaemonProcess.eventually(timeout: .seconds(10)) { pings() >= 2 })

        // Wedge the only event loop until the test lets it go.
        let wedge = ConditionLock(value: false)
        group.next().execute { wedge.lock(whenValue: true); wedge.unlock() }
        // A probe that began before the wedge may still ping once; from the tick after it on,
        // three ticks pass without a ping.
        let wedged = notify.messages().count
        #expect(await DaemonProcess.eventually(timeout: .seconds(10)) { ticks(after: wedged) >= 1 })
        let stalled = notify.messages().count
        #expect(await DaemonProcess.eventually(timeout: .seconds(10)) { ticks(after: stalled) >= 3 })
        #expect(pings(after: stalled) == 0, "pings went on while the event loop was stalled")

        wedge.lock()
        wedge.unlock(withValue: true)
        #expect(await DaemonProcess.eventually(timeout: .seconds(10)) { pings(after: stalled) >= 2 })
        running.cancel()
        try? await group.shutdownGracefully()
    }

    @Test("a service manager that stops reading loses notifications, and the thread sending them never waits")
    func unreadNotifySocketNeverBlocks() async throws {
        let directory = try TemporaryDirectory(prefix: "southbridge-notify")
        defer { directory.remove() }
        let path = directory.path + "/unread.sock"
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8) + [0]) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        try #require(bound == 0)

        // Far more than the socket's queue holds (net.unix.max_dgram_qlen: 10 here, 512 under systemd).
        let notifier = SystemdNotifier(socketPath: path, watchdogPingInterval: .seconds(1))
        let sent = NIOLockedValueBox(0)
        Task.detached {
            for _ in 0..<2_000 {
                notifier.status("queued")
                sent.withLockedValue { $0 += 1 }
            }
        }
        #expect(await DaemonProcess.eventually(timeout: .seconds(10)) { sent.withLockedValue { $0 } == 2_000 },
                "sent \(sent.withLockedValue { $0 }) of 2,000 notifications, then waited for a reader")
    }
}

/// The state letter of `/proc/PID/stat` (`R`, `S`, `T` for stopped, ...).
private func processState(_ pid: pid_t) -> Character? {
    let stat = readFileText("/proc/\(pid)/stat")
    // The command name in parentheses may hold spaces; the state follows the last ')'.
    guard let close = stat.lastIndex(of: ")") else { return nil }
    return stat[stat.index(after: close)...].first { $0 != " " }
}
