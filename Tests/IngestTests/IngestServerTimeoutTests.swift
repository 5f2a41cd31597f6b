import NIOCore
import SouthbridgeSwarm
import SouthbridgeTestSupport
import Testing

/// Slow clients against the real ingest listener: a connection held open with partial
/// headers, a request trickled byte by byte, an idle connection. Each ends within the
/// configured timeouts (with slack for a loaded machine, never before them), and a
/// well-formed request is served while they hang on.
@Suite(.timeLimit(.minutes(1)))
struct IngestServerTimeoutTests {
    static let idleTimeout = TimeAmount.seconds(1)
    static let requestTimeout = TimeAmount.milliseconds(500)
    /// How late the end may come on a machine busy with the whole test suite.
    static let slack = Duration.seconds(10)

    private func withFixture(_ body: (IngestServerFixture) async throws -> Void) async throws {
        try await IngestServerFixture.with(idleTimeout: Self.idleTimeout, requestTimeout: Self.requestTimeout, body)
    }

    /// Waits for the server to close `connection` and checks when, counted from `start`.
    private func expectClosed(_ connection: RawIngestConnection, after timeout: TimeAmount, from start: ContinuousClock.Instant,
                              sourceLocation: SourceLocation = #_sourceLocation) async {
        let closed = await connection.waitForClose(timeout: .nanoseconds(timeout.nanoseconds) + Self.slack)
        let elapsed = ContinuousClock.now - start
        #expect(closed, "still open after \(elapsed)", sourceLocation: sourceLocation)
        #expect(elapsed >= .nanoseconds(timeout.nanoseconds) - .milliseconds(50), "closed after \(elapsed)",
                sourceLocation: sourceLocation)
    }

    @Test("a connection held open with partial headers is closed without an answer at the request timeout")
    func partialHeaders() async throws {
        try await withFixture { fixture in
            let connection = try await fixture.connect()
            let start = ContinuousClock.now
            await connection.send("PUT /_southbridge/v1/send/slow HTTP/1.1\r\nAuthorization: Bear")
            await expectClosed(connection, after: Self.requestTimeout, from: start)
            #expect(connection.received.isEmpty)
        }
    }

    @Test("a request trickled byte by byte gets no more time than one sent at once")
    func trickledHead() async throws {
        try await withFixture { fixture in
            let connection = try await fixture.connect()
            let start = ContinuousClock.now
            // 40 ms a byte: the whole request would take ten seconds.
            async let trickled: Void = connection.trickle(IngestServerFixture.request(pdu: 1), interval: .milliseconds(40))
            await expectClosed(connection, after: Self.requestTimeout, from: start)
            try await trickled
            #expect(connection.received.isEmpty)
            #expect(try await fixture.storedPDUNumbers().isEmpty)
        }
    }

    @Test("a body trickled after a whole head is answered 408 at the request timeout and nothing is stored")
    func trickledBody() async throws {
        try await withFixture { fixture in
            let request = IngestServerFixture.request(pdu: 2)
            let bodyStart = request.count - IngestServerFixture.sendBody(pdu: 2).count
            let connection = try await fixture.connect()
            let start = ContinuousClock.now
            await connection.send(Array(request[..<bodyStart]))
            async let trickled: Void = connection.trickle(Array(request[bodyStart...]), interval: .milliseconds(40))
            await expectClosed(connection, after: Self.requestTimeout, from: start)
            try await trickled
            let responses = RawIngestConnection.parseResponses(connection.received).responses
            #expect(responses.map(\.status) == [408], "\(responses)")
            #expect(responses.first?.errcode == "M_UNKNOWN")
            #expect(responses.first?.error == "request: not received whole within ingest.request_timeout_ms (500 ms)")
            #expect(responses.first?.header("connection") == "close")
            #expect(try await fixture.storedPDUNumbers().isEmpty)
        }
    }

    @Test("a slow request with a wrong token is answered with the token's refusal, not 408")
    func slowRequestWithAKnownRefusal() async throws {
        try await withFixture { fixture in
            let request = IngestServerFixture.request(pdu: 3, token: "wrong")
            let connection = try await fixture.connect()
            await connection.send(Array(request.dropLast(10)))
            let responses = await connection.responses(timeout: .nanoseconds(Self.requestTimeout.nanoseconds) + Self.slack)
            #expect(responses.map(\.status) == [401], "\(responses)")
            #expect(responses.first?.errcode == "M_UNKNOWN_TOKEN")
            await connection.close()
        }
    }

    @Test("an idle connection is closed without an answer at the idle timeout, also after a request")
    func idleConnections() async throws {
        try await withFixture { fixture in
            // Each instant is taken before what starts the server's timer, never after: a busy test
            // process may resume this task late, and the timer must not then look early.
            let opened = ContinuousClock.now
            let unused = try await fixture.connect()
            let used = try await fixture.connect()
            let answered = ContinuousClock.now
            await used.send(IngestServerFixture.request(pdu: 4))
            let responses = await used.responses(timeout: .seconds(5))
            #expect(responses.map(\.status) == [200], "\(responses)")
            #expect(responses.first?.header("connection") == nil, "the answer kept the connection alive")
            await expectClosed(unused, after: Self.idleTimeout, from: opened)
            #expect(unused.received.isEmpty)
            await expectClosed(used, after: Self.idleTimeout, from: answered)
            #expect(RawIngestConnection.parseResponses(used.received).responses.count == 1)
            #expect(try await fixture.storedPDUNumbers() == [4])
        }
    }

    @Test("a well-formed request is served while 20 slow clients hold connections open")
    func servedWhileSlowClientsHang() async throws {
        // Timeouts far beyond how long the request may take on a busy machine: the slow clients
        // are still there when it is answered, so it was served beside them, not after them.
        try await IngestServerFixture.with(idleTimeout: .seconds(60), requestTimeout: .seconds(30)) { fixture in
            var slow: [RawIngestConnection] = []
            for index in 0..<20 {
                let connection = try await fixture.connect()
                let request = IngestServerFixture.request(pdu: 100 + index)
                // Half stop inside the head, half inside the body.
                await connection.send(Array(request.prefix(index % 2 == 0 ? 30 : request.count - 10)))
                slow.append(connection)
            }
            let client = try await fixture.client()
            let response = try await client.send(txnID: "prompt", body: IngestServerFixture.sendBody(pdu: 7))
            await client.close()
            #expect(response.status == 200)
            #expect(slow.allSatisfy { !$0.isClosed }, "the slow clients were dropped before the request was served")
            #expect(try await fixture.storedPDUNumbers() == [7])
            for connection in slow {
                await connection.close()
            }
        }
    }
}
