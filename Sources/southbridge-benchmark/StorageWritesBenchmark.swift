import Federation
import Glibc
import Outbox
import SouthbridgeDaemon
import SouthbridgeSwarm
import SouthbridgeTestSupport

/// `southbridge-benchmark storage-writes`: what accepting a PDU costs the disk, as GitHub
/// issue #12 asks to measure it. For each destination count, a fresh daemon (its Outbox on
/// this machine's disk) is handed PDUs of about 0.5 KB, each for every one of the
/// destinations, at each rate in turn: one request of one PDU at a time for the lowest rate,
/// ten concurrent clients otherwise. The destinations are loopback addresses nothing listens
/// on; one PDU to all of them first puts every one into a 10-minute backoff, so the figures
/// are those of accepting, not of delivering. Bytes written are the daemon's `write_bytes`
/// from `/proc/PID/io` (what reached the block device: WAL appends, checkpoints and
/// fsyncs included) over the run, divided by the PDUs accepted.
///
/// With `--live` the destinations are fake homeservers on loopback that take every transaction:
/// what a server whose room is reachable writes, delivery progress and pruning included, with
/// the log's segments given back and reused once a minute.
struct StorageWritesBenchmark {
    var destinationCounts: [Int]
    var rates: [Int]
    var seconds: Int
    var commitWindowMS: Int
    var clients = 10
    var live = false

    static func fromCommandLine() -> StorageWritesBenchmark {
        func list(_ name: String, _ value: String) -> [Int] {
            stringOption(name, default: value).split(separator: ",").compactMap { Int($0) }
        }
        return StorageWritesBenchmark(
            destinationCounts: list("--destinations", "1,10,500,5000"),
            rates: list("--rates", "1,100,1000"),
            seconds: option("--seconds", default: 10),
            commitWindowMS: option("--commit-window-ms", default: 0),
            live: CommandLine.arguments.contains("--live"))
    }

    struct Row {
        var destinations: Int
        var rate: Int
        var accepted: Int
        var elapsed: Duration
        var bytesWritten: Int
        var fileBytes: Int
        var ackMedian: Duration
        var ackP99: Duration
    }

    func run() async throws {
        var rows: [Row] = []
        print("""
            ### storage-writes: \(seconds) s per rate; PDUs of \(Self.pduBytes) bytes of canonical JSON; storage.commit_window_ms = \(commitWindowMS); destinations \(live ? "live, taking every transaction" : "unreachable, backing off")

            | destinations per PDU | offered rate | PDUs accepted | sustained rate | bytes written per PDU | × PDU size | ack p50 / p99 | outbox file after |
            | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
            """)
        for count in destinationCounts {
            let live = self.live
            let fixture = try await DaemonProcess(destinations: live ? count : 1) { configuration in
                configuration.log.level = "warning"
                if !live {
                    configuration.sender.retryInitialInterval = .milliseconds(600_000)
                    configuration.sender.retryMaxInterval = .milliseconds(604_800_000)
                }
                // Every destination refuses, or is met, at once: no pacing in the first second.
                configuration.limits.maxNewConnectionsPerSecond = 10_000
                configuration.limits.maxTLSHandshakes = 64
                configuration.storage.commitWindow = .milliseconds(commitWindowMS)
            }
            let destinations = live ? fixture.swarm.serverNames : (0..<count).map { "127.0.\(1 + $0 / 250).\(1 + $0 % 250):9" }
            do {
                try await fixture.start()
                guard let process = fixture.process else { throw BenchmarkError("storage-writes: the daemon did not start") }
                let warmUp = try await fixture.client()
                _ = try await send(warmUp, txnID: "warm-up", Self.request(numbers: [0], destinations: destinations))
                await warmUp.close()
                if live {
                    guard try await waitForDelivery(fixture.swarm, pdus: count) else {
                        throw BenchmarkError("storage-writes: \(count) destinations did not all get the first PDU within 120 s")
                    }
                } else {
                    guard try await waitForBackoff(fixture, count: count) else {
                        throw BenchmarkError("storage-writes: \(count) destinations did not all enter backoff within 120 s")
                    }
                }
                // Recording that many backoffs is written once, after they began; it is not a PDU's cost.
                guard try await waitForQuietDisk(pid: process.pid) else {
                    throw BenchmarkError("storage-writes: the daemon still wrote to disk 60 s after the warm-up")
                }
                var next = 1
                for rate in rates {
                    let before = Self.writeBytes(pid: process.pid)
                    let started = ContinuousClock.now
                    let (accepted, acks) = try await offer(rate: rate, from: next, destinations: destinations, fixture: fixture)
                    let elapsed = ContinuousClock.now - started
                    if live, !(try await waitForDelivery(fixture.swarm, pdus: count * (next + accepted))) {
                        throw BenchmarkError("storage-writes: the live destinations did not get every PDU within 120 s")
                    }
                    let written = Self.writeBytes(pid: process.pid) - before
                    next += accepted
                    let sorted = acks.sorted()
                    let row = Row(destinations: count, rate: rate, accepted: accepted, elapsed: elapsed, bytesWritten: written,
                                  fileBytes: Self.outboxBytes(fixture.configuration.storage.path),
                                  ackMedian: percentile(sorted, 0.5, of: sorted.count) ?? .zero,
                                  ackP99: percentile(sorted, 0.99, of: sorted.count) ?? .zero)
                    rows.append(row)
                    print(Self.tableRow(row))
                }
            } catch {
                await fixture.tearDown()
                throw error
            }
            await fixture.tearDown()
        }
    }

    /// Offers `rate` PDUs a second for `seconds`, each in its own request; returns how many
    /// were accepted and each request's time to its acknowledgement.
    private func offer(rate: Int, from first: Int, destinations: [String], fixture: DaemonProcess) async throws -> (Int, [Duration]) {
        let total = rate * seconds
        let clientCount = rate == 1 ? 1 : clients
        let interval = Duration.seconds(1) / rate * clientCount
        return try await withThrowingTaskGroup(of: [Duration].self) { group in
            for clientNumber in 0..<clientCount {
                group.addTask {
                    let client = try await fixture.client()
                    var acks: [Duration] = []
                    let start = ContinuousClock.now + interval / clientCount * clientNumber
                    var index = 0
                    while clientNumber + index * clientCount < total {
                        let number = first + clientNumber + index * clientCount
                        let due = start + interval * index
                        if due > ContinuousClock.now { try await Task.sleep(until: due) }
                        let sent = ContinuousClock.now
                        _ = try await send(client, txnID: "pdu-\(number)", Self.request(numbers: [number], destinations: destinations))
                        acks.append(ContinuousClock.now - sent)
                        index += 1
                    }
                    await client.close()
                    return acks
                }
            }
            var all: [Duration] = []
            for try await acks in group { all += acks }
            return (all.count, all)
        }
    }

    private func send(_ client: IngestClient, txnID: String, _ body: [UInt8]) async throws -> IngestClient.Response {
        let response = try await client.send(txnID: txnID, body: body)
        guard response.status == 200 else {
            throw BenchmarkError("ingest answered \(response.status): \(String(decoding: response.body, as: UTF8.self))")
        }
        return response
    }

    /// Waits until the daemon has written nothing for two seconds (at most 60 s).
    private func waitForQuietDisk(pid: pid_t) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(60)
        var written = Self.writeBytes(pid: pid)
        var quietSince = ContinuousClock.now
        while ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(250))
            let now = Self.writeBytes(pid: pid)
            if now != written {
                written = now
                quietSince = ContinuousClock.now
            } else if ContinuousClock.now - quietSince >= .seconds(2) {
                return true
            }
        }
        return false
    }

    /// Waits until the swarm has received `pdus` PDU copies (at most 120 s).
    private func waitForDelivery(_ swarm: Swarm, pdus: Int) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(120)
        while swarm.receivedPDUCount < pdus {
            guard ContinuousClock.now < deadline else { return false }
            try await Task.sleep(for: .milliseconds(50))
        }
        return true
    }

    private func waitForBackoff(_ fixture: DaemonProcess, count: Int) async throws -> Bool {
        let client = try await fixture.client()
        let deadline = ContinuousClock.now + .seconds(120)
        var allInBackoff = false
        while !allInBackoff, ContinuousClock.now < deadline {
            let metrics = String(decoding: try await client.get("/metrics").body, as: UTF8.self)
            let line = metrics.split(separator: "\n").first { $0.hasPrefix("southbridge_destinations_in_backoff ") }
            allInBackoff = line.flatMap { Double($0.split(separator: " ").last ?? "") }.map { Int($0) >= count } ?? false
            if !allInBackoff { try await Task.sleep(for: .milliseconds(100)) }
        }
        await client.close()
        return allInBackoff
    }

    /// The size of each PDU's canonical JSON (they differ only in their number's digits).
    static let pduBytes = CanonicalJSON.encode(event(number: 0)).count

    /// A PDU of about 0.5 KB: a message event with a body of 300 characters.
    static func event(number: Int) -> JSONValue {
        .object([
            "type": .string("m.room.message"),
            "room_id": .string("!room:origin.southbridge.localhost"),
            "event_id": .string("$event-\(number)"),
            "sender": .string("@alice:\(DaemonProcess.serverName)"),
            "origin_server_ts": .integer(1_700_000_000_000 + Int64(number)),
            "depth": .integer(Int64(number + 1)),
            "content": .object(["msgtype": .string("m.text"),
                                "body": .string(String(repeating: "lorem ipsum ", count: 25) + "\(number)")]),
        ])
    }

    static func request(numbers: [Int], destinations: [String]) -> [UInt8] {
        let pdus: [JSONValue] = numbers.map { number in
            .object(["pdu": event(number: number), "destinations": .array(destinations.map { .string($0) })])
        }
        return CanonicalJSON.encode(.object(["pdus": .array(pdus)]))
    }

    /// `write_bytes` of `/proc/PID/io`.
    static func writeBytes(pid: pid_t) -> Int {
        guard let file = fopen("/proc/\(pid)/io", "r") else { return 0 }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, Int32(line.count), file) != nil {
            let fields = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                .split(whereSeparator: { $0 == " " || $0 == "\n" })
            if fields.count == 2, fields[0] == "write_bytes:" { return Int(fields[1]) ?? 0 }
        }
        return 0
    }

    /// The Outbox's files together: the database, its WAL and shared-memory index, and the PDU log's segments.
    static func outboxBytes(_ path: String) -> Int {
        Outbox.files(at: path).reduce(0) { total, file in
            var info = stat()
            return total + (stat(file, &info) == 0 ? Int(info.st_size) : 0)
        }
    }

    static func tableRow(_ row: Row) -> String {
        let perPDU = row.accepted > 0 ? row.bytesWritten / row.accepted : 0
        let seconds = Double(row.elapsed.components.seconds) + Double(row.elapsed.components.attoseconds) / 1e18
        let sustained = Double(row.accepted) / max(seconds, 0.001)
        let ratio = (Double(perPDU) / Double(pduBytes) * 10).rounded() / 10
        return "| \(row.destinations) | \(row.rate)/s | \(row.accepted) | \(Int(sustained.rounded()))/s "
            + "| \(kilobytes(perPDU)) | \(ratio) | \(format(row.ackMedian)) / \(format(row.ackP99)) | \(kilobytes(row.fileBytes)) |"
    }

    static func kilobytes(_ bytes: Int) -> String {
        bytes >= 10 * 1_048_576 ? "\(bytes / 1_048_576) MiB" : bytes >= 10_240 ? "\(bytes / 1024) KiB" : "\(bytes) B"
    }
}
