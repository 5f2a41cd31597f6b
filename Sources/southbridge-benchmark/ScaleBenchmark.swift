import Glibc
import SouthbridgeDaemon
import SouthbridgeSwarm
import SouthbridgeTestSupport

/// `southbridge-benchmark scale fanout|meltdown|restart|burst`: the proof at scale GitHub
/// issue #17 asks for, one markdown table row per run, every scenario with the same columns.
///
/// The real `southbridge` binary runs as its own process pinned to CPU 0, with the
/// environment of the shipped unit, the daemon's default (Pi-class) limits and its shipped
/// retry schedule (10 minutes first, 7 days at most), so a live destination that fails once
/// is not retried within the run and shows up as lost. `--lifted-pacing` raises
/// `limits.max_new_connections_per_second` to 10,000; every other limit stays. This process,
/// with the swarm of fake servers, runs on CPU 1.
///
/// - fanout: one PDU to `--destinations` servers; then `openssl s_time -new` against one of
///   them (the same kind of certificate), pinned to CPU 0 too, gives the client CPU of a full
///   handshake measured in the same run, beside the daemon's CPU per destination.
/// - meltdown: a room of `--servers`, `--faulty-percent` of them faulty (two thirds
///   blackholed, every SYN dropped; one third refusing connections), one message (one PDU to
///   every server of the room) per second for `--seconds`; latency to the live servers. The
///   fair no-fault run keeps the live servers and drops the faulty ones: `--servers 500
///   --faulty-percent 30` has 350 live servers, so its baseline is `--servers 350
///   --faulty-percent 0`.
/// - restart: `--pdus` PDUs accepted for `--destinations` servers, the daemon SIGKILLed as
///   soon as the ingest request is acknowledged, then started again on the same outbox.
/// - burst: `--pdus` one-PDU ingest requests `--interval-ms` apart to `--servers` servers,
///   over connections a first message warmed (`--cold` skips it); how many transactions
///   carried them.
///
/// A message's time to a server runs from just before its ingest request to the moment that
/// server had read the whole `/send` carrying it. Everything after the daemon is ready shares
/// one bound (`--bound-seconds`); copies still owed at the bound are lost, and a run that
/// lost any, or whose daemon's peaks (`southbridge_connections_peak_open`,
/// `southbridge_tls_handshakes_peak_in_progress`: the pool's own counts, every change
/// seen) passed `limits.max_connections` or `limits.max_tls_handshakes`, says so on stderr
/// and exits 1. The swarm's peaks (`SwarmLoad`) are printed beside them as a check from the
/// other end; they end each connection and handshake only once the swarm's one thread has
/// read the close or the client's Finished, after the daemon counts it done, so a loaded
/// swarm sees a few more at once than the daemon ever had, and that alone fails no run.
struct ScaleBenchmark {
    enum Scenario: String, CaseIterable {
        case fanout, meltdown, restart, burst
    }

    var scenario: Scenario
    var destinations: Int
    var servers: Int
    var faultyPercent: Int
    var seconds: Int
    var pdus: Int
    var intervalMilliseconds: Int
    var liftedPacing: Bool
    var cold: Bool
    var bound: Duration
    var header: Bool
    var sTimeSeconds = 5

    static let liftedNewConnectionsPerSecond = 10_000

    static func fromCommandLine() throws -> ScaleBenchmark {
        let arguments = CommandLine.arguments
        let names = Scenario.allCases.map(\.rawValue).joined(separator: ", ")
        guard arguments.count > 2, let scenario = Scenario(rawValue: arguments[2]) else {
            throw BenchmarkError("scale: name a scenario (\(names)), got \(arguments.count > 2 ? "\"\(arguments[2])\"" : "none")")
        }
        let benchmark = ScaleBenchmark(
            scenario: scenario,
            destinations: option("--destinations", default: scenario == .restart ? 10_000 : 1_000),
            servers: option("--servers", default: 500),
            faultyPercent: option("--faulty-percent", default: 30),
            seconds: option("--seconds", default: 60),
            pdus: option("--pdus", default: scenario == .burst ? 20 : 1),
            intervalMilliseconds: option("--interval-ms", default: 50),
            liftedPacing: arguments.contains("--lifted-pacing"),
            cold: arguments.contains("--cold"),
            bound: .seconds(option("--bound-seconds", default: 900)),
            header: !arguments.contains("--no-header"))
        try benchmark.validate()
        return benchmark
    }

    private func validate() throws {
        func check(_ name: String, _ value: Int, _ range: ClosedRange<Int>) throws {
            guard range.contains(value) else {
                throw BenchmarkError("scale \(scenario.rawValue): \(name) must be between \(range.lowerBound) and \(range.upperBound), got \(value)")
            }
        }
        try check("--destinations", destinations, 1...50_000)
        try check("--servers", servers, 1...50_000)
        try check("--faulty-percent", faultyPercent, 0...99)
        try check("--seconds", seconds, 1...86_400)
        try check("--pdus", pdus, 1...10_000)
        try check("--interval-ms", intervalMilliseconds, 0...60_000)
        try check("--bound-seconds", Int(bound.components.seconds), 1...86_400)
    }

    /// One run's figures; scenario-specific ones are nil where they do not apply.
    struct Row {
        var scenario: String
        var limits: String
        var timeToDeliver: Duration?
        var daemonCPU: Double
        var cpuPerDestination: String?
        var peakRSSKiB: Int
        var peakOpen: (daemon: Int, swarm: Int)
        var peakHandshakes: (daemon: Int, swarm: Int)
        var latency: (p50: String, p99: String)?
        var transactions: (daemon: Int, swarm: Int)?
        var caughtUp: Duration?
        var lost: Int
        var owed: Int
    }

    static let header = """
        | scenario | limits | time to deliver | daemon CPU | daemon CPU per destination / `s_time -new` client CPU per handshake | daemon peak RSS | peak open connections, daemon / swarm | peak TLS handshakes in progress, daemon / swarm | p50 / p99 to live servers | transactions sent, daemon / swarm | caught up after restart | PDUs lost |
        | --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
        """

    func run() async throws {
        let fileLimit = try OpenFileLimit.raiseToHardLimit()
        try CPUAffinity.pinThisProcess(to: [1])
        note("scale \(scenario.rawValue): RLIMIT_NOFILE \(fileLimit)")
        let row: Row
        let limits: Configuration.LimitsSettings
        switch scenario {
        case .fanout: (row, limits) = try await fanout()
        case .meltdown: (row, limits) = try await meltdown()
        case .restart: (row, limits) = try await restart()
        case .burst: (row, limits) = try await burst()
        }
        if header { print(Self.header) }
        print(markdown(row))
        var problems: [String] = []
        if row.lost > 0 { problems.append("\(row.lost) of \(row.owed) PDU copies never arrived within \(format(bound))") }
        if row.peakOpen.daemon > limits.maxConnections {
            problems.append("the daemon had \(row.peakOpen.daemon) connections open at once, over limits.max_connections \(limits.maxConnections)")
        }
        if row.peakHandshakes.daemon > limits.maxTLSHandshakes {
            problems.append("the daemon had \(row.peakHandshakes.daemon) TLS handshakes in progress at once, over limits.max_tls_handshakes \(limits.maxTLSHandshakes)")
        }
        var swarmOverLimits: [String] = []
        if row.peakOpen.swarm > limits.maxConnections { swarmOverLimits.append("\(row.peakOpen.swarm) connections open") }
        if row.peakHandshakes.swarm > limits.maxTLSHandshakes { swarmOverLimits.append("\(row.peakHandshakes.swarm) handshakes in progress") }
        if !swarmOverLimits.isEmpty {
            note("the swarm saw \(swarmOverLimits.joined(separator: " and ")) at once, over the daemon's limits: it ends a connection "
                 + "once its one thread has read the close, a handshake once it has read the client's Finished, both later than "
                 + "the daemon ends them; the daemon's own peaks decide")
        }
        guard problems.isEmpty else {
            for problem in problems { note("FAILED: \(problem)") }
            exit(1)
        }
    }

    /// `/metrics` over a connection of its own: a run at the default pacing outlasts
    /// `ingest.idle_timeout_ms`, after which the daemon closes an ingest connection left idle.
    private static func metrics(of fixture: DaemonProcess) async throws -> [String: Int] {
        let client = try await fixture.client()
        do {
            let metrics = try await Metrics.read(client)
            await client.close()
            return metrics
        } catch {
            await client.close()
            throw error
        }
    }

    // MARK: - Scenarios

    private func fanout() async throws -> (Row, Configuration.LimitsSettings) {
        let fixture = try await startFixture(liveServers: destinations)
        return try await fixture.withTearDown {
            let daemon = try await startDaemon(fixture)
            let client = try await fixture.client()
            let deadline = ContinuousClock.now + bound
            var deliveries = Deliveries()
            let cpuBefore = cpuSeconds(pid: daemon.pid)
            deliveries.owe("0", to: fixture.swarm.servers, sentAt: .now)
            try await ingest(client, number: 0, destinations: fixture.swarm.serverNames)
            await client.close()
            await deliveries.waitForAll(until: deadline)
            let cpu = cpuSeconds(pid: daemon.pid) - cpuBefore
            let metrics = try await Self.metrics(of: fixture)
            let load = fixture.swarm.load.current
            let peakRSS = ProcessMemory.peakKiB(pid: daemon.pid)

            // The daemon is idle now; s_time gets its core.
            let sTime = try await STimeRun.run(
                port: fixture.swarm.servers[0].port, caFile: fixture.directory.path + "/ca.pem", mode: "-new",
                seconds: sTimeSeconds, directory: fixture.directory.path, cpus: [0])
            note("fanout: `\(sTime.command)`, pinned to CPU 0: \(sTime.connections) connections (\(sTime.resumed) resumed), "
                 + "\(Self.micros(sTime.cpuTime.user / max(sTime.connections, 1))) user + "
                 + "\(Self.micros(sTime.cpuTime.system / max(sTime.connections, 1))) system per connection")
            let perDestination = cpu / Double(destinations)
            let perHandshake = Self.seconds(sTime.cpuPerConnection)
            let ratio = perHandshake > 0 ? perDestination / perHandshake : 0
            let comparison = "\(Self.micros(perDestination)) / \(Self.micros(perHandshake)) = \(Self.twoDecimals(ratio))×"

            var row = measuredRow(
                "fanout: 1 PDU to \(Self.grouped(destinations)) destinations", fixture: fixture, metrics: metrics, load: load,
                peakRSSKiB: peakRSS, timeToDeliver: deliveries.timeToAll(from: deliveries.firstSent), daemonCPU: cpu,
                deliveries: deliveries)
            row.cpuPerDestination = comparison
            return (row, fixture.configuration.limits)
        }
    }

    private func meltdown() async throws -> (Row, Configuration.LimitsSettings) {
        let faultyCount = servers * faultyPercent / 100
        let blackholedCount = faultyCount * 2 / 3
        let refusingCount = faultyCount - blackholedCount
        let liveCount = servers - faultyCount
        let fixture = try await startFixture(liveServers: liveCount)
        var faulty: [FaultyServer] = []
        defer { for server in faulty { server.stop() } }
        return try await fixture.withTearDown {
            // Refusing ports come last, so no listener started after them can be given one.
            for _ in 0..<blackholedCount { faulty.append(try FaultyServer.start(.blackholed)) }
            for _ in 0..<refusingCount { faulty.append(try FaultyServer.start(.refusing)) }
            let daemon = try await startDaemon(fixture)
            let room = fixture.swarm.serverNames + faulty.map(\.serverName)
            let deadline = ContinuousClock.now + bound
            var deliveries = Deliveries()
            let cpuBefore = cpuSeconds(pid: daemon.pid)
            let started = ContinuousClock.now
            let sends = try await ingestOnSchedule(fixture, numbers: 0..<seconds, interval: .seconds(1), destinations: room)
            for (number, sentAt) in sends.sentAt { deliveries.owe("\(number)", to: fixture.swarm.servers, sentAt: sentAt) }
            await deliveries.waitForAll(until: deadline)
            let cpu = cpuSeconds(pid: daemon.pid) - cpuBefore
            let metrics = try await Self.metrics(of: fixture)
            let load = fixture.swarm.load.current
            var row = measuredRow(
                "meltdown: \(servers) servers (\(liveCount) live, \(blackholedCount) blackholed, \(refusingCount) refusing), "
                    + "1 message/s for \(seconds) s (slowest ingest ack \(format(sends.slowestAck)))",
                fixture: fixture, metrics: metrics, load: load, peakRSSKiB: ProcessMemory.peakKiB(pid: daemon.pid),
                timeToDeliver: deliveries.timeToAll(from: started), daemonCPU: cpu, deliveries: deliveries)
            row.latency = (deliveries.latency(at: 0.5), deliveries.latency(at: 0.99))
            return (row, fixture.configuration.limits)
        }
    }

    private func restart() async throws -> (Row, Configuration.LimitsSettings) {
        let fixture = try await startFixture(liveServers: destinations)
        return try await fixture.withTearDown {
            let first = try await startDaemon(fixture)
            let client = try await fixture.client()
            let deadline = ContinuousClock.now + bound
            var deliveries = Deliveries()
            let started = ContinuousClock.now
            for number in 0..<pdus { deliveries.owe("\(number)", to: fixture.swarm.servers, sentAt: started) }
            let body = DaemonProcess.ingestBody(0..<pdus, destinations: fixture.swarm.serverNames)
            let response = try await client.send(txnID: "scale-restart", body: body)
            first.signal(SIGKILL)
            guard response.status == 200 else {
                throw BenchmarkError("ingest answered \(response.status): \(String(decoding: response.body, as: UTF8.self))")
            }
            guard await first.waitForExit(timeout: .seconds(10)) == -SIGKILL else {
                throw BenchmarkError("the daemon did not die of SIGKILL within 10 s")
            }
            await client.close()
            deliveries.collect()
            let beforeKill = deliveries.owed - deliveries.missing
            // The swarm's peaks start again once the killed daemon's connections are gone.
            let closed = await DaemonProcess.eventually(timeout: .seconds(10)) { fixture.swarm.load.current.open == 0 }
            guard closed else { throw BenchmarkError("the swarm still has \(fixture.swarm.load.current.open) connections of the killed daemon open") }
            fixture.swarm.load.resetPeaks()

            let restarted = ContinuousClock.now
            let daemon = try await startDaemon(fixture)
            await deliveries.waitForAll(until: deadline)
            // The whole life of the restarted process: reading the outbox back and the catch-up.
            let cpu = cpuSeconds(pid: daemon.pid)
            let metrics = try await Self.metrics(of: fixture)
            let load = fixture.swarm.load.current
            var row = measuredRow(
                "restart: \(pdus) PDU\(pdus == 1 ? "" : "s") to \(Self.grouped(destinations)) destinations, SIGKILL "
                    + "right after the ingest ack (\(Self.grouped(beforeKill)) of \(Self.grouped(deliveries.owed)) copies had arrived), started again",
                fixture: fixture, metrics: metrics, load: load, peakRSSKiB: ProcessMemory.peakKiB(pid: daemon.pid),
                timeToDeliver: deliveries.timeToAll(from: started), daemonCPU: cpu, deliveries: deliveries)
            row.caughtUp = deliveries.timeToAll(from: restarted)
            return (row, fixture.configuration.limits)
        }
    }

    private func burst() async throws -> (Row, Configuration.LimitsSettings) {
        let fixture = try await startFixture(liveServers: servers)
        return try await fixture.withTearDown {
            let daemon = try await startDaemon(fixture)
            let client = try await fixture.client()
            let deadline = ContinuousClock.now + bound
            let names = fixture.swarm.serverNames
            if !cold {
                var warmUp = Deliveries()
                warmUp.owe("0", to: fixture.swarm.servers, sentAt: .now)
                try await ingest(client, number: 0, destinations: names)
                await warmUp.waitForAll(until: deadline)
                guard warmUp.missing == 0 else {
                    throw BenchmarkError("burst: the warm-up message reached \(warmUp.owed - warmUp.missing) of \(warmUp.owed) servers by the bound")
                }
            }
            let sentBefore = try await Metrics.read(client)["southbridge_transactions_sent_total"] ?? 0
            let swarmBefore = fixture.swarm.transactionCount
            let cpuBefore = cpuSeconds(pid: daemon.pid)
            var deliveries = Deliveries()
            let interval = Duration.milliseconds(intervalMilliseconds)
            let started = ContinuousClock.now
            let sends = try await ingestOnSchedule(fixture, numbers: 1..<(pdus + 1), interval: interval, destinations: names)
            for (number, sentAt) in sends.sentAt { deliveries.owe("\(number)", to: fixture.swarm.servers, sentAt: sentAt) }
            await deliveries.waitForAll(until: deadline)
            let cpu = cpuSeconds(pid: daemon.pid) - cpuBefore
            let metrics = try await Metrics.read(client)
            await client.close()
            let load = fixture.swarm.load.current
            var row = measuredRow(
                "burst: \(pdus) PDUs \(format(interval)) apart to \(Self.grouped(servers)) servers"
                    + (cold ? ", new connections" : ", connections warmed by a first message")
                    + " (slowest ingest ack \(format(sends.slowestAck)))",
                fixture: fixture, metrics: metrics, load: load, peakRSSKiB: ProcessMemory.peakKiB(pid: daemon.pid),
                timeToDeliver: deliveries.timeToAll(from: started), daemonCPU: cpu, deliveries: deliveries)
            // The warm-up message's transactions are not the burst's.
            row.transactions = ((metrics["southbridge_transactions_sent_total"] ?? 0) - sentBefore,
                                fixture.swarm.transactionCount - swarmBefore)
            return (row, fixture.configuration.limits)
        }
    }

    // MARK: - Fixture

    /// The daemon's configuration with `liveServers` swarm servers; says on stderr how long
    /// the swarm took to start (a certificate and a listener per server).
    private func startFixture(liveServers: Int) async throws -> DaemonProcess {
        let started = ContinuousClock.now
        let shipped = Configuration.withDefaults(serverName: DaemonProcess.serverName)
        let lifted = liftedPacing
        let fixture = try await DaemonProcess(destinations: liveServers) { configuration in
            configuration.log.level = "warning"
            configuration.sender.retryInitialInterval = shipped.sender.retryInitialInterval
            configuration.sender.retryMaxInterval = shipped.sender.retryMaxInterval
            if lifted { configuration.limits.maxNewConnectionsPerSecond = Self.liftedNewConnectionsPerSecond }
        }
        note("\(scenario.rawValue): swarm of \(Self.grouped(liveServers)) servers started in \(format(ContinuousClock.now - started))")
        return fixture
    }

    /// Starts the daemon pinned to CPU 0 with the unit's environment; returns its process.
    private func startDaemon(_ fixture: DaemonProcess) async throws -> ChildProcess {
        try await fixture.start(environment: RoomBenchmark.unitEnvironment, cpus: [0])
        guard let daemon = fixture.process else { throw BenchmarkError("the daemon did not start") }
        let cpus = CPUAffinity.allowedCPULists(pid: daemon.pid)
        guard cpus == ["0"] else { throw BenchmarkError("the daemon runs on CPUs \(cpus.sorted()), not on CPU 0 alone") }
        return daemon
    }

    /// One PDU numbered `number` to `destinations`, in one ingest request.
    private func ingest(_ client: IngestClient, number: Int, destinations: [String]) async throws {
        let body = DaemonProcess.ingestBody(number..<(number + 1), destinations: destinations)
        let response = try await client.send(txnID: "scale-\(scenario.rawValue)-\(number)", body: body)
        guard response.status == 200 else {
            throw BenchmarkError("ingest answered \(response.status): \(String(decoding: response.body, as: UTF8.self))")
        }
    }

    /// Sends one PDU per number, the i-th of them `interval` × i after the first, each on an
    /// ingest connection of its own, so that a slow acknowledgement (an fsync on a busy disk)
    /// holds back no later request. Returns when each request left, and the slowest
    /// acknowledgement.
    private func ingestOnSchedule(_ fixture: DaemonProcess, numbers: Range<Int>, interval: Duration,
                                  destinations: [String]) async throws -> (sentAt: [Int: ContinuousClock.Instant], slowestAck: Duration) {
        let start = ContinuousClock.now
        return try await withThrowingTaskGroup(of: (Int, ContinuousClock.Instant, Duration).self) { requests in
            for (index, number) in numbers.enumerated() {
                requests.addTask {
                    try await Task.sleep(until: start + interval * index)
                    let client = try await fixture.client()
                    let sentAt = ContinuousClock.now
                    do {
                        try await ingest(client, number: number, destinations: destinations)
                    } catch {
                        await client.close()
                        throw error
                    }
                    let ack = ContinuousClock.now - sentAt
                    await client.close()
                    return (number, sentAt, ack)
                }
            }
            var sentAt: [Int: ContinuousClock.Instant] = [:]
            var slowestAck: Duration = .zero
            for try await (number, instant, ack) in requests {
                sentAt[number] = instant
                slowestAck = max(slowestAck, ack)
            }
            return (sentAt, slowestAck)
        }
    }

    /// A row with what every scenario measures: the daemon's and the swarm's peaks and
    /// transactions, its peak RSS, and the copies owed and lost.
    private func measuredRow(_ scenario: String, fixture: DaemonProcess, metrics: [String: Int], load: SwarmLoad.Counts,
                             peakRSSKiB: Int, timeToDeliver: Duration?, daemonCPU: Double, deliveries: Deliveries) -> Row {
        Row(
            scenario: scenario, limits: limitsCell(fixture), timeToDeliver: timeToDeliver, daemonCPU: daemonCPU,
            cpuPerDestination: nil, peakRSSKiB: peakRSSKiB,
            peakOpen: (metrics["southbridge_connections_peak_open"] ?? -1, load.peakOpen),
            peakHandshakes: (metrics["southbridge_tls_handshakes_peak_in_progress"] ?? -1, load.peakHandshaking),
            latency: nil,
            transactions: (metrics["southbridge_transactions_sent_total"] ?? -1, fixture.swarm.transactionCount),
            caughtUp: nil, lost: deliveries.missing, owed: deliveries.owed)
    }

    private func limitsCell(_ fixture: DaemonProcess) -> String {
        let limits = fixture.configuration.limits
        let pacing = liftedPacing ? "lifted to \(Self.grouped(limits.maxNewConnectionsPerSecond))" : "\(limits.maxNewConnectionsPerSecond)"
        return "\(limits.maxConnections) connections, \(limits.maxTLSHandshakes) handshakes, \(pacing) new/s"
    }

    // MARK: - Output

    private func markdown(_ row: Row) -> String {
        let toAll = row.timeToDeliver.map { format($0) } ?? "> \(format(bound))"
        let cells = [
            row.scenario, row.limits, toAll, "\(Self.twoDecimals(row.daemonCPU)) s", row.cpuPerDestination ?? "–",
            "\(Self.oneDecimal(Double(row.peakRSSKiB) / 1024)) MiB",
            "\(row.peakOpen.daemon) / \(row.peakOpen.swarm)", "\(row.peakHandshakes.daemon) / \(row.peakHandshakes.swarm)",
            row.latency.map { "\($0.p50) / \($0.p99)" } ?? "–",
            row.transactions.map { "\(Self.grouped($0.daemon)) / \(Self.grouped($0.swarm))" } ?? "–",
            row.caughtUp.map { format($0) } ?? "–",
            "\(row.lost) of \(Self.grouped(row.owed))",
        ]
        return "| " + cells.joined(separator: " | ") + " |"
    }

    private func note(_ text: String) {
        var line = text + "\n"
        _ = line.withUTF8 { write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    static func micros(_ seconds: Double) -> String { "\(Int((seconds * 1e6).rounded())) µs" }
    static func micros(_ duration: Duration) -> String { micros(seconds(duration)) }

    static func twoDecimals(_ value: Double) -> String {
        let hundredths = Int((value * 100).rounded())
        return "\(hundredths / 100).\(hundredths % 100 < 10 ? "0" : "")\(hundredths % 100)"
    }

    static func oneDecimal(_ value: Double) -> String {
        let tenths = Int((value * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)"
    }

    /// 10000 as "10,000".
    static func grouped(_ value: Int) -> String {
        var digits = String(value.magnitude)
        var grouped = ""
        while digits.count > 3 {
            grouped = "," + digits.suffix(3) + grouped
            digits = String(digits.dropLast(3))
        }
        return (value < 0 ? "-" : "") + digits + grouped
    }
}

/// The PDU copies owed to live swarm servers, and when each first arrived.
struct Deliveries {
    private var waiting: [(server: SwarmServer, id: String, sentAt: ContinuousClock.Instant)] = []
    private var latencies: [Duration] = []
    private(set) var owed = 0
    private(set) var firstSent: ContinuousClock.Instant?
    private var lastArrival: ContinuousClock.Instant?

    var missing: Int { waiting.count }

    mutating func owe(_ id: String, to servers: [SwarmServer], sentAt: ContinuousClock.Instant) {
        waiting += servers.map { ($0, id, sentAt) }
        owed += servers.count
        firstSent = min(firstSent ?? sentAt, sentAt)
    }

    /// Takes in the copies that arrived since the last look.
    mutating func collect() {
        var arrivals: [Duration] = []
        var latest = lastArrival
        waiting.removeAll { copy in
            guard let arrival = copy.server.firstArrival(ofPDU: copy.id) else { return false }
            arrivals.append(arrival - copy.sentAt)
            latest = max(latest ?? arrival, arrival)
            return true
        }
        latencies += arrivals
        lastArrival = latest
    }

    /// Looks every 20 ms until every copy arrived or `deadline` passed.
    mutating func waitForAll(until deadline: ContinuousClock.Instant) async {
        while true {
            collect()
            guard !waiting.isEmpty, ContinuousClock.now < deadline else { return }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    /// From `start` to the last arrival, when every copy arrived.
    func timeToAll(from start: ContinuousClock.Instant?) -> Duration? {
        guard waiting.isEmpty, let start, let lastArrival else { return nil }
        return lastArrival - start
    }

    /// The latency at `fraction` of every copy owed, or "> bound" when it falls on a missing one.
    func latency(at fraction: Double) -> String {
        percentile(latencies.sorted(), fraction, of: owed).map { format($0) } ?? "> the bound"
    }
}
