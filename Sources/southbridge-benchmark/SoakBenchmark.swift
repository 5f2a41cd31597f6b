import Federation
import Glibc
import NIOPosix
import SouthbridgeDaemon
import SouthbridgeSwarm
import SouthbridgeTestSupport

/// `southbridge-benchmark soak`: the daemon under mixed traffic for `--minutes`, while the
/// servers it sends to fail in changing ways and it is SIGKILLed and restarted twice; at the
/// end every PDU and to-device message it acknowledged must have reached every server it
/// named, and its memory must be where it was after warm-up.
///
/// The real `southbridge` runs pinned to CPU 0 with the default limits and the unit's
/// environment; this process, with the swarm and the ingest clients, runs on CPU 1. Retries
/// are short (`retryInitial` to `retryMax` instead of 10 minutes to 7 days) so that a server
/// that comes back is caught up within the run.
///
/// - Traffic, from `--clients` ingest clients together at `--rate` requests per second: a
///   message in a room of every server, PDUs in small rooms (1 to 4 servers, single
///   destinations among them), to-device messages (stored, delivered at least once) and
///   typing or read receipts (memory only). A request not acknowledged (the daemon was
///   killed, or answered 5xx) is sent again unchanged, as the homeserver module does.
/// - Faults: every `--fault-interval-seconds`, `--faulty-percent` of the servers, drawn anew
///   from `--seed`, are dead (listener closed: connections refused), hanging (the request
///   is read and never answered; its connections close when it recovers, as when such a
///   server is restarted), slow, answering 500, or flapping (listener closed and reopened
///   every few seconds); the others are healthy. The first interval is all healthy.
/// - Restarts: SIGKILL at 1/3 and 2/3 of the run, then a new process on the same state.
/// - The end: traffic stops, every server is healed, and the soak waits (at most
///   `--drain-seconds`) until every acknowledged PDU and to-device message has arrived.
///
/// RSS after warm-up is the daemon's resident memory `--warm-up-seconds` after the last
/// start: a killed process takes its memory with it, so the last process is the one whose
/// growth the end shows. The soak fails (exit 1) when a copy is missing or when RSS at the
/// end is more than 10% above RSS after warm-up.
struct SoakBenchmark {
    var duration: Duration
    var servers: Int
    var rate: Int
    var clients: Int
    var seed: UInt64
    var faultInterval: Duration
    var faultyPercent: Int
    var restarts: Int
    var warmUp: Duration
    var drainBound: Duration
    var flapInterval: Duration = .seconds(3)
    var slowAnswer: Duration = .seconds(2)
    var sampleInterval: Duration = .seconds(2)

    static let retryInitial: Duration = .milliseconds(500)
    static let retryMax: Duration = .milliseconds(5_000)
    /// How much RSS at the end may exceed RSS after warm-up.
    static let rssTolerance = 0.10

    static func fromCommandLine() -> SoakBenchmark {
        var system = SystemRandomNumberGenerator()
        let seed = optionalOption("--seed").map { UInt64(truncatingIfNeeded: $0) } ?? system.next() % 1_000_000_000
        let seconds = optionalOption("--seconds") ?? 60 * option("--minutes", default: 10)
        return SoakBenchmark(
            duration: .seconds(seconds),
            servers: option("--servers", default: 300),
            rate: option("--rate", default: 2),
            clients: option("--clients", default: 3),
            seed: seed,
            faultInterval: .seconds(option("--fault-interval-seconds", default: 45)),
            faultyPercent: option("--faulty-percent", default: 30),
            restarts: option("--restarts", default: 2),
            warmUp: .seconds(option("--warm-up-seconds", default: 60)),
            drainBound: .seconds(option("--drain-seconds", default: 180)))
    }

    func run() async throws {
        guard servers >= 10, rate >= 1, clients >= 1, faultyPercent >= 0, faultyPercent <= 100, restarts >= 0,
              duration >= .seconds(10), faultInterval >= .seconds(1) else {
            throw BenchmarkError("soak: needs --servers ≥ 10, --rate ≥ 1, --clients ≥ 1, --faulty-percent 0–100, --restarts ≥ 0, "
                                 + "a run of 10 s or more and --fault-interval-seconds ≥ 1")
        }
        let fileLimit = try OpenFileLimit.raiseToHardLimit()
        try CPUAffinity.pinThisProcess(to: [1])
        let fixture = try await DaemonProcess(destinations: 0) { configuration in
            configuration.log.level = "warning"
            configuration.sender.retryInitialInterval = Self.retryInitial
            configuration.sender.retryMaxInterval = Self.retryMax
        }
        let clientGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var swarm: [SwarmServer] = []
        func tearDown() async {
            for server in swarm { await server.stop() }
            await fixture.tearDown()
            try? await clientGroup.shutdownGracefully()
        }
        let verdict: Verdict
        do {
            swarm = try await startSwarm(fixture)
            verdict = try await soak(fixture: fixture, swarm: swarm, clientGroup: clientGroup, fileLimit: fileLimit)
        } catch {
            await tearDown()
            throw error
        }
        if !verdict.failures.isEmpty { await keepState(of: fixture) }
        await tearDown()
        guard verdict.failures.isEmpty else { throw BenchmarkError("soak failed: " + verdict.failures.joined(separator: "; ")) }
    }

    /// `servers` fake homeservers trusting the fixture's key, on ports below Linux's ephemeral
    /// range (32768 and up): a dead server's port stays closed for a while, and in that range
    /// one of the daemon's own connections could take it and keep the server from coming back.
    private func startSwarm(_ fixture: DaemonProcess) async throws -> [SwarmServer] {
        var swarm: [SwarmServer] = []
        var portsTaken = 0
        while swarm.count < servers {
            do {
                swarm.append(try await SwarmServer.start(
                    port: Int.random(in: 20_000..<32_000), certificateAuthority: fixture.swarm.certificateAuthority,
                    trustedOrigins: [DaemonProcess.serverName: fixture.key.verifyKey], group: fixture.group))
            } catch {
                portsTaken += 1
                guard portsTaken < 1_000 else { throw BenchmarkError("soak: no free port for the swarm: \(error)") }
            }
        }
        return swarm
    }

    struct Verdict {
        var failures: [String]
    }

    /// One daemon process's life: from its start to its SIGKILL, or to the end of the soak.
    struct ProcessLife {
        var pid: pid_t
        var started: ContinuousClock.Instant
        var readyAfter: Duration
        /// RSS, and the connections open to remote servers, every `sampleInterval`.
        var samples: [(at: ContinuousClock.Instant, kib: Int, connections: Int)] = []
        var cpuSeconds = 0.0
        var peakKiB = 0
    }

    private func soak(fixture: DaemonProcess, swarm: [SwarmServer], clientGroup: MultiThreadedEventLoopGroup,
                      fileLimit: Int) async throws -> Verdict {
        var random = SeededRandom(seed: seed)
        let traffic = SoakTraffic(serverNames: swarm.map(\.serverName), random: &random,
                                  requestInterval: .seconds(clients) / rate)
        let faults = SoakFaults(servers: swarm, slowAnswer: slowAnswer)

        func startDaemon() async throws -> ProcessLife {
            let starting = ContinuousClock.now
            try await fixture.start(environment: RoomBenchmark.unitEnvironment, cpus: [0])
            guard let process = fixture.process else { throw BenchmarkError("soak: the daemon did not start") }
            return ProcessLife(pid: process.pid, started: starting, readyAfter: .now - starting)
        }
        var lives = [try await startDaemon()]
        func sample() async {
            guard let pid = fixture.process?.pid else { return }
            let kib = ProcessMemory.currentKiB(pid: pid)
            let connections = (try? await fixture.metrics()).flatMap { Self.parseMetrics($0)["southbridge_connections_open"] } ?? -1
            lives[lives.count - 1].samples.append((.now, kib, connections))
        }
        func closeLife() {
            guard let pid = fixture.process?.pid else { return }
            lives[lives.count - 1].cpuSeconds = cpuSeconds(pid: pid)
            lives[lives.count - 1].peakKiB = ProcessMemory.peakKiB(pid: pid)
        }

        let started = ContinuousClock.now
        func at(_ instant: ContinuousClock.Instant) -> String { minutesAndSeconds(instant - started) }
        print("soak: seed \(seed), \(servers) servers, \(minutesAndSeconds(duration)); daemon pid \(lives[0].pid) ready")
        let stopSwitch = SoakSwitch()
        let ingestClients = (0..<clients).map { index in
            Task {
                await SoakIngestClient(index: index, traffic: traffic, socketPath: fixture.ingestSocketPath,
                                       token: fixture.token, group: clientGroup, seed: seed).run(until: stopSwitch)
            }
        }

        let end = started + duration
        let restartTimes = (0..<restarts).map { started + duration * ($0 + 1) / (restarts + 1) }
        var nextRestart = 0
        var nextChange = started + faultInterval
        var nextFlap = started + flapInterval
        var nextSample = started
        var changes: [[SoakFault: Int]] = []
        while ContinuousClock.now < end {
            let now = ContinuousClock.now
            if now >= nextSample {
                await sample()
                nextSample += sampleInterval
            }
            if nextRestart < restartTimes.count, now >= restartTimes[nextRestart] {
                closeLife()
                let killed = lives[lives.count - 1].pid
                await fixture.process?.terminate()
                nextRestart += 1
                lives.append(try await startDaemon())
                print("  \(at(now)): SIGKILL pid \(killed), pid \(lives[lives.count - 1].pid) ready on the same state after "
                      + format(lives[lives.count - 1].readyAfter))
            }
            if now >= nextChange {
                let plan = SoakFaults.draw(servers: servers, faultyPercent: faultyPercent, random: &random)
                await faults.apply(plan)
                let counts = Dictionary(plan.map { ($0, 1) }, uniquingKeysWith: +)
                changes.append(counts)
                print("  \(at(now)): faults now " + SoakFault.allCases.map { "\(counts[$0] ?? 0) \($0.rawValue)" }.joined(separator: ", "))
                nextChange += faultInterval
            }
            if now >= nextFlap {
                await faults.flap()
                nextFlap += flapInterval
            }
            let upcoming = [nextSample, nextChange, nextFlap, end] + restartTimes.dropFirst(nextRestart)
            try await Task.sleep(until: upcoming.min()!)
        }

        await stopSwitch.stop()
        var ledger = SoakLedger()
        for client in ingestClients { ledger.add(await client.value) }
        let healed = ContinuousClock.now
        await faults.healAll()
        print("  \(at(healed)): traffic stopped, every server healed\(faults.notListening.isEmpty ? "" : " but \(faults.notListening.count) that could not listen again")")

        let expected = SoakExpectation(ledger: ledger, servers: servers, live: faults.listeningIndices)
        var accounting = expected.account(swarm)
        let drainDeadline = healed + drainBound
        while !accounting.complete, ContinuousClock.now < drainDeadline {
            if ContinuousClock.now >= nextSample {
                await sample()
                nextSample += sampleInterval
            }
            try await Task.sleep(for: .milliseconds(500))
            accounting = expected.account(swarm)
        }
        let drained = ContinuousClock.now
        await sample()
        closeLife()
        let metrics = (try? await fixture.metrics()).map(Self.parseMetrics) ?? [:]

        return report(lives: lives, ledger: ledger, accounting: accounting, changes: changes, started: started, healed: healed,
                      drained: drained, metrics: metrics, fileLimit: fileLimit,
                      configuration: fixture.configuration, notListening: faults.notListening.count)
    }

    private static func parseMetrics(_ text: String) -> [String: Int] {
        var values: [String: Int] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let fields = line.split(separator: " ")
            if fields.count == 2, let value = Int(fields[1]) { values[String(fields[0])] = value }
        }
        return values
    }

    private func report(lives: [ProcessLife], ledger: SoakLedger, accounting: SoakAccounting, changes: [[SoakFault: Int]],
                        started: ContinuousClock.Instant, healed: ContinuousClock.Instant, drained: ContinuousClock.Instant,
                        metrics: [String: Int], fileLimit: Int, configuration: Configuration, notListening: Int) -> Verdict {
        let limits = configuration.limits
        let defaults = Configuration.withDefaults(serverName: DaemonProcess.serverName).limits
        let limitsNote = limits == defaults ? "the daemon's defaults" : "NOT the defaults"
        let changeTotals = SoakFault.allCases.dropFirst().map { fault in
            "\(changes.reduce(0) { $0 + ($1[fault] ?? 0) }) \(fault.rawValue)"
        }.joined(separator: ", ")
        let mostOwed = ledger.mostPDUsForOneServer(servers: servers)
        print("""

            ### soak: \(servers) servers, \(minutesAndSeconds(duration)), seed \(seed)

            The real daemon pinned to CPU \(CPUAffinity.allowedCPULists(pid: lives.last!.pid).sorted().joined(separator: " / ")), \
            this process (swarm and ingest clients) on CPU \(CPUAffinity.allowedCPULists().sorted().joined(separator: " / ")); \
            limits \(limitsNote) (max_connections \(limits.maxConnections), max_tls_handshakes \(limits.maxTLSHandshakes), \
            max_new_connections_per_second \(limits.maxNewConnectionsPerSecond), max_pdus_in_memory_per_destination \
            \(limits.maxPDUsInMemoryPerDestination)); sender.retry_initial_ms \(milliseconds(Self.retryInitial)) and \
            retry_max_ms \(milliseconds(Self.retryMax)) (shipped: 10 minutes and 7 days) so that a server that comes back \
            is caught up within the run; environment as the unit sets it (\(RoomBenchmark.unitEnvironmentDescription)); \
            RLIMIT_NOFILE \(fileLimit).
            Traffic: \(clients) ingest clients, \(rate) requests/s together: 25% a message in the room of all \(servers) servers, \
            35% 1–3 PDUs in small rooms (\(SoakTraffic.smallRoomCount) rooms of 1–4 servers), 20% 1–2 to-device messages, \
            20% typing or a read receipt; at most \(mostOwed) PDUs were addressed to one server in the whole run \
            (a restart that finds more than max_pdus_in_memory_per_destination owed catches up with the newest per room).
            Faults: every \(wholeSeconds(faultInterval)) after the first, \(faultyPercent)% of the servers drawn anew from the seed: \
            dead (listener closed: refused), hanging (request read, never answered), slow (\(wholeSeconds(slowAnswer)) per answer), \
            500-ing, flapping (listener closed and reopened every \(wholeSeconds(flapInterval))); \(changes.count) changes, \
            server-intervals: \(changeTotals).

            | figure | value |
            | --- | --- |
            """)
        let restartTimes = lives.dropFirst().map { "\(minutesAndSeconds($0.started - started)) (READY after \(format($0.readyAfter)))" }
        print("| SIGKILL restarts | \(lives.count - 1)\(restartTimes.isEmpty ? "" : ": " + restartTimes.joined(separator: ", ")) |")
        print("| ingest requests acknowledged | \(ledger.requests), \(ledger.resent) sends again after a lost connection or a 5xx, "
              + "\(ledger.abandoned) given up, \(ledger.refused) refused (4xx)\(ledger.firstRefusal.map { ": \($0)" } ?? "") |")
        let acks = ledger.acknowledgementTimes.sorted()
        func ack(_ fraction: Double) -> String { percentile(acks, fraction, of: acks.count).map(format) ?? "–" }
        print("| ingest acknowledgement (retries and restarts included) | p50 \(ack(0.5)), p99 \(ack(0.99)), max \(ack(1)) |")
        print("| PDUs accepted | \(ledger.pdus.count), \(accounting.pduCopiesOwed) copies owed to servers live at the end |")
        print("| PDU copies delivered | \(accounting.pduCopiesDelivered), duplicates \(accounting.pduDuplicates), "
              + "lost \(accounting.pduCopiesMissing)\(accounting.unexpectedPDUs > 0 ? ", \(accounting.unexpectedPDUs) arrived unacknowledged" : "") |")
        print("| to-device messages accepted | \(ledger.toDevice.count) (each to one server) |")
        print("| to-device delivered | \(accounting.toDeviceDelivered), duplicates \(accounting.toDeviceDuplicates), "
              + "lost \(accounting.toDeviceMissing) |")
        print("| typing and receipt EDUs accepted | \(ledger.ephemeralEDUs) (\(ledger.ephemeralCopies) copies); "
              + "\(accounting.ephemeralArrived) copies arrived (memory only: collapsed, expired or lost with a killed process by design) |")
        print("| servers not live at the end | \(notListening) |")
        print("| drain | \(accounting.complete ? "everything arrived \(format(drained - healed)) after healing" : "NOT complete after \(format(drained - healed))") |")
        print("| last process at the end | destinations in backoff \(metrics["southbridge_destinations_in_backoff"] ?? -1), "
              + "catching up \(metrics["southbridge_destinations_catching_up"] ?? -1), PDUs dropped by the outbox "
              + "\(metrics["southbridge_outbox_pdus_dropped_total"] ?? -1), transactions sent \(metrics["southbridge_transactions_sent_total"] ?? -1), "
              + "failed \(metrics["southbridge_transactions_failed_total"] ?? -1), peak open connections \(metrics["southbridge_connections_peak_open"] ?? -1) |")
        let cpu = lives.reduce(0) { $0 + $1.cpuSeconds }
        let wall = drained - started
        print("| daemon CPU | \(rounded(cpu)) s in \(format(wall)) (\(rounded(100 * cpu / seconds(wall)))% of one core); "
              + "per process \(lives.map { "\(rounded($0.cpuSeconds)) s" }.joined(separator: ", ")) |")

        print("""

            | process | warm-up (first \(wholeSeconds(warmUp))) min–max | RSS after warm-up | after warm-up min–max | drain min–max | at its end | peak (VmHWM) |
            | --- | ---: | ---: | ---: | ---: | ---: | ---: |
            """)
        for (number, life) in lives.enumerated() {
            let warming = life.samples.filter { $0.at - life.started < warmUp }.map(\.kib)
            let afterWarmUp = life.samples.filter { $0.at - life.started >= warmUp && $0.at < healed }.map(\.kib)
            let draining = life.samples.filter { $0.at >= healed }.map(\.kib)
            let reference = life.samples.first { $0.at - life.started >= warmUp }?.kib
            print("| \(number + 1) (pid \(life.pid)) | \(range(warming)) | \(reference.map(mib) ?? "–") | \(range(afterWarmUp)) | "
                  + "\(range(draining)) | \(life.samples.last.map { mib($0.kib) } ?? "–") | \(mib(life.peakKiB)) |")
        }

        print("\nRSS / connections open, every 30 s of each process:")
        for (number, life) in lives.enumerated() {
            var nextMark = life.started
            var marks: [String] = []
            for sample in life.samples where sample.at >= nextMark {
                marks.append("\(minutesAndSeconds(sample.at - started)) \(mib(sample.kib))/\(sample.connections)")
                nextMark = sample.at + .seconds(30)
            }
            print("  \(number + 1): " + marks.joined(separator: ", "))
        }

        var failures: [String] = []
        if accounting.pduCopiesMissing > 0 {
            failures.append("\(accounting.pduCopiesMissing) PDU copies lost (\(accounting.missingExamples.joined(separator: ", ")))")
        }
        if accounting.toDeviceMissing > 0 { failures.append("\(accounting.toDeviceMissing) to-device copies lost") }
        if ledger.refused > 0 { failures.append("\(ledger.refused) ingest requests refused") }
        let last = lives[lives.count - 1]
        if let reference = last.samples.first(where: { $0.at - last.started >= warmUp }), let end = last.samples.last {
            let growth = Double(end.kib - reference.kib) / Double(reference.kib)
            print("\nRSS at the end \(mib(end.kib)) (\(end.connections) connections open) against \(mib(reference.kib)) "
                  + "(\(reference.connections) open) \(wholeSeconds(warmUp)) after the last start: "
                  + "\(growth >= 0 ? "+" : "")\(rounded(growth * 100))% (at most +\(Int(Self.rssTolerance * 100))%)")
            if growth > Self.rssTolerance { failures.append("RSS grew \(rounded(growth * 100))% after warm-up") }
        } else {
            print("\nRSS not judged: the last process did not live \(wholeSeconds(warmUp)) (a longer run or a shorter --warm-up-seconds)")
        }
        print(failures.isEmpty ? "soak passed: 0 lost, memory flat" : "soak FAILED: " + failures.joined(separator: "; "))
        return Verdict(failures: failures)
    }

    /// Copies the daemon's state directory (outbox, logs) where it survives the teardown.
    private func keepState(of fixture: DaemonProcess) async {
        let target = "/tmp/southbridge-soak-\(seed)-\(getpid())"
        guard let copy = try? ChildProcess(executable: "cp", arguments: ["-a", fixture.directory.path, target],
                                           logPath: "/dev/null") else { return }
        if await copy.waitForExit(timeout: .seconds(60)) == 0 { print("the daemon's state and logs: \(target)") }
    }

    private func range(_ values: [Int]) -> String {
        guard let low = values.min(), let high = values.max() else { return "–" }
        return "\(mib(low))–\(mib(high))"
    }
}

/// The ways a server of the soak can be, one of them at a time.
enum SoakFault: String, CaseIterable, Sendable {
    case healthy
    case dead
    case hanging
    case slow
    case failing = "500-ing"
    case flapping
}

/// The swarm's servers and the fault each has now; only the soak's timeline changes them.
final class SoakFaults {
    let servers: [SwarmServer]
    let slowAnswer: Duration
    private(set) var faults: [SoakFault]
    private var listening: [Bool]

    init(servers: [SwarmServer], slowAnswer: Duration) {
        self.servers = servers
        self.slowAnswer = slowAnswer
        faults = Array(repeating: .healthy, count: servers.count)
        listening = Array(repeating: true, count: servers.count)
    }

    /// `faultyPercent` of the servers, at random, each with a fault at random; the rest healthy.
    static func draw(servers: Int, faultyPercent: Int, random: inout SeededRandom) -> [SoakFault] {
        var plan = Array(repeating: SoakFault.healthy, count: servers)
        let faulty = SoakFault.allCases.dropFirst()
        for index in Array(0..<servers).shuffled(using: &random).prefix(servers * faultyPercent / 100) {
            plan[index] = faulty.randomElement(using: &random)!
        }
        return plan
    }

    func apply(_ plan: [SoakFault]) async {
        for index in servers.indices { await set(index, plan[index]) }
    }

    /// Flapping servers that are up go down, and those down come up.
    func flap() async {
        for index in servers.indices where faults[index] == .flapping { await listen(index, !listening[index]) }
    }

    /// Every server healthy and listening; a listener that cannot bind its port again gets
    /// a few more tries.
    func healAll() async {
        await apply(Array(repeating: .healthy, count: servers.count))
        for _ in 0..<20 where !notListening.isEmpty {
            try? await Task.sleep(for: .milliseconds(200))
            for index in notListening { await listen(index, true) }
        }
    }

    var notListening: [Int] { servers.indices.filter { !listening[$0] } }
    var listeningIndices: [Int] { servers.indices.filter { listening[$0] } }

    private func set(_ index: Int, _ fault: SoakFault) async {
        // A hung server that recovers was restarted: the requests it sat on end with their connections.
        if faults[index] == .hanging, fault != .hanging { await listen(index, false) }
        faults[index] = fault
        switch fault {
        case .hanging: servers[index].setBehaviour(.stall)
        case .slow:
            let (seconds, attoseconds) = slowAnswer.components
            servers[index].setBehaviour(.slow(milliseconds: seconds * 1000 + attoseconds / 1_000_000_000_000_000))
        case .failing: servers[index].setBehaviour(.fail(status: 500))
        case .healthy, .dead, .flapping: servers[index].setBehaviour(.accept)
        }
        // A flapping server starts up; `flap()` takes it down next.
        await listen(index, fault != .dead)
    }

    private func listen(_ index: Int, _ up: Bool) async {
        guard listening[index] != up else { return }
        if up {
            // The port may be taken meanwhile; the next change or flap tries again.
            guard (try? await servers[index].resume()) != nil else { return }
        } else {
            await servers[index].stop()
        }
        listening[index] = up
    }
}

/// What the soak sends: the rooms and who is in them, and how one request is drawn.
struct SoakTraffic: Sendable {
    static let smallRoomCount = 50
    static let bigRoom = "!soak-all:\(DaemonProcess.serverName)"
    static let sender = "@alice:\(DaemonProcess.serverName)"

    var serverNames: [String]
    /// The servers (by index) of each small room.
    var smallRooms: [[Int]]
    /// Between two requests of one client.
    var requestInterval: Duration

    init(serverNames: [String], random: inout SeededRandom, requestInterval: Duration) {
        self.serverNames = serverNames
        self.requestInterval = requestInterval
        smallRooms = (0..<Self.smallRoomCount).map { _ in
            Array(Array(serverNames.indices).shuffled(using: &random).prefix(Int.random(in: 1...4, using: &random)))
        }
    }

    /// One ingest request and what it carries, numbered from `number` (PDUs) and named by
    /// `tag` (to-device message ids).
    struct Request: Sendable {
        var body: [UInt8]
        var pdus: [SoakLedger.PDU] = []
        var toDevice: [SoakLedger.ToDevice] = []
        var ephemeralEDUs = 0
        var ephemeralCopies = 0
    }

    func request(numbers: inout Int, tag: String, random: inout SeededRandom) -> Request {
        var request = Request(body: [])
        var pdus: [JSONValue] = []
        var edus: [JSONValue] = []
        func addPDU(room: String, destinations: [Int]) {
            let number = numbers
            numbers += 1
            pdus.append(.object([
                "pdu": .object([
                    "type": .string("m.room.message"),
                    "room_id": .string(room),
                    "sender": .string(Self.sender),
                    "origin_server_ts": .integer(1_700_000_000_000 + Int64(number)),
                    "depth": .integer(Int64(number + 1)),
                    "content": .object(["body": .string("soak \(number)"), "n": .integer(Int64(number))]),
                ]),
                "destinations": .array(destinations.map { .string(serverNames[$0]) }),
            ]))
            request.pdus.append(SoakLedger.PDU(number: number, destinations: destinations))
        }
        func addEDU(_ type: String, _ content: JSONValue, destinations: [Int]) {
            edus.append(.object(["edu_type": .string(type), "content": content,
                                 "destinations": .array(destinations.map { .string(serverNames[$0]) })]))
        }
        let everyone = Array(serverNames.indices)
        switch Int.random(in: 0..<100, using: &random) {
        case ..<25:
            addPDU(room: Self.bigRoom, destinations: everyone)
        case ..<60:
            for _ in 0..<Int.random(in: 1...3, using: &random) {
                let room = Int.random(in: 0..<smallRooms.count, using: &random)
                addPDU(room: "!soak-small-\(room):\(DaemonProcess.serverName)", destinations: smallRooms[room])
            }
        case ..<80:
            for part in 0..<Int.random(in: 1...2, using: &random) {
                let destination = Int.random(in: 0..<serverNames.count, using: &random)
                let messageID = "\(tag)-\(part)"
                addEDU("m.direct_to_device", .object([
                    "sender": .string(Self.sender), "type": .string("m.room.encrypted"), "message_id": .string(messageID),
                    "messages": .object(["@bob:\(serverNames[destination])": .object(["DEVICE": .object(["n": .string(messageID)])])]),
                ]), destinations: [destination])
                request.toDevice.append(SoakLedger.ToDevice(messageID: messageID, destination: destination))
            }
        default:
            if Bool.random(using: &random) {
                addEDU("m.typing", .object(["room_id": .string(Self.bigRoom), "user_id": .string(Self.sender),
                                            "typing": .bool(Bool.random(using: &random))]), destinations: everyone)
                request.ephemeralCopies += everyone.count
            } else {
                let room = Int.random(in: 0..<smallRooms.count, using: &random)
                let roomID = "!soak-small-\(room):\(DaemonProcess.serverName)"
                addEDU("m.receipt", .object([roomID: .object(["m.read": .object([Self.sender: .object([
                    "event_ids": .array([.string("$\(tag)")]), "data": .object(["ts": .integer(1_700_000_000_000)]),
                ])])])]), destinations: smallRooms[room])
                request.ephemeralCopies += smallRooms[room].count
            }
            request.ephemeralEDUs += 1
        }
        request.body = CanonicalJSON.encode(.object(["pdus": .array(pdus), "edus": .array(edus)]))
        return request
    }
}

/// What ingest acknowledged (answered 200), and how the requests went.
struct SoakLedger: Sendable {
    struct PDU: Sendable {
        var number: Int
        var destinations: [Int]
    }

    struct ToDevice: Sendable {
        var messageID: String
        var destination: Int
    }

    var pdus: [PDU] = []
    var toDevice: [ToDevice] = []
    var ephemeralEDUs = 0
    var ephemeralCopies = 0
    var requests = 0
    var resent = 0
    var abandoned = 0
    var refused = 0
    var firstRefusal: String?
    var acknowledgementTimes: [Duration] = []

    mutating func record(_ request: SoakTraffic.Request, acknowledgedAfter time: Duration) {
        pdus += request.pdus
        toDevice += request.toDevice
        ephemeralEDUs += request.ephemeralEDUs
        ephemeralCopies += request.ephemeralCopies
        requests += 1
        acknowledgementTimes.append(time)
    }

    mutating func add(_ other: SoakLedger) {
        pdus += other.pdus
        toDevice += other.toDevice
        ephemeralEDUs += other.ephemeralEDUs
        ephemeralCopies += other.ephemeralCopies
        requests += other.requests
        resent += other.resent
        abandoned += other.abandoned
        refused += other.refused
        firstRefusal = firstRefusal ?? other.firstRefusal
        acknowledgementTimes += other.acknowledgementTimes
    }

    func mostPDUsForOneServer(servers: Int) -> Int {
        var counts = Array(repeating: 0, count: servers)
        for pdu in pdus { for destination in pdu.destinations { counts[destination] += 1 } }
        return counts.max() ?? 0
    }
}

/// Stops the ingest clients between two requests.
actor SoakSwitch {
    private(set) var stopped = false
    func stop() { stopped = true }
}

/// One homeserver-side ingest client: a request every `traffic.requestInterval`, each sent
/// again unchanged (same txnId) until acknowledged, over a connection opened again after
/// the daemon was killed.
struct SoakIngestClient {
    var index: Int
    var traffic: SoakTraffic
    var socketPath: String
    var token: String
    var group: MultiThreadedEventLoopGroup
    var seed: UInt64
    /// How long one request is sent again before the client gives up on it.
    var giveUpAfter: Duration = .seconds(60)

    func run(until stopSwitch: SoakSwitch) async -> SoakLedger {
        var random = SeededRandom(seed: seed &+ 0x9E37_79B9 &* UInt64(index + 1))
        var ledger = SoakLedger()
        var connection: IngestClient?
        var numbers = index * 100_000_000
        var sequence = 0
        var next = ContinuousClock.now
        while await !stopSwitch.stopped {
            sequence += 1
            let txnID = "soak-\(index)-\(sequence)"
            let request = traffic.request(numbers: &numbers, tag: txnID, random: &random)
            let firstSent = ContinuousClock.now
            while true {
                if connection == nil {
                    connection = try? await IngestClient.connect(unixPath: socketPath, token: token, group: group)
                }
                if let client = connection {
                    do {
                        let response = try await client.send(txnID: txnID, body: request.body)
                        if response.status == 200 {
                            ledger.record(request, acknowledgedAfter: .now - firstSent)
                            break
                        }
                        if response.status < 500 {
                            ledger.refused += 1
                            ledger.firstRefusal = ledger.firstRefusal
                                ?? "\(response.status) \(String(decoding: response.body, as: UTF8.self))"
                            break
                        }
                    } catch {
                        await client.close()
                        connection = nil
                    }
                }
                guard ContinuousClock.now - firstSent < giveUpAfter else {
                    ledger.abandoned += 1
                    break
                }
                ledger.resent += 1
                try? await Task.sleep(for: .milliseconds(100))
            }
            next = max(next + traffic.requestInterval, .now)
            try? await Task.sleep(until: next)
        }
        await connection?.close()
        return ledger
    }
}

/// What each live server must have received by the end.
struct SoakExpectation {
    var pdus: [Set<String>]
    var toDevice: [Set<String>]
    var live: [Int]

    init(ledger: SoakLedger, servers: Int, live: [Int]) {
        pdus = Array(repeating: [], count: servers)
        toDevice = Array(repeating: [], count: servers)
        for pdu in ledger.pdus { for destination in pdu.destinations { pdus[destination].insert("\(pdu.number)") } }
        for message in ledger.toDevice { toDevice[message.destination].insert(message.messageID) }
        self.live = live
    }

    func account(_ servers: [SwarmServer]) -> SoakAccounting {
        var result = SoakAccounting()
        for index in live {
            let log = servers[index].log()
            let expected = pdus[index]
            var arrived: [String: Int] = [:]
            for id in log.pduIDs { arrived[id, default: 0] += 1 }
            result.pduCopiesOwed += expected.count
            for id in expected {
                if let count = arrived[id] {
                    result.pduCopiesDelivered += 1
                    result.pduDuplicates += count - 1
                } else {
                    result.pduCopiesMissing += 1
                    if result.missingExamples.count < 5 { result.missingExamples.append("PDU \(id) at \(servers[index].serverName)") }
                }
            }
            result.unexpectedPDUs += arrived.keys.filter { !expected.contains($0) }.count

            var messages: [String: Int] = [:]
            for edu in log.edus {
                switch edu["edu_type"]?.stringValue {
                case "m.direct_to_device":
                    if let id = edu["content"]?["message_id"]?.stringValue { messages[id, default: 0] += 1 }
                case "m.typing", "m.receipt":
                    result.ephemeralArrived += 1
                default:
                    break
                }
            }
            for id in toDevice[index] {
                if let count = messages[id] {
                    result.toDeviceDelivered += 1
                    result.toDeviceDuplicates += count - 1
                } else {
                    result.toDeviceMissing += 1
                }
            }
        }
        return result
    }
}

struct SoakAccounting {
    var pduCopiesOwed = 0
    var pduCopiesDelivered = 0
    var pduDuplicates = 0
    var pduCopiesMissing = 0
    var unexpectedPDUs = 0
    var missingExamples: [String] = []
    var toDeviceDelivered = 0
    var toDeviceDuplicates = 0
    var toDeviceMissing = 0
    var ephemeralArrived = 0

    var complete: Bool { pduCopiesMissing == 0 && toDeviceMissing == 0 }
}

/// SplitMix64: the same seed draws the same rooms, faults and traffic.
struct SeededRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
}

private func minutesAndSeconds(_ duration: Duration) -> String {
    let total = Int(duration.components.seconds)
    let seconds = total % 60
    return "\(total / 60):\(seconds < 10 ? "0" : "")\(seconds)"
}

private func wholeSeconds(_ duration: Duration) -> String {
    "\(duration.components.seconds) s"
}

private func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

private func milliseconds(_ duration: Duration) -> Int {
    Int(seconds(duration) * 1000)
}

private func rounded(_ value: Double) -> Double {
    (value * 10).rounded() / 10
}

private func mib(_ kibibytes: Int) -> String {
    "\(rounded(Double(kibibytes) / 1024)) MiB"
}
