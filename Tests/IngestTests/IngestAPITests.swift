import Federation
import Ingest
import Logging
import Outbox
import SouthbridgeSwarm
import Testing

@Suite("ingest API against a real outbox")
struct IngestAPITests {
    final class Recorder: @unchecked Sendable {
        var notified: [Set<String>] = []
    }

    private func withAPI(_ body: (IngestAPI, Outbox, Recorder) async throws -> Void) async throws {
        let directory = try TemporaryDirectory(prefix: "southbridge-ingest")
        defer { directory.remove() }
        let outbox = try Outbox(path: directory.path + "/outbox.sqlite3", logger: Logger(label: "test"))
        defer { outbox.close() }
        let recorder = Recorder()
        let api = IngestAPI(outbox: outbox, bearerToken: "secret", ownServerName: "self.example", logger: Logger(label: "test"),
                            metricsText: { "m 1\n" }, newPDUsAccepted: { recorder.notified.append($0) })
        try await body(api, outbox, recorder)
    }

    private func send(_ api: IngestAPI, txn: String, body: String, token: String? = "secret") async -> IngestResponse {
        await api.handle(IngestRequest(method: "PUT", path: "/_southbridge/v1/send/\(txn)",
                                       authorization: token.map { "Bearer \($0)" }, body: Array(body.utf8)))
    }

    @Test func acceptsReplaysAndNotifies() async throws {
        try await withAPI { api, outbox, recorder in
            let body = #"{"pdus":[{"pdu":{"room_id":"!r:x"},"destinations":["a.example"]},{"pdu":{"room_id":"!r:x"},"destinations":["b.example"]}]}"#
            let first = await send(api, txn: "one", body: body)
            #expect(first.status == 200)
            #expect(String(decoding: first.body, as: UTF8.self) == #"{"stream_ordering":2}"#)
            let again = await send(api, txn: "one", body: body)
            #expect(again.body == first.body)
            #expect(recorder.notified == [["a.example", "b.example"]])
            let stored = try await outbox.pendingPDUs(for: "a.example", after: 0, limit: 10)
            #expect(stored.count == 1)
        }
    }

    @Test func refusesMissingAndWrongTokens() async throws {
        try await withAPI { api, _, _ in
            let missing = await send(api, txn: "t", body: "{}", token: nil)
            #expect(missing.status == 401)
            #expect(String(decoding: missing.body, as: UTF8.self).contains("M_MISSING_TOKEN"))
            let wrong = await send(api, txn: "t", body: "{}", token: "secreT")
            #expect(wrong.status == 401)
            #expect(String(decoding: wrong.body, as: UTF8.self).contains("M_UNKNOWN_TOKEN"))
        }
    }

    @Test func routesHealthMetricsAndUnknownPaths() async throws {
        try await withAPI { api, _, _ in
            let health = await api.handle(IngestRequest(method: "GET", path: "/health", authorization: nil, body: []))
            #expect(health.status == 200)
            let metrics = await api.handle(IngestRequest(method: "GET", path: "/metrics", authorization: "Bearer secret", body: []))
            #expect(metrics.status == 200)
            let unknown = await api.handle(IngestRequest(method: "GET", path: "/nope", authorization: "Bearer secret", body: []))
            #expect(unknown.status == 404)
            let wrongMethod = await api.handle(IngestRequest(method: "GET", path: "/_southbridge/v1/send/x", authorization: "Bearer secret", body: []))
            #expect(wrongMethod.status == 405)
        }
    }

    @Test func aRejectedBodyStoresNothing() async throws {
        try await withAPI { api, outbox, _ in
            _ = await send(api, txn: "good", body: #"{"pdus":[{"pdu":{"room_id":"!r:x"},"destinations":["a.example"]}]}"#)
            let bad = await send(api, txn: "bad", body: #"{"pdus":[{"pdu":{"room_id":"!r:x"},"destinations":["a.example"]},{"pdu":{},"destinations":[]}]}"#)
            #expect(bad.status == 400)
            #expect(String(decoding: bad.body, as: UTF8.self).contains("pdus[1].pdu.room_id"))
            let stored = try await outbox.pendingPDUs(for: "a.example", after: 0, limit: 10)
            #expect(stored.count == 1)
        }
    }
}
