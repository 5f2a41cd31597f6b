import Federation
import Glibc
import NIOPosix
import SouthbridgeDaemon
import SouthbridgeSwarm
import SouthbridgeTestSupport

/// `southbridge-benchmark room`: one room shared with `--servers` homeservers, as GitHub
/// issue #11 asks to measure it. The daemon runs pinned to CPU 0 with the connection limits
/// in force (its defaults unless an option or `--lifted` says otherwise); this process, with
/// the swarm and the ingest clients, runs on CPU 1.
///
/// Some of the servers are faulty (`--blackholed-percent`: every SYN dropped;
/// `--silent-percent`: TCP accepted, then never a word; `--refusing-percent`): every
/// message still names them, as a room names servers that went away. The rest are live
/// `SwarmServer`s. Retries use the daemon's shipped 10-minute-to-7-day backoff, so a faulty
/// destination is tried once and then waits, and a live one in backoff is a failure.
///
/// In order: RSS before any traffic; a cold message (one PDU to every server, each live one
/// met for the first time); RSS once the connections it left are idle; `--messages` warm
/// messages one after the other, each sent once every live server has the previous one;
/// the same again while a second ingest client sends a one-PDU request to one more live
/// server every 5 ms and times each acknowledgement; then the live destinations in backoff and the copies
/// that never arrived. A message's time to a server runs from just before its ingest
/// request to the moment that server had read the whole `/send` carrying it.
///
/// Everything after the daemon is ready shares one bound (`--bound-seconds`, 300 s by
/// default), of which the cold message may take half: a message still incomplete at its
/// bound is reported as timed out (a percentile that falls on a copy still missing reads
/// "> the time waited"), and no warm message follows a timed-out warm one.
struct RoomBenchmark {
    var servers: Int
    var blackholedPercent: Int
    var silentPercent: Int
    var refusingPercent: Int
    var messages: Int
    var maxConnections: Int?
    var maxTLSHandshakes: Int?
    var newConnectionsPerSecond: Int?
    var bound: Duration
    var probeInterval: Duration = .milliseconds(5)

    /// What `packaging/southbridge.service` sets in the daemon's environment (`Environment=`),
    /// so the figures are those of the installed service: nothing today (the daemon chooses its
    /// malloc arenas itself).
    static let unitEnvironment: [String: String] = [:]

    /// `unitEnvironment` for a report.
    static var unitEnvironmentDescription: String {
        unitEnvironment.isEmpty ? "none set" : unitEnvironment.map { "\($0.key)=\($0.value)" }.sorted().joined(separator: " ")
    }

    /// The options of the command line; `--lifted` stands for limits high enough that they
    /// never bind, and an explicit limit option wins over it.
    static func fromCommandLine() -> RoomBenchmark {
        let lifted = CommandLine.arguments.contains("--lifted")
        func limit(_ name: String, lifted value: Int) -> Int? {
            optionalOption(name) ?? (lifted ? value : nil)
        }
        return RoomBenchmark(
            servers: option("--servers", default: 500),
            blackholedPercent: option("--blackholed-percent", default: 20),
            silentPercent: option("--silent-percent", default: 0),
            refusingPercent: option("--refusing-percent", default: 10),
            messages: option("--messages", default: 5),
            maxConnections: limit("--max-connections", lifted: 1024),
            maxTLSHandshakes: limit("--max-tls-handshakes", lifted: 64),
            newConnectionsPerSecond: limit("--new-connections-per-second", lifted: 10_000),
            bound: .seconds(option("--bound-seconds", default: 300)))
    }

    /// One message's delivery to the live servers.
    struct MessageResult {
        var label: String
        var ingestAck: Duration
        /// Time to each live server that had it by the bound, shortest first.
        var times: [Duration]
        var liveServers: Int
        var timeWaited: Duration
        var daemonCPU: Double
        var acceptedConnections: Int
        var handshakes: Int

        var complete: Bool { times.count == liveServers }
    }

    /// The daemon's counters that a message moves.
    struct Counters {
        var cpu: Double
        var handshakes: Int
        var accepted: Int
    }

    func run() async throws {
        let fileLimit = try OpenFileLimit.raiseToHardLimit()
        try CPUAffinity.pinThisProcess(to: [1])
        let blackholedCount = servers * blackholedPercent / 100
        let silentCount = servers * silentPercent / 100
        let refusingCount = servers * refusingPercent / 100
        let liveCount = servers - blackholedCount - silentCount - refusingCount
        guard liveCount > 0 else { throw BenchmarkError("room: no live servers left among \(servers)") }

        // One more live server than the room has: the target of the acknowledgement probe,
        // so its PDUs do not mix with the room's.
        let fixture = try await DaemonProcess(destinations: liveCount + 1) { configuration in
            configuration.log.level = "warning"
            configuration.sender.retryInitialInterval = .milliseconds(600_000)
            configuration.sender.retryMaxInterval = .milliseconds(604_800_000)
            if let maxConnections { configuration.limits.maxConnections = maxConnections }
            if let maxTLSHandshakes { configuration.limits.maxTLSHandshakes = maxTLSHandshakes }
            if let newConnectionsPerSecond { configuration.limits.maxNewConnectionsPerSecond = newConnectionsPerSecond }
        }
        var faulty: [FaultyServer] = []
        let probeGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            // Refusing ports come last, so no listener started after them can be given one.
            for _ in 0..<blackholedCount { faulty.append(try FaultyServer.start(.blackholed)) }
            for _ in 0..<silentCount { faulty.append(try FaultyServer.start(.silent)) }
            for _ in 0..<refusingCount { faulty.append(try FaultyServer.start(.refusing)) }
            // The environment the shipped systemd unit gives the daemon.
            try await fixture.start(environment: Self.unitEnvironment, cpus: [0])
            try await measure(fixture: fixture, faulty: faulty, liveCount: liveCount, fileLimit: fileLimit, probeGroup: probeGroup)
        } catch {
            await tearDown(fixture: fixture, faulty: faulty, probeGroup: probeGroup)
            throw error
        }
        await tearDown(fixture: fixture, faulty: faulty, probeGroup: probeGroup)
    }

    private func tearDown(fixture: DaemonProcess, faulty: [FaultyServer], probeGroup: MultiThreadedEventLoopGroup) async {
        await fixture.tearDown()
        for server in faulty { server.stop() }
        try? await probeGroup.shutdownGracefully()
    }

    private func measure(fixture: DaemonProcess, faulty: [FaultyServer], liveCount: Int, fileLimit: Int,
                         probeGroup: MultiThreadedEventLoopGroup) async throws {
        guard let daemon = fixture.process else { return }
        let room = Array(fixture.swarm.servers.prefix(liveCount))
        let probeServer = fixture.swarm.servers[liveCount]
        let roomNames = room.map(\.serverName) + faulty.map(\.serverName)
        let client = try await fixture.client()
        let deadline = ContinuousClock.now + bound
        let rssBefore = ProcessMemory.currentKiB(pid: daemon.pid)

        func counters() async throws -> Counters {
            let metrics = try await Metrics.read(client)
            return Counters(cpu: cpuSeconds(pid: daemon.pid), handshakes: metrics["southbridge_tls_handshakes_total"] ?? 0,
                            accepted: fixture.swarm.acceptedConnectionCount)
        }

        func deliver(_ number: Int, label: String, until deadline: ContinuousClock.Instant) async throws -> MessageResult {
            let before = try await counters()
            let started = ContinuousClock.now
            let body = DaemonProcess.ingestBody(number..<(number + 1), destinations: roomNames)
            let response = try await client.send(txnID: "room-\(number)", body: body)
            let ingestAck = ContinuousClock.now - started
            guard response.status == 200 else {
                throw BenchmarkError("ingest answered \(response.status): \(String(decoding: response.body, as: UTF8.self))")
            }
            let id = "\(number)"
            var waiting = room
            var times: [Duration] = []
            while !waiting.isEmpty {
                waiting.removeAll { server in
                    guard let arrival = server.firstArrival(ofPDU: id) else { return false }
                    times.append(arrival - started)
                    return true
                }
                guard !waiting.isEmpty, ContinuousClock.now < deadline else { break }
                try await Task.sleep(for: .milliseconds(10))
            }
            let timeWaited = ContinuousClock.now - started
            let after = try await counters()
            return MessageResult(label: label, ingestAck: ingestAck, times: times.sorted(), liveServers: room.count,
                                 timeWaited: timeWaited, daemonCPU: after.cpu - before.cpu,
                                 acceptedConnections: after.accepted - before.accepted,
                                 handshakes: after.handshakes - before.handshakes)
        }

        var results = [try await deliver(0, label: "cold", until: ContinuousClock.now + bound / 2)]

        // The pool may still be finishing handshakes, or giving up on a blackholed server,
        // after the last live server has the message; idle RSS is read once the handshake
        // count and the open connections have held still for a second (at most 15 s).
        let settleDeadline = ContinuousClock.now + .seconds(15)
        var lastSeen: [Int] = []
        var stillSince = ContinuousClock.now
        var idleMetrics: [String: Int] = [:]
        while ContinuousClock.now < settleDeadline {
            idleMetrics = try await Metrics.read(client)
            let seen = ["southbridge_tls_handshakes_total", "southbridge_connections_open", "southbridge_tls_handshakes_in_progress"]
                .map { idleMetrics[$0] ?? -1 }
            if seen != lastSeen {
                lastSeen = seen
                stillSince = .now
            } else if ContinuousClock.now - stillSince >= .seconds(1) {
                break
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        let rssIdle = ProcessMemory.currentKiB(pid: daemon.pid)

        // The warm messages go out twice: alone, for clean time and CPU figures, then with the
        // probe's requests arriving, for the acknowledgement figure.
        var warm: [MessageResult] = []
        var warmWithProbe: [MessageResult] = []
        func sendWarmMessages(from first: Int, suffix: String) async throws -> [MessageResult] {
            var series: [MessageResult] = []
            for number in first..<(first + messages) where ContinuousClock.now < deadline {
                let after = results[0].complete ? "" : " (after the timed-out cold one)"
                let result = try await deliver(number, label: "warm \(number - first + 1)\(suffix)\(after)", until: deadline)
                series.append(result)
                guard result.complete else { break }
            }
            return series
        }
        var probeResult = IngestProbe.Result()
        if messages > 0 {
            warm = try await sendWarmMessages(from: 1, suffix: "")
            if warm.allSatisfy(\.complete) {
                let probe = IngestProbe(destination: probeServer.serverName, interval: probeInterval)
                let probeClient = try await IngestClient.connect(unixPath: fixture.ingestSocketPath, token: fixture.token, group: probeGroup)
                let probeTask = Task { await probe.run(probeClient) }
                warmWithProbe = try await sendWarmMessages(from: 1 + messages, suffix: " + probe")
                probeTask.cancel()
                probeResult = await probeTask.value
                await probeClient.close()
            }
        }
        results += warm + warmWithProbe

        // Copies still owed get until the bound; a run that reached it reports them as lost.
        let sent = results.count
        func missingRoomCopies() -> Int {
            room.reduce(0) { total, server in total + (0..<sent).filter { server.firstArrival(ofPDU: "\($0)") == nil }.count }
        }
        func missingProbeCopies() -> Int {
            probeResult.accepted - Set(pduNumbers(probeServer)).count
        }
        while ContinuousClock.now < deadline, missingRoomCopies() + missingProbeCopies() > 0 {
            try await Task.sleep(for: .milliseconds(100))
        }
        let lostRoom = missingRoomCopies()
        let lostProbe = missingProbeCopies()
        let backoff = try await DestinationList.backingOff(client)
        let liveNames = Set(room.map(\.serverName) + [probeServer.serverName])
        let liveInBackoff = backoff.filter { liveNames.contains($0) }.count

        let limits = fixture.configuration.limits
        let defaults = Configuration.withDefaults(serverName: DaemonProcess.serverName).limits
        let limitsNote = limits == defaults ? "the daemon's defaults" : "lifted or set on the command line"
        let daemonCPUs = CPUAffinity.allowedCPULists(pid: daemon.pid).sorted().joined(separator: " / ")
        let ownCPUs = CPUAffinity.allowedCPULists().sorted().joined(separator: " / ")
        print("""

            ### room: \(servers) servers (\(liveCount) live, \(faulty.filter { $0.fault == .blackholed }.count) blackholed, \(faulty.filter { $0.fault == .silent }.count) silent, \(faulty.filter { $0.fault == .refusing }.count) refusing), 1 cold + \(messages) warm messages

            limits: max_connections \(limits.maxConnections), max_tls_handshakes \(limits.maxTLSHandshakes), \
            max_new_connections_per_second \(limits.maxNewConnectionsPerSecond) (\(limitsNote)); \
            retry after \(format(fixture.configuration.sender.retryInitialInterval)) first, 7 days at most. \
            Daemon threads on CPU \(daemonCPUs), benchmark threads on CPU \(ownCPUs); RLIMIT_NOFILE \(fileLimit); \
            daemon environment as in packaging/southbridge.service: \(Self.unitEnvironmentDescription); \
            bound \(format(bound)), half of it at most for the cold message. "+ probe" rows: a second ingest client sends \
            a 1-PDU request to one more live server every \(format(probeInterval)) meanwhile (its load is in their CPU).

            | message | ingest ack | p50 to live | p99 to live | time to all live | arrived | daemon CPU | CPU per copy | new connections | TLS handshakes |
            | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
            """)
        print(row(results[0]))
        for (title, series) in [("warm", warm), ("warm + probe", warmWithProbe)] where !series.isEmpty {
            for result in series { print(row(result)) }
            if series.count > 1 { print(pooledRow(series, title: title)) }
        }
        let openConnections = idleMetrics["southbridge_connections_open"] ?? 0
        let perConnection = openConnections > 0 ? "\((rssIdle - rssBefore) / openConnections) KiB per open connection" : "no open connection"
        let acks = probeResult.roundTrips.sorted()
        func ack(_ fraction: Double) -> String { percentile(acks, fraction, of: acks.count).map(format) ?? "–" }
        print("""

            | figure | value |
            | --- | --- |
            | daemon RSS before traffic | \(mebibytes(rssBefore)) |
            | daemon RSS, connections idle after the cold message | \(mebibytes(rssIdle)), \(openConnections) open \
            (\(idleMetrics["southbridge_connections_idle"] ?? 0) idle): +\(mebibytes(rssIdle - rssBefore)), \(perConnection) |
            | ingest ack during warm fan-outs ("+ probe" rows) | \(acks.isEmpty ? "no request" : "p50 \(ack(0.5)), p99 \(ack(0.99)), max \(ack(1))") \
            (\(acks.count) requests, \(probeResult.refused) not accepted) |
            | live destinations in backoff at the end | \(liveInBackoff) of \(liveNames.count) (\(backoff.count) destinations in backoff in all) |
            | PDU copies lost (not arrived within the bound) | \(lostRoom) of \(sent * room.count) room copies, \(lostProbe) of \(probeResult.accepted) probe copies |
            """)
        await client.close()
    }

    private func row(_ result: MessageResult) -> String {
        let times = result.times
        func at(_ fraction: Double) -> String {
            percentile(times, fraction, of: result.liveServers).map(format) ?? "> \(format(result.timeWaited))"
        }
        let toAll = result.complete ? format(times.last ?? .zero) : "> \(format(result.timeWaited)) (timed out)"
        let copies = max(times.count, 1)
        return "| \(result.label) | \(format(result.ingestAck)) | \(at(0.5)) | "
            + "\(at(0.99)) | \(toAll) | \(times.count)/\(result.liveServers) | "
            + "\(seconds(result.daemonCPU)) | \(Int(result.daemonCPU / Double(copies) * 1e6)) µs | "
            + "\(result.acceptedConnections) | \(result.handshakes) |"
    }

    /// The warm messages together: percentiles over every copy, the median time to all.
    private func pooledRow(_ results: [MessageResult], title: String) -> String {
        let times = results.flatMap(\.times).sorted()
        let owed = results.reduce(0) { $0 + $1.liveServers }
        let longestWait = results.map(\.timeWaited).max() ?? .zero
        func at(_ fraction: Double) -> String {
            percentile(times, fraction, of: owed).map(format) ?? "> \(format(longestWait))"
        }
        let toAll = results.map { $0.complete ? ($0.times.last ?? .zero) : $0.timeWaited }.sorted()
        let acks = results.map(\.ingestAck).sorted()
        let cpu = results.reduce(0) { $0 + $1.daemonCPU }
        let complete = results.allSatisfy(\.complete)
        return "| \(title), all \(results.count) pooled | \(percentile(acks, 0.5, of: acks.count).map(format) ?? "–") median | "
            + "\(at(0.5)) | \(at(0.99)) | "
            + "\(complete ? "" : "> ")\(percentile(toAll, 0.5, of: toAll.count).map(format) ?? "–") median | "
            + "\(times.count)/\(owed) | \(seconds(cpu)) | "
            + "\(Int(cpu / Double(max(times.count, 1)) * 1e6)) µs | "
            + "\(results.reduce(0) { $0 + $1.acceptedConnections }) | \(results.reduce(0) { $0 + $1.handshakes }) |"
    }
}

/// Sends one-PDU ingest requests to one destination, one at a time at most every
/// `interval`, until cancelled, and times each acknowledgement.
struct IngestProbe: Sendable {
    struct Result: Sendable {
        var roundTrips: [Duration] = []
        var accepted = 0
        var refused = 0
    }

    var destination: String
    var interval: Duration

    func run(_ client: IngestClient) async -> Result {
        var result = Result()
        var number = 1_000_000
        while !Task.isCancelled {
            let started = ContinuousClock.now
            let body = DaemonProcess.ingestBody(number..<(number + 1), destinations: [destination],
                                                room: "!probe:\(DaemonProcess.serverName)")
            guard let response = try? await client.send(txnID: "probe-\(number)", body: body) else {
                result.refused += 1
                break
            }
            result.roundTrips.append(ContinuousClock.now - started)
            if response.status == 200 { result.accepted += 1 } else { result.refused += 1 }
            number += 1
            try? await Task.sleep(until: started + interval)
        }
        return result
    }
}

/// The daemon's `/metrics`, read through the ingest socket.
enum Metrics {
    static func read(_ client: IngestClient) async throws -> [String: Int] {
        let response = try await client.get("/metrics")
        guard response.status == 200 else { throw BenchmarkError("/metrics answered \(response.status)") }
        var values: [String: Int] = [:]
        for line in String(decoding: response.body, as: UTF8.self).split(separator: "\n") where !line.hasPrefix("#") {
            let fields = line.split(separator: " ")
            if fields.count == 2, let value = Int(fields[1]) { values[String(fields[0])] = value }
        }
        return values
    }
}

/// `GET /_southbridge/v1/destinations?state=backoff`, every page.
enum DestinationList {
    static func backingOff(_ client: IngestClient) async throws -> [String] {
        var names: [String] = []
        var from: String?
        repeat {
            let target = "/_southbridge/v1/destinations?state=backoff&limit=1000" + (from.map { "&from=\($0)" } ?? "")
            let response = try await client.get(target)
            guard response.status == 200, let body = response.json, let entries = body["destinations"]?.arrayValue else {
                throw BenchmarkError("\(target) answered \(response.status): \(String(decoding: response.body, as: UTF8.self))")
            }
            names += entries.compactMap { $0["destination"]?.stringValue }
            from = body["next_token"]?.stringValue
        } while from != nil
        return names
    }
}

/// The value at `fraction` (nearest rank) of `count` values of which `sorted` are the
/// smallest ones known; nil when the rank falls on one not known, a copy still missing.
func percentile(_ sorted: [Duration], _ fraction: Double, of count: Int) -> Duration? {
    let rank = max(Int((fraction * Double(count)).rounded(.up)), 1)
    return rank <= sorted.count ? sorted[rank - 1] : nil
}

/// Milliseconds under ten seconds, seconds above.
func format(_ duration: Duration) -> String {
    let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    if seconds < 10 { return "\((seconds * 10_000).rounded() / 10) ms" }
    return "\((seconds * 100).rounded() / 100) s"
}

private func seconds(_ value: Double) -> String {
    "\((value * 1000).rounded() / 1000) s"
}

private func mebibytes(_ kibibytes: Int) -> String {
    "\((Double(kibibytes) / 1024 * 10).rounded() / 10) MiB"
}
