import Federation
import Glibc
import Replication
import SouthbridgeDaemon
import SouthbridgeSwarm
import SouthbridgeTestSupport
import Testing

/// A daemon whose replication endpoint listens on a port of the kernel's choosing.
func replicationFixture(destinations: Int, adjust: (inout Configuration) -> Void = { _ in }) async throws -> DaemonProcess {
    try await DaemonProcess(destinations: destinations) { configuration in
        configuration.replication.listen = .tcp(host: "127.0.0.1", port: 0)
        adjust(&configuration)
    }
}

extension ReplicationClient {
    /// The greeting every connection starts with: `SERVER <name>` and a `PING`.
    func greeting() async throws -> [String] {
        [try await nextLine(), try await nextLine()].map { ($0 ?? "<closed>").replacingPingTime() }
    }

    /// Lines up to and including the first that `isLast` accepts (or the close, as `<closed>`), all within
    /// `timeout`: the server's idle `PING`s alone never make a wait endless.
    func lines(through isLast: (String) -> Bool, timeout: Duration = .seconds(20)) async throws -> [String] {
        let deadline = ContinuousClock.now + timeout
        var lines: [String] = []
        while true {
            guard let line = try await nextLine(timeout: max(.zero, deadline - ContinuousClock.now)) else {
                return lines + ["<closed>"]
            }
            lines.append(line)
            if isLast(line) { return lines }
        }
    }

    /// Lines up to `POSITION <stream>`, leaving out the `PING`s the server sends when idle.
    func rows(through stream: String, timeout: Duration = .seconds(20)) async throws -> [String] {
        try await lines(through: { $0.hasPrefix("POSITION \(stream) ") || $0.hasPrefix("ERROR") }, timeout: timeout)
            .filter { !$0.hasPrefix("PING ") }
    }

    /// The next `count` lines that are not `PING`.
    func next(_ count: Int, timeout: Duration = .seconds(20)) async throws -> [String] {
        let deadline = ContinuousClock.now + timeout
        var lines: [String] = []
        while lines.count < count {
            guard let line = try await nextLine(timeout: max(.zero, deadline - ContinuousClock.now)) else {
                return lines + ["<closed>"]
            }
            if !line.hasPrefix("PING ") { lines.append(line) }
        }
        return lines
    }
}

extension String {
    /// `PING 1733540000000` as `PING <ms>`: the server's pings carry its clock.
    func replacingPingTime() -> String {
        hasPrefix("PING ") && dropFirst(5).allSatisfy(\.isNumber) ? "PING <ms>" : self
    }
}

let room = "!room:origin.southbridge.localhost"

func pduRow(_ token: Int, destinations: Int) -> String {
    "RDATA federation \(token) {\"destinations\":\(destinations),\"kind\":\"pdu\",\"room_id\":\"\(room)\"}"
}

/// An ingest body with one to-device EDU for `destinations`.
func toDeviceBody(_ destinations: [String]) -> [UInt8] {
    CanonicalJSON.encode(.object(["edus": .array([.object([
        "edu_type": .string("m.direct_to_device"),
        "content": .object(["sender": .string("@alice:origin.southbridge.localhost"), "type": .string("m.test"),
                            "message_id": .string("m1"), "messages": .object([:])]),
        "destinations": .array(destinations.map { .string($0) }),
    ])])]))
}

@Suite("replication endpoint, against the real daemon", .serialized)
struct ReplicationEndpointTests {
    @Test("connect, subscribe, history then live, with exact lines")
    func historyThenLive() async throws {
        let fixture = try await replicationFixture(destinations: 2)
        try await fixture.withTearDown {
            try await fixture.start()
            let names = fixture.swarm.serverNames
            let ingest = try await fixture.client()
            #expect(try await ingest.send(txnID: "a", body: DaemonProcess.ingestBody(0..<3, destinations: names)).status == 200)
            #expect(try await ingest.send(txnID: "edu", body: toDeviceBody([names[0]])).status == 200)

            let follower = try await fixture.replicationClient()
            #expect(try await follower.greeting() == ["SERVER origin.southbridge.localhost", "PING <ms>"])
            try await follower.send("NAME transcript")
            try await follower.send("REPLICATE federation 1")
            #expect(try await follower.rows(through: "federation") == [
                pduRow(2, destinations: 2),
                pduRow(3, destinations: 2),
                "RDATA federation 4 {\"destinations\":1,\"kind\":\"m.direct_to_device\"}",
                "POSITION federation 4",
            ])
            #expect(try await ingest.send(txnID: "b", body: DaemonProcess.ingestBody(3..<5, destinations: [names[1]])).status == 200)
            #expect(try await follower.next(2) == [pduRow(5, destinations: 1), pduRow(6, destinations: 1)])

            // NOW starts at the position, with nothing before it.
            let late = try await fixture.replicationClient()
            _ = try await late.greeting()
            try await late.send("REPLICATE federation NOW")
            #expect(try await late.rows(through: "federation") == ["POSITION federation 6"])
            #expect(try await ingest.send(txnID: "c", body: DaemonProcess.ingestBody(5..<6, destinations: names)).status == 200)
            #expect(try await late.next(1) == [pduRow(7, destinations: 2)])
            #expect(try await follower.next(1) == [pduRow(7, destinations: 2)])
            await late.close()
            await follower.close()
            await ingest.close()
        }
    }

    @Test("a secret: nothing before AUTH, a wrong secret is refused, the right one lets the follower in")
    func authentication() async throws {
        let fixture = try await replicationFixture(destinations: 1) { configuration in
            configuration.replication.secretFile = "/nonexistent/replaced-below"
        }
        try await fixture.withTearDown {
            try writeFile(fixture.directory.path + "/replication.secret", "correct-horse\n")
            try fixture.reconfigure { $0.replication.secretFile = fixture.directory.path + "/replication.secret" }
            try await fixture.start()

            let early = try await fixture.replicationClient()
            #expect(try await early.greeting() == ["SERVER origin.southbridge.localhost", "PING <ms>"])
            try await early.send("REPLICATE federation NOW")
            #expect(try await early.lines(through: { _ in false }) == ["ERROR AUTH required before REPLICATE", "<closed>"])

            let wrong = try await fixture.replicationClient()
            _ = try await wrong.greeting()
            try await wrong.send("AUTH correct-hors")
            #expect(try await wrong.lines(through: { _ in false }) == ["ERROR AUTH: wrong secret", "<closed>"])

            let garbled = try await fixture.replicationClient()
            _ = try await garbled.greeting()
            try await garbled.send("HELLO")
            #expect(try await garbled.lines(through: { _ in false }).first?.hasPrefix("ERROR AUTH required before any other command: unknown command") == true)

            let right = try await fixture.replicationClient()
            _ = try await right.greeting()
            try await right.send("AUTH correct-horse")
            try await right.send("AUTH correct-horse")
            #expect(try await right.next(1) == ["ERROR AUTH: already authenticated"])
            try await right.send("REPLICATE destinations NOW")
            #expect(try await right.rows(through: "destinations") == ["POSITION destinations 0"])
            for client in [early, wrong, garbled, right] { await client.close() }
            #expect(await fixture.eventually(metricsContain: "southbridge_replication_disconnects_total{reason=\"auth_failed\"} 3"))
        }
    }

    @Test("every kind of malformed line gets an ERROR naming it; only an overlong line closes")
    func malformedLines() async throws {
        let fixture = try await replicationFixture(destinations: 1)
        try await fixture.withTearDown {
            try await fixture.start()
            let follower = try await fixture.replicationClient()
            _ = try await follower.greeting()
            let transcript: [(sent: [UInt8], reply: String)] = [
                (Array("FROBNICATE now".utf8), "ERROR unknown command \"FROBNICATE\"; a client sends NAME, PING, AUTH, REPLICATE, REMOTE_SERVER_UP or ERROR"),
                (Array("RDATA federation 1 {}".utf8), "ERROR RDATA is sent by the server, not by a client"),
                (Array("POSITION federation 1".utf8), "ERROR POSITION is sent by the server, not by a client"),
                (Array("SERVER evil.example".utf8), "ERROR SERVER is sent by the server, not by a client"),
                (Array("NAME".utf8), "ERROR NAME: expected \"NAME <client name>\", got \"NAME\""),
                (Array("REPLICATE federation".utf8), "ERROR REPLICATE: expected \"REPLICATE <stream> <token>\", got \"REPLICATE federation\""),
                (Array("REPLICATE events 0".utf8), "ERROR REPLICATE: unknown stream \"events\"; the streams are federation, destinations and ALL"),
                (Array("REPLICATE federation soon".utf8), "ERROR REPLICATE federation: the token must be NOW or a whole number, got \"soon\""),
                (Array("REPLICATE federation 99".utf8), "ERROR REPLICATE federation 99: the token is ahead of the stream's position 0; this is another outbox, start again from NOW or 0"),
                ([0x50, 0x49, 0x4E, 0x47, 0x20, 0xFF, 0xFE], "ERROR the line is not UTF-8"),
                (Array("REMOTE_SERVER_UP not_a_server!".utf8), "ERROR REMOTE_SERVER_UP: \"not_a_server!\" is not a valid server name: '_' is not allowed in a DNS name (letters, digits, '-' and '.' only)"),
                (Array("AUTH secret".utf8), "ERROR AUTH: no secret is configured; nothing to authenticate"),
            ]
            for (sent, reply) in transcript {
                try await follower.send(bytes: Array("\r\n   \n".utf8) + sent + [0x0A])
                let answer = try await follower.next(1)
                #expect(answer == [reply], "after \(String(decoding: sent, as: UTF8.self).debugDescription)")
            }
            try await follower.send("REPLICATE federation NOW")
            #expect(try await follower.rows(through: "federation") == ["POSITION federation 0"])

            // FROBNICATE and the three commands only the server sends.
            #expect(await fixture.eventually(metricsContain: "southbridge_replication_commands_in_total{command=\"invalid\"} 4"))
            #expect(await fixture.eventually(metricsContain: "southbridge_replication_commands_out_total{command=\"ERROR\"} 12"))

            try await follower.send(bytes: [UInt8](repeating: 0x41, count: ClientCommand.maxLineBytes + 2))
            #expect(try await follower.lines(through: { _ in false }).filter { !$0.hasPrefix("PING") }
                    == ["ERROR Line length exceeded: longer than 16384 bytes", "<closed>"])
            await follower.close()
        }
    }

    @Test("one follower more than replication.max_connections is told so and closed")
    func maxConnections() async throws {
        let fixture = try await replicationFixture(destinations: 1) { $0.replication.maxConnections = 2 }
        try await fixture.withTearDown {
            try await fixture.start()
            let first = try await fixture.replicationClient()
            let second = try await fixture.replicationClient()
            for follower in [first, second] { _ = try await follower.greeting() }
            let third = try await fixture.replicationClient()
            #expect(try await third.lines(through: { _ in false })
                    == ["ERROR too many replication connections (replication.max_connections = 2)", "<closed>"])
            await second.close()
            #expect(await fixture.eventually(metricsContain: "southbridge_replication_clients_connected 1"))
            let fourth = try await fixture.replicationClient()
            #expect(try await fourth.greeting() == ["SERVER origin.southbridge.localhost", "PING <ms>"])
            for follower in [first, third, fourth] { await follower.close() }
            #expect(await fixture.eventually(metricsContain: "southbridge_replication_disconnects_total{reason=\"too_many_connections\"} 1"))
        }
    }

    @Test("a follower that pings and then stays silent is closed after five ping intervals")
    func pingTimeout() async throws {
        let fixture = try await replicationFixture(destinations: 1) { $0.replication.pingInterval = .milliseconds(200) }
        try await fixture.withTearDown {
            try await fixture.start()
            let follower = try await fixture.replicationClient()
            _ = try await follower.greeting()
            try await follower.send("PING 1")
            let started = ContinuousClock.now
            let lines = try await follower.lines(through: { _ in false }, timeout: .seconds(10))
            let silentFor = ContinuousClock.now - started
            #expect(lines.suffix(2) == ["ERROR ping timeout", "<closed>"])
            #expect(lines.dropLast(2).allSatisfy { $0.replacingPingTime() == "PING <ms>" }, "\(lines)")
            #expect(lines.count >= 5, "the server pings every interval while idle: \(lines)")
            #expect(silentFor >= .milliseconds(1000))
            await follower.close()
        }
    }

    @Test("a follower that does not read is cut off with ERROR Failed to keep up; another receives every row")
    func slowFollowerIsDisconnected() async throws {
        let fixture = try await replicationFixture(destinations: 1)
        try await fixture.withTearDown {
            try await fixture.start()
            let fast = try await fixture.replicationClient()
            let slow = try await fixture.replicationClient(receiveBufferBytes: 4096)
            for follower in [fast, slow] {
                _ = try await follower.greeting()
                try await follower.send("REPLICATE federation NOW")
                #expect(try await follower.rows(through: "federation") == ["POSITION federation 0"])
            }
            try await slow.pauseReading()
            let ingest = try await fixture.client()
            // More rows than the follower's queue (4,096 lines), the channel's buffer and the sockets' hold.
            let batches = 9
            for batch in 0..<batches {
                let body = DaemonProcess.ingestBody(batch * 1000..<(batch + 1) * 1000, destinations: fixture.swarm.serverNames)
                #expect(try await ingest.send(txnID: "flood-\(batch)", body: body).status == 200)
            }
            let received = try await fast.next(batches * 1000)
            #expect(received == (1...batches * 1000).map { pduRow($0, destinations: 1) })
            #expect(await fixture.eventually(metricsContain: "southbridge_replication_disconnects_total{reason=\"failed_to_keep_up\"} 1"))

            try await slow.resumeReading()
            let slowLines = try await slow.lines(through: { _ in false }).filter { !$0.hasPrefix("PING") }
            #expect(slowLines.suffix(2) == ["ERROR Failed to keep up", "<closed>"])
            let rows = slowLines.dropLast(2)
            #expect(rows.count < batches * 1000)
            #expect(Array(rows) == (1...rows.count).map { pduRow($0, destinations: 1) }, "the rows before the error are in order")
            await slow.close()
            await fast.close()
            await ingest.close()
        }
    }

    @Test("REMOTE_SERVER_UP wakes a destination in backoff, which gets its PDUs at once; other followers hear of it")
    func remoteServerUpWakesADestination() async throws {
        let fixture = try await replicationFixture(destinations: 1) { configuration in
            // Without a wake, the next try would be minutes away.
            configuration.sender.retryInitialInterval = .milliseconds(600_000)
            configuration.sender.retryMaxInterval = .milliseconds(600_000)
        }
        try await fixture.withTearDown {
            let server = fixture.swarm.servers[0]
            server.fail(next: 1, with: .fail(status: 503))
            try await fixture.start()
            let watcher = try await fixture.replicationClient()
            _ = try await watcher.greeting()
            try await watcher.send("REPLICATE destinations NOW")
            #expect(try await watcher.rows(through: "destinations") == ["POSITION destinations 0"])

            let ingest = try await fixture.client()
            #expect(try await ingest.send(txnID: "one", body: DaemonProcess.ingestBody(0..<2, destinations: [server.serverName])).status == 200)
            // The interval is drawn with jitter around retry_initial_ms.
            let backoff = try await watcher.next(1)[0]
            let interval = backoff.firstMatch(of: /"retry_interval_ms":([0-9]+)/).flatMap { Int($0.1) } ?? 0
            #expect((480_000...840_000).contains(interval), "\(backoff)")
            #expect(backoff.replacing(/"retry_interval_ms":[0-9]+/, with: "\"retry_interval_ms\":<ms>") ==
                "RDATA destinations 1 {\"destination\":\"\(server.serverName)\",\"failure_count\":1,\"last_successful_stream_ordering\":0,\"retry_interval_ms\":<ms>,\"state\":\"backoff\"}")
            #expect(server.receivedPDUCount == 0)

            let homeserver = try await fixture.replicationClient()
            _ = try await homeserver.greeting()
            let woken = ContinuousClock.now
            try await homeserver.send("REMOTE_SERVER_UP \(server.serverName)")
            // The wake and the delivery it starts race each other to the watcher.
            #expect(try await watcher.next(2).sorted() == [
                "RDATA destinations 2 {\"destination\":\"\(server.serverName)\",\"failure_count\":0,\"last_successful_stream_ordering\":0,\"retry_interval_ms\":0,\"state\":\"up\"}",
                "REMOTE_SERVER_UP \(server.serverName)",
            ])
            #expect(await DaemonProcess.eventually(timeout: .seconds(10)) { server.receivedPDUCount == 2 })
            #expect(ContinuousClock.now - woken < .seconds(10))
            for client in [watcher, homeserver] { await client.close() }
            await ingest.close()
        }
    }
}


@Suite("replication endpoint, resuming after a disconnect and a restart")
struct ReplicationResumeTests {
    @Test("a follower back with its last tokens gets exactly the rows it missed, across a restart of southbridge")
    func resumeAcrossARestart() async throws {
        let fixture = try await replicationFixture(destinations: 2)
        try await fixture.withTearDown {
            let (healthy, flaky) = (fixture.swarm.servers[0], fixture.swarm.servers[1])
            let names = fixture.swarm.serverNames
            try await fixture.start()
            var follower = try await fixture.replicationClient()
            _ = try await follower.greeting()
            try await follower.send("REPLICATE ALL NOW")
            #expect(Set(try await follower.next(2)) == ["POSITION federation 0", "POSITION destinations 0"])
            var ingest = try await fixture.client()
            #expect(try await ingest.send(txnID: "before", body: DaemonProcess.ingestBody(0..<2, destinations: names)).status == 200)
            #expect(try await follower.next(2) == [pduRow(1, destinations: 2), pduRow(2, destinations: 2)])
            await follower.close()

            // Gone: units keep arriving and a destination fails and backs off.
            flaky.fail(next: 1_000_000, with: .fail(status: 503))
            #expect(try await ingest.send(txnID: "away", body: DaemonProcess.ingestBody(2..<4, destinations: names)).status == 200)
            #expect(try await ingest.send(txnID: "away-edu", body: toDeviceBody([flaky.serverName])).status == 200)
            #expect(try await fixture.eventually(destination: flaky.serverName) { detail in
                guard case .object(let fields) = detail, case .integer(let failures)? = fields["failure_count"] else { return false }
                return failures >= 1
            })
            await ingest.close()

            // southbridge restarts; the destination comes back and more units arrive.
            fixture.process?.signal(SIGTERM)
            #expect(await fixture.process?.waitForExit(timeout: .seconds(20)) == 0)
            flaky.fail(next: 0, with: .accept)
            try await fixture.start()
            ingest = try await fixture.client()
            #expect(try await ingest.send(txnID: "after", body: DaemonProcess.ingestBody(4..<5, destinations: names)).status == 200)
            #expect(await DaemonProcess.eventually(timeout: .seconds(20)) { Set(pduNumbers(flaky)) == Set(0..<5) && Set(pduNumbers(healthy)) == Set(0..<5) })
            await ingest.close()

            // What a follower reading every destination change from the start sees: the reference.
            let reference = try await fixture.replicationClient()
            _ = try await reference.greeting()
            try await reference.send("REPLICATE destinations 0")
            let allChanges = try await reference.rows(through: "destinations")
            await reference.close()
            let changes = allChanges.dropLast()
            #expect(changes.contains { $0.contains("\"destination\":\"\(flaky.serverName)\"") && $0.contains("\"state\":\"backoff\"") })
            #expect(changes.last?.contains("\"destination\":\"\(flaky.serverName)\"") == true && changes.last?.contains("\"state\":\"up\"") == true)

            follower = try await fixture.replicationClient()
            _ = try await follower.greeting()
            try await follower.send("REPLICATE federation 2")
            #expect(try await follower.rows(through: "federation") == [
                pduRow(3, destinations: 2), pduRow(4, destinations: 2),
                "RDATA federation 5 {\"destinations\":1,\"kind\":\"m.direct_to_device\"}",
                pduRow(6, destinations: 2),
                "POSITION federation 6",
            ])
            try await follower.send("REPLICATE destinations 0")
            #expect(try await follower.rows(through: "destinations") == Array(allChanges))
            let tokens = changes.compactMap { $0.split(separator: " ").dropFirst(2).first.flatMap { Int($0) } }
            #expect(tokens == Array(1...tokens.count), "every change once, in order")
            await follower.close()
        }
    }
}
