#if canImport(Glibc)
import Glibc
#endif
import Ingest
import Outbox
import SouthbridgeSwarm
import Testing

@Suite("ingest listener over a real socket")
struct IngestServerTests {
    @Test("a body over ingest.max_body_bytes gets 413 and stores nothing; smaller ones are served on the same socket path")
    func enforcesMaxBodyBytes() async throws {
        try await IngestServerFixture.with(maxBodyBytes: 2048) { fixture in
            let (socketPath, outbox, group) = (fixture.socketPath, fixture.outbox, fixture.group)
            let small = #"{"pdus":[{"pdu":{"room_id":"!r:x"},"destinations":["a.example"]}]}"#
            let client = try await IngestClient.connect(unixPath: socketPath, token: "secret", group: group)
            let accepted = try await client.send(txnID: "small", body: Array(small.utf8))
            #expect(accepted.status == 200)
            // Keep-alive: a second request on the same connection.
            let health = try await client.request(method: .GET, target: "/health", authorized: false)
            #expect(health.status == 200)
            await client.close()

            let padding = String(repeating: "a", count: 4096)
            let large = #"{"pdus":[{"pdu":{"room_id":"!r:x","body":"\#(padding)"},"destinations":["a.example"]}]}"#
            let second = try await IngestClient.connect(unixPath: socketPath, token: "secret", group: group)
            let refused = try await second.send(txnID: "large", body: Array(large.utf8))
            #expect(refused.status == 413)
            #expect(refused.json?["errcode"]?.stringValue == "M_TOO_LARGE")
            await second.close()

            let stored = try await outbox.pendingPDUs(for: "a.example", after: 0, limit: 10)
            #expect(stored.count == 1)
        }
    }

    @Test("the unix socket is readable and writable by its group, so a homeserver in southbridge's group can connect")
    func unixSocketIsGroupWritable() async throws {
        try await IngestServerFixture.with(maxBodyBytes: 1 << 20) { fixture in
            var status = stat()
            #expect(stat(fixture.socketPath, &status) == 0)
            #expect(status.st_mode & 0o777 == IngestServer.unixSocketMode)
        }
    }

    @Test("a wrong token is refused from the request head, before the body is read")
    func refusesTokenBeforeBody() async throws {
        try await IngestServerFixture.with(maxBodyBytes: 1 << 20) { fixture in
            let (socketPath, outbox, group) = (fixture.socketPath, fixture.outbox, fixture.group)
            let client = try await IngestClient.connect(unixPath: socketPath, token: "wrong", group: group)
            let body = Array(#"{"pdus":[{"pdu":{"room_id":"!r:x"},"destinations":["a.example"]}]}"#.utf8)
            let response = try await client.send(txnID: "t", body: body)
            #expect(response.status == 401)
            #expect(response.json?["errcode"]?.stringValue == "M_UNKNOWN_TOKEN")
            await client.close()
            let stored = try await outbox.pendingPDUs(for: "a.example", after: 0, limit: 10)
            #expect(stored.isEmpty)
        }
    }
}
