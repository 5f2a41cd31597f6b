import Federation
import Ingest
import Logging
import Outbox
import SouthbridgeSwarm
import Testing

@Suite("ingest API against a real outbox")
struct IngestAPITests {
    final class Recorder: EphemeralDelivery, @unchecked Sendable {
        var commits: [Set<String>] = []
        var ephemeral: [AddressedEphemeralEDU] = []
        var events: [AcceptedEvent] = []

        func accepted(events: [AcceptedEvent], ephemeral: [AddressedEphemeralEDU]) {
            self.events += events
            self.ephemeral += ephemeral
        }
    }

    private func withAPI(_ body: (IngestAPI, Outbox, Recorder) async throws -> Void) async throws {
        let directory = try TemporaryDirectory(prefix: "southbridge-ingest")
        defer { directory.remove() }
        let outbox = try Outbox(path: directory.path + "/outbox.sqlite3", logger: Logger(label: "test"))
        defer { outbox.close() }
        let recorder = Recorder()
        outbox.observeCommits { commit in
            recorder.commits.append(Set(commit.pdus.flatMap(\.destinations) + commit.edus.flatMap(\.destinations)))
        }
        let api = IngestAPI(outbox: outbox, bearerToken: "secret", ownServerName: "self.example", logger: Logger(label: "test"),
                            ephemeralDelivery: recorder, metricsText: { "m 1\n" })
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
            #expect(recorder.commits == [["a.example", "b.example"]])
            let stored = try await outbox.pendingPDUs(for: "a.example", after: 0, limit: 10)
            #expect(stored.count == 1)
        }
    }

    @Test func typingGoesToTheSenderWithoutAWriteAndToDeviceIsStored() async throws {
        try await withAPI { api, outbox, recorder in
            let typing = #"{"edus":[{"edu_type":"m.typing","content":{"room_id":"!r:x","user_id":"@u:self.example","typing":true},"destinations":["a.example"]}]}"#
            let commitsBefore = outbox.committedTransactionCount
            #expect(await send(api, txn: "typing", body: typing).status == 200)
            #expect(outbox.committedTransactionCount == commitsBefore)
            #expect(recorder.ephemeral.map(\.destinations) == [["a.example"]])
            #expect(recorder.commits.isEmpty)

            let toDevice = #"{"edus":[{"edu_type":"m.direct_to_device","content":{"sender":"@u:self.example","type":"t","message_id":"m","messages":{}},"destinations":["b.example"]}]}"#
            #expect(await send(api, txn: "to-device", body: toDevice).status == 200)
            #expect(recorder.commits == [["b.example"]])
            let stored = try await outbox.pendingEDUs(for: "b.example", limit: 10)
            #expect(stored.map(\.eduType) == ["m.direct_to_device"])
        }
    }

    @Test("a repeated txnId of typing, presence or receipts only gets the first answer and hands nothing on again")
    func ephemeralOnlyRepeat() async throws {
        try await withAPI { api, outbox, recorder in
            let ephemeral = #"{"edus":[{"edu_type":"m.typing","content":{"room_id":"!r:x","user_id":"@u:self.example","typing":true},"destinations":["a.example"]},{"edu_type":"m.receipt","content":{"!r:x":{"m.read":{"@u:self.example":{"event_ids":["$e"],"data":{"ts":1}}}}},"destinations":["a.example"]}]}"#
            let first = await send(api, txn: "ephemeral", body: ephemeral)
            #expect(first.status == 200)
            #expect(String(decoding: first.body, as: UTF8.self) == #"{"stream_ordering":0}"#)
            // A PDU accepted meanwhile moves the highest stream ordering on.
            #expect(await send(api, txn: "pdu", body: #"{"pdus":[{"pdu":{"room_id":"!r:x"},"destinations":["a.example"]}]}"#).status == 200)
            let handedOn = recorder.ephemeral.count
            let commits = outbox.committedTransactionCount

            let again = await send(api, txn: "ephemeral", body: ephemeral)
            #expect(again.status == 200)
            #expect(again.body == first.body)
            #expect(recorder.ephemeral.count == handedOn)
            #expect(outbox.committedTransactionCount == commits)
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
