import Federation
import NIOHTTP1
import SouthbridgeSwarm
import SouthbridgeTestSupport
import Testing

@Suite("POST /_southbridge/v1/query on the real binary")
struct QueryTests {
    private func query(_ client: IngestClient, _ body: JSONValue) async throws -> IngestClient.Response {
        try await client.request(method: .POST, target: "/_southbridge/v1/query", body: CanonicalJSON.encode(body))
    }

    @Test("a signed query reaches the destination with its query string and body, and the answer comes back")
    func forwardsSignedQueries() async throws {
        let fixture = try await DaemonProcess(destinations: 1)
        try await fixture.withTearDown {
            let server = fixture.swarm.servers[0]
            try await fixture.start()
            let client = try await fixture.client()
            let get = try await query(client, [
                "destination": .string(server.serverName), "method": "GET", "path": "/_matrix/federation/v1/query/profile",
                "query": ["user_id": "@alice:example.org", "field": "displayname"],
            ])
            #expect(get.status == 200)
            #expect(get.json?["uri"]?.stringValue
                == "/_matrix/federation/v1/query/profile?field=displayname&user_id=%40alice%3Aexample.org")
            let post = try await query(client, [
                "destination": .string(server.serverName), "method": "POST", "path": "/_matrix/federation/v1/query/keys",
                "body": ["device_keys": ["@bob:example.org": .array([])]],
            ])
            #expect(post.status == 200)
            #expect(post.json?["content"]?["device_keys"] != nil)
            #expect(server.rejectedSignatureCount == 0)
            await client.close()
        }
    }

    @Test("transient failures are retried within the timeout; a destination in backoff fails fast unless asked")
    func retriesAndBackoff() async throws {
        let fixture = try await DaemonProcess(destinations: 1) {
            $0.sender.retryInitialInterval = .seconds(600)
            $0.sender.retryMaxInterval = .seconds(600)
        }
        try await fixture.withTearDown {
            let server = fixture.swarm.servers[0]
            try await fixture.start()
            let client = try await fixture.client()
            server.fail(next: 2, with: .fail(status: 502))
            let retried = try await query(client, [
                "destination": .string(server.serverName), "method": "GET", "path": "/_matrix/federation/v1/query/directory",
            ])
            #expect(retried.status == 200)

            // A failed transaction puts the destination in backoff.
            server.fail(next: 1, with: .fail(status: 500))
            _ = try await client.send(txnID: "t", body: DaemonProcess.ingestBody(0..<1, destinations: [server.serverName]))
            #expect(await DaemonProcess.eventually(timeout: .seconds(10)) { server.transactionAttempts.count == 1 })
            #expect(try await fixture.eventually(destination: server.serverName) { detail in
                if case .object(let fields) = detail, case .integer(let interval)? = fields["retry_interval_ms"] { return interval > 0 }
                return false
            })
            let refused = try await query(client, [
                "destination": .string(server.serverName), "method": "GET", "path": "/_matrix/federation/v1/query/directory",
            ])
            #expect(refused.status == 503)
            #expect(refused.json?["retry_at_ms"]?.intValue != nil)
            let forced = try await query(client, [
                "destination": .string(server.serverName), "method": "GET", "path": "/_matrix/federation/v1/query/directory",
                "ignore_backoff": true,
            ])
            #expect(forced.status == 200)

            server.fail(next: 1_000_000, with: .stall)
            let timedOut = try await query(client, [
                "destination": .string(server.serverName), "method": "GET", "path": "/_matrix/federation/v1/query/directory",
                "ignore_backoff": true, "timeout_ms": 300,
            ])
            #expect(timedOut.status == 504)
            #expect(timedOut.json?["errcode"]?.stringValue == "M_UNKNOWN")
            await client.close()
        }
    }

    @Test("a destination whose addresses are all blocked fails at once, naming the range")
    func blockedDestinationFailsFast() async throws {
        let fixture = try await DaemonProcess(destinations: 0)
        try await fixture.withTearDown {
            try await fixture.start()
            let client = try await fixture.client()
            let started = ContinuousClock.now
            let response = try await query(client, [
                "destination": "10.1.2.3:8448", "method": "GET", "path": "/_matrix/federation/v1/query/directory",
                "timeout_ms": 20000,
            ])
            #expect(response.status == 504)
            #expect(response.json?["error"]?.stringValue?.contains("10.1.2.3 is in 10.0.0.0/8") == true,
                    "\(response.json?["error"]?.stringValue ?? "")")
            #expect(ContinuousClock.now - started < .seconds(10), "a blocked destination was retried until the timeout")
            await client.close()
        }
    }

    @Test("bad query requests name the field", arguments: [
        (#"{"method":"GET","path":"/_matrix/x"}"#, "destination: required string is missing"),
        (#"{"destination":"a.example","method":"PATCH","path":"/_matrix/x"}"#, "method: must be one of"),
        (#"{"destination":"a.example","method":"GET","path":"/other"}"#, "path: must start with /_matrix/"),
        (#"{"destination":"a.example","method":"GET","path":"/_matrix/x","timeout_ms":0}"#, "timeout_ms: must be a whole number from 1 to 120000"),
        (#"{"destination":"exa_mple.org","method":"GET","path":"/_matrix/x"}"#, "destination: \"exa_mple.org\" is not a valid server name"),
        (#"{"destination":"a.example","method":"GET","path":"/_matrix/x","extra":1}"#, "extra: unknown field"),
    ])
    func rejectsBadRequests(body: String, prefix: String) async throws {
        let fixture = try await DaemonProcess(destinations: 0)
        try await fixture.withTearDown {
            try await fixture.start()
            let client = try await fixture.client()
            let response = try await client.request(method: .POST, target: "/_southbridge/v1/query", body: Array(body.utf8))
            #expect(response.status == 400)
            #expect(response.json?["error"]?.stringValue?.hasPrefix(prefix) == true, "\(response.json?["error"]?.stringValue ?? "")")
            await client.close()
        }
    }
}
