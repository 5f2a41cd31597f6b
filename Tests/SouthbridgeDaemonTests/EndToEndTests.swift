import Federation
import Glibc
import SouthbridgeSwarm
import SouthbridgeTestSupport
import Testing

@Suite("southbridge binary, end to end")
struct EndToEndTests {
    @Test("PDUs submitted over ingest reach every swarm server, signed, in order")
    func deliversToEveryDestination() async throws {
        let fixture = try await DaemonProcess(destinations: 5)
        try await fixture.withTearDown {
            try await fixture.start()
            let client = try await fixture.client()
            for batch in 0..<4 {
                let body = DaemonProcess.ingestBody(batch * 30..<(batch + 1) * 30, destinations: fixture.swarm.serverNames)
                let response = try await client.send(txnID: "batch-\(batch)", body: body)
                #expect(response.status == 200, "\(String(decoding: response.body, as: UTF8.self))")
            }
            await client.close()
            let allArrived = await DaemonProcess.eventually(timeout: .seconds(30)) {
                fixture.swarm.servers.allSatisfy { $0.receivedPDUCount >= 120 }
            }
            #expect(allArrived, "southbridge printed:\n\(fixture.process?.output() ?? "")")
            for server in fixture.swarm.servers {
                #expect(pduNumbers(server) == Array(0..<120), "\(server.serverName) got PDUs out of order or twice")
            }
            #expect(fixture.swarm.rejectedSignatureCount == 0)

            fixture.process?.signal(SIGTERM)
            #expect(await fixture.notifySocket?.waitFor("STOPPING=1", timeout: .seconds(10)) == true)
            #expect(await fixture.process?.waitForExit(timeout: .seconds(20)) == 0)
        }
    }

    @Test("a crash mid-stream loses nothing that was acknowledged")
    func restartLosesNothingAcknowledged() async throws {
        let fixture = try await DaemonProcess(destinations: 4)
        try await fixture.withTearDown {
            // Two destinations are down while PDUs are accepted, so delivery is mid-way at the crash.
            let down = Array(fixture.swarm.servers.prefix(2))
            for server in down { server.fail(next: 1_000_000, with: .fail(status: 503)) }
            try await fixture.start()
            let client = try await fixture.client()
            var acknowledged = 0
            for batch in 0..<5 {
                let body = DaemonProcess.ingestBody(batch * 40..<(batch + 1) * 40, destinations: fixture.swarm.serverNames)
                let response = try await client.send(txnID: "crash-\(batch)", body: body)
                if response.status == 200 { acknowledged = (batch + 1) * 40 }
            }
            await client.close()
            #expect(acknowledged == 200)

            fixture.process?.signal(SIGKILL)
            _ = await fixture.process?.waitForExit(timeout: .seconds(10))
            for server in down { server.fail(next: 0, with: .accept) }
            try await fixture.start()

            let allArrived = await DaemonProcess.eventually(timeout: .seconds(60)) {
                fixture.swarm.servers.allSatisfy { Set(pduNumbers($0)).count >= acknowledged }
            }
            #expect(allArrived, "southbridge printed:\n\(fixture.process?.output() ?? "")")
            for server in fixture.swarm.servers {
                #expect(Set(pduNumbers(server)) == Set(0..<acknowledged), "\(server.serverName) is missing PDUs")
            }
            #expect(fixture.swarm.rejectedSignatureCount == 0)
        }
    }

    @Test("a repeated ingest txnId returns the first answer and delivers once")
    func repeatedIngestTransaction() async throws {
        let fixture = try await DaemonProcess(destinations: 1)
        try await fixture.withTearDown {
            try await fixture.start()
            let client = try await fixture.client()
            let body = DaemonProcess.ingestBody(0..<3, destinations: fixture.swarm.serverNames)
            let first = try await client.send(txnID: "same", body: body)
            let second = try await client.send(txnID: "same", body: body)
            #expect(first.status == 200)
            #expect(second.body == first.body)
            await client.close()
            #expect(await DaemonProcess.eventually(timeout: .seconds(20)) { fixture.swarm.servers[0].receivedPDUCount >= 3 })
            // Once nothing is owed or being sent, nothing more can arrive.
            #expect(try await fixture.eventually(destination: fixture.swarm.serverNames[0]) { detail in
                guard case .object(let fields) = detail else { return false }
                return fields["pending_pdus"] == .integer(0) && fields["sending"] == .bool(false)
            })
            #expect(pduNumbers(fixture.swarm.servers[0]) == [0, 1, 2])
        }
    }

    @Test("a failed transaction is retried with the same txnId and body")
    func retriesSameTransaction() async throws {
        let fixture = try await DaemonProcess(destinations: 1)
        try await fixture.withTearDown {
            let server = fixture.swarm.servers[0]
            server.fail(next: 2, with: .fail(status: 500))
            try await fixture.start()
            let client = try await fixture.client()
            _ = try await client.send(txnID: "retry", body: DaemonProcess.ingestBody(0..<5, destinations: [server.serverName]))
            await client.close()
            #expect(await DaemonProcess.eventually(timeout: .seconds(20)) { server.receivedPDUCount >= 5 })
            #expect(server.transactionCount == 1)
            let attempts = server.transactionAttempts
            #expect(attempts.count == 3)
            #expect(Set(attempts.map(\.txnID)).count == 1, "a retry used another txnId")
            #expect(Set(attempts.map(\.body)).count == 1, "a retry changed the body")
        }
    }
}

@Suite("southbridge binary, configured limits")
struct ConfiguredLimitsTests {
    @Test("limits.max_pdus_per_transaction caps every transaction")
    func maxPDUsPerTransaction() async throws {
        let fixture = try await DaemonProcess(destinations: 2) { $0.limits.maxPDUsPerTransaction = 7 }
        try await fixture.withTearDown {
            try await fixture.start()
            let client = try await fixture.client()
            _ = try await client.send(txnID: "many", body: DaemonProcess.ingestBody(0..<40, destinations: fixture.swarm.serverNames))
            await client.close()
            #expect(await DaemonProcess.eventually(timeout: .seconds(20)) { fixture.swarm.servers.allSatisfy { $0.receivedPDUCount >= 40 } })
            for server in fixture.swarm.servers {
                let sizes = server.transactionAttempts.map { (try? JSONValue.parse($0.body))?["pdus"]?.arrayValue?.count ?? -1 }
                #expect(sizes.allSatisfy { (1...7).contains($0) }, "transaction sizes \(sizes)")
                #expect(pduNumbers(server) == Array(0..<40))
            }
        }
    }

    @Test("a replication secret that cannot be read stops the start with a message naming the key")
    func refusesAnUnreadableReplicationSecret() async throws {
        let fixture = try await DaemonProcess(destinations: 1) { configuration in
            configuration.replication.listen = .tcp(host: "127.0.0.1", port: 0)
            configuration.replication.secretFile = "/nonexistent/replication.secret"
        }
        try await fixture.withTearDown {
            await #expect(throws: (any Error).self) { try await fixture.start() }
            let output = fixture.process?.output() ?? ""
            #expect(output.contains("replication.secret_file: cannot read") && output.contains("/nonexistent/replication.secret"), "\(output)")
        }
    }
}

@Suite("southbridge binary, stopping")
struct StoppingTests {
    @Test("SIGTERM with a transaction stuck at a blackholed server exits 0 within server.stop_timeout_ms")
    func stopTimeoutBoundsShutdown() async throws {
        let fixture = try await DaemonProcess(destinations: 1) { $0.server.stopTimeout = .milliseconds(500) }
        try await fixture.withTearDown {
            let server = fixture.swarm.servers[0]
            server.fail(next: 1_000_000, with: .stall)
            try await fixture.start()
            let client = try await fixture.client()
            _ = try await client.send(txnID: "stuck", body: DaemonProcess.ingestBody(0..<1, destinations: [server.serverName]))
            await client.close()
            #expect(await DaemonProcess.eventually(timeout: .seconds(10)) { server.transactionAttempts.count >= 1 })
            let stopAsked = ContinuousClock.now
            fixture.process?.signal(SIGTERM)
            #expect(await fixture.process?.waitForExit(timeout: .seconds(10)) == 0, "\(fixture.process?.output() ?? "")")
            // The request timeout is 60 s: only the 500 ms stop timeout explains a quick exit.
            #expect(ContinuousClock.now - stopAsked < .seconds(15))
            #expect(fixture.notifySocket?.messages().contains { $0.contains("STOPPING=1") } == true)
        }
    }
}

extension ConfiguredLimitsTests {
    @Test("a kept connection the peer closed is replaced at once, without backing off")
    func staleKeepAliveIsRetriedAtOnce() async throws {
        let fixture = try await DaemonProcess(destinations: 1) {
            $0.sender.retryInitialInterval = .seconds(60)
            $0.sender.retryMaxInterval = .seconds(60)
        }
        try await fixture.withTearDown {
            let server = fixture.swarm.servers[0]
            try await fixture.start()
            let client = try await fixture.client()
            _ = try await client.send(txnID: "first", body: DaemonProcess.ingestBody(0..<1, destinations: [server.serverName]))
            #expect(await DaemonProcess.eventually(timeout: .seconds(10)) { server.receivedPDUCount == 1 })
            server.fail(next: 1, with: .hangUp)
            _ = try await client.send(txnID: "second", body: DaemonProcess.ingestBody(1..<2, destinations: [server.serverName]))
            await client.close()
            #expect(await DaemonProcess.eventually(timeout: .seconds(10)) { server.receivedPDUCount == 2 },
                    "\(fixture.process?.output() ?? "")")
        }
    }
}

extension EndToEndTests {
    @Test("after a restart, destinations owed PDUs are woken at the new-connection pace and all caught up")
    func pacedWakeupsAfterRestart() async throws {
        let fixture = try await DaemonProcess(destinations: 12) { $0.limits.maxNewConnectionsPerSecond = 4 }
        try await fixture.withTearDown {
            for server in fixture.swarm.servers { server.fail(next: 1_000_000, with: .fail(status: 503)) }
            try await fixture.start()
            let client = try await fixture.client()
            _ = try await client.send(txnID: "owed", body: DaemonProcess.ingestBody(0..<5, destinations: fixture.swarm.serverNames))
            await client.close()
            fixture.process?.signal(SIGKILL)
            _ = await fixture.process?.waitForExit(timeout: .seconds(10))
            for server in fixture.swarm.servers { server.fail(next: 0, with: .accept) }

            let restarted = ContinuousClock.now
            try await fixture.start()
            let metricsClient = try await fixture.client()
            let metrics = try await metricsClient.request(method: .GET, target: "/metrics")
            await metricsClient.close()
            let text = String(decoding: metrics.body, as: UTF8.self)
            let awaiting = text.split(separator: "\n").first { $0.hasPrefix("southbridge_destinations_awaiting_wakeup ") }
            #expect(awaiting.map { Int($0.split(separator: " ")[1]) ?? 0 } ?? 0 > 0, "nobody waited for a turn: \(text)")
            #expect(await DaemonProcess.eventually(timeout: .seconds(30)) {
                fixture.swarm.servers.allSatisfy { Set(pduNumbers($0)) == Set(0..<5) }
            })
            // Twelve destinations at four per second take about three seconds, not one burst.
            #expect(ContinuousClock.now - restarted >= .seconds(2))
        }
    }
}
