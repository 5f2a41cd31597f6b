import Federation
import NIOHTTP1
import SouthbridgeSwarm
import SouthbridgeTestSupport
import Testing

@Suite("destinations admin API on the real binary")
struct DestinationsAdminTests {
    @Test("a destination in backoff is listed, described, and delivered to at once when woken")
    func wakeClearsBackoff() async throws {
        let fixture = try await DaemonProcess(destinations: 2) {
            $0.sender.retryInitialInterval = .seconds(600)
            $0.sender.retryMaxInterval = .seconds(600)
        }
        try await fixture.withTearDown {
            let down = fixture.swarm.servers[0]
            let up = fixture.swarm.servers[1]
            down.fail(next: 1, with: .fail(status: 503))
            try await fixture.start()
            let client = try await fixture.client()
            _ = try await client.send(txnID: "t", body: DaemonProcess.ingestBody(0..<3, destinations: fixture.swarm.serverNames))
            #expect(await DaemonProcess.eventually(timeout: .seconds(10)) { up.receivedPDUCount == 3 && down.transactionAttempts.count == 1 })

            let backoff = try await waitForJSON(client, "/_southbridge/v1/destinations?state=backoff") {
                $0["destinations"]?.arrayValue?.count == 1
            }
            let listed = backoff["destinations"]?[0]
            #expect(listed?["destination"]?.stringValue == down.serverName)
            // The first interval is jittered like every later one: 0.8-1.4 times retry_initial_ms.
            #expect((480_000...840_000).contains(listed?["retry_interval_ms"]?.intValue ?? 0))
            #expect(listed?["failure_count"]?.intValue == 1)

            let all = try await client.request(method: .GET, target: "/_southbridge/v1/destinations?limit=1")
            #expect(all.json?["destinations"]?.arrayValue?.count == 1)
            #expect(all.json?["next_token"]?.stringValue != nil)

            let detail = try await client.request(method: .GET, target: "/_southbridge/v1/destinations/\(down.serverName)")
            #expect(detail.status == 200)
            #expect(detail.json?["pending_pdus"]?.intValue == 3)
            #expect(detail.json?["resolved"]?["endpoints"]?[0]?.stringValue == down.serverName)

            // Ten minutes of backoff left; waking it delivers now.
            let woken = try await client.request(method: .POST, target: "/_southbridge/v1/destinations/\(down.serverName)/wake")
            #expect(woken.status == 200)
            #expect(await DaemonProcess.eventually(timeout: .seconds(10)) { down.receivedPDUCount == 3 })
            let after = try await waitForJSON(client, "/_southbridge/v1/destinations/\(down.serverName)") {
                $0["pending_pdus"]?.intValue == 0
            }
            #expect(after["retry_interval_ms"]?.intValue == 0)
            await client.close()
        }
    }

    @Test("DELETE …/backoff clears the backoff too; bad requests name what is wrong")
    func resetBackoffAndErrors() async throws {
        let fixture = try await DaemonProcess(destinations: 1) {
            $0.sender.retryInitialInterval = .seconds(600)
            $0.sender.retryMaxInterval = .seconds(600)
        }
        try await fixture.withTearDown {
            let server = fixture.swarm.servers[0]
            server.fail(next: 1, with: .fail(status: 500))
            try await fixture.start()
            let client = try await fixture.client()
            _ = try await client.send(txnID: "t", body: DaemonProcess.ingestBody(0..<1, destinations: [server.serverName]))
            _ = try await waitForJSON(client, "/_southbridge/v1/destinations?state=backoff") { $0["destinations"]?.arrayValue?.count == 1 }
            let reset = try await client.request(method: .DELETE, target: "/_southbridge/v1/destinations/\(server.serverName)/backoff")
            #expect(reset.status == 200)
            #expect(await DaemonProcess.eventually(timeout: .seconds(10)) { server.receivedPDUCount == 1 })

            let unknown = try await client.request(method: .POST, target: "/_southbridge/v1/destinations/nobody.example/wake")
            #expect(unknown.status == 404)
            let badName = try await client.request(method: .GET, target: "/_southbridge/v1/destinations/exa_mple.org")
            #expect(badName.status == 400)
            #expect(badName.json?["error"]?.stringValue?.contains("exa_mple.org") == true)
            let badState = try await client.request(method: .GET, target: "/_southbridge/v1/destinations?state=sideways")
            #expect(badState.status == 400)
            #expect(badState.json?["error"]?.stringValue?.hasPrefix("state: must be one of all, backoff") == true)
            let wrongMethod = try await client.request(method: .GET, target: "/_southbridge/v1/destinations/\(server.serverName)/wake")
            #expect(wrongMethod.status == 405)
            let noToken = try await client.request(method: .GET, target: "/_southbridge/v1/destinations", authorized: false)
            #expect(noToken.status == 401)
            await client.close()
        }
    }

    @Test("a transaction that waited too long for a pool slot is tried again soon, and the destination never backs off")
    func poolWaitTimeoutLeavesRetryStateAlone() async throws {
        let fixture = try await DaemonProcess(destinations: 2) {
            $0.limits.maxConnections = 1
            $0.limits.maxTLSHandshakes = 1
            $0.transport.connectionWaitTimeout = .milliseconds(100)
            $0.sender.retryInitialInterval = .seconds(600)
            $0.sender.retryMaxInterval = .seconds(600)
        }
        let slow = fixture.swarm.servers[0]
        let waiting = fixture.swarm.servers[1]
        slow.fail(next: 1, with: .slow(milliseconds: 1500))
        try await fixture.start()
        let client = try await fixture.client()
        // The slow server holds the only connection for 1.5 s; the other destination's
        // transaction waits for it longer than connection_wait_timeout_ms.
        _ = try await client.send(txnID: "slow", body: DaemonProcess.ingestBody(0..<1, destinations: [slow.serverName]))
        #expect(await DaemonProcess.eventually(timeout: .seconds(10)) { slow.log(for: slow.serverName).attemptCount == 1 })
        _ = try await client.send(txnID: "waiting", body: DaemonProcess.ingestBody(1..<2, destinations: [waiting.serverName]))
        let delivered = await DaemonProcess.eventually(timeout: .seconds(20)) {
            waiting.receivedPDUCount == 1 && slow.receivedPDUCount == 1
        }
        let detail = try await waitForJSON(client, "/_southbridge/v1/destinations/\(waiting.serverName)") {
            $0["pending_pdus"]?.intValue == 0
        }
        let metrics = try await client.request(method: .GET, target: "/metrics")
        let backoff = try await client.request(method: .GET, target: "/_southbridge/v1/destinations?state=backoff")
        await client.close()
        await fixture.tearDown()
        #expect(delivered)
        #expect(detail["retry_interval_ms"]?.intValue == 0)
        #expect(detail["failure_count"]?.intValue == 0)
        #expect(backoff.json?["destinations"]?.arrayValue?.isEmpty == true)
        let deferred = String(decoding: metrics.body, as: UTF8.self).split(separator: "\n")
            .first { $0.hasPrefix("southbridge_transactions_deferred_total ") }
        #expect(deferred.flatMap { Int($0.split(separator: " ")[1]) } ?? 0 >= 1, "\(String(describing: deferred))")
    }

    private func waitForJSON(_ client: IngestClient, _ target: String,
                             until condition: (JSONValue) -> Bool) async throws -> JSONValue {
        let deadline = ContinuousClock.now + .seconds(10)
        while true {
            let response = try await client.request(method: .GET, target: target)
            if let json = response.json, condition(json) { return json }
            guard ContinuousClock.now < deadline else {
                throw FixtureFailure("\(target) never matched; last answer \(response.status): \(String(decoding: response.body, as: UTF8.self))")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }
}

struct FixtureFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
