import Federation
import SouthbridgeSwarm
import SouthbridgeTestSupport
import Testing

/// The southbridge binary, configured from its TOML file, against a homeserver that holds
/// connections open with partial headers, trickles its body, cuts requests short and sends
/// bytes that are not HTTP: each gets a Matrix error or is closed within ingest's timeouts,
/// and a well-formed request meanwhile is acknowledged and delivered.
@Suite("southbridge binary, hostile ingest clients", .timeLimit(.minutes(2)))
struct IngestHostileClientEndToEndTests {
    @Test("slow, truncated, oversized and malformed ingest requests end in errors or closes; a good one is delivered")
    func hostileClients() async throws {
        let fixture = try await DaemonProcess(destinations: 1) { configuration in
            configuration.ingest.requestTimeout = .milliseconds(1000)
            configuration.ingest.idleTimeout = .seconds(1)
            configuration.ingest.maxBodyBytes = 4096
        }
        do {
            try await exercise(fixture)
        } catch {
            await fixture.tearDown()
            throw error
        }
        await fixture.tearDown()
    }

    private func exercise(_ fixture: DaemonProcess) async throws {
        try await fixture.start()
        let connect = { try await RawIngestConnection.connect(unixPath: fixture.ingestSocketPath, group: fixture.group) }
        let put = "PUT /_southbridge/v1/send/t HTTP/1.1\r\nAuthorization: Bearer \(fixture.token)\r\n"

        // Held open: one inside its head, one trickling its body.
        let partialHead = try await connect()
        let started = ContinuousClock.now
        await partialHead.send(put + "Content-Type: appl")
        let trickling = try await connect()
        await trickling.send(put + "Content-Length: 100\r\n\r\n{")
        async let trickled: Void = trickling.trickle(Array(String(repeating: " ", count: 99).utf8), interval: .milliseconds(50))

        // Meanwhile a well-formed request is acknowledged.
        let client = try await fixture.client()
        let body = DaemonProcess.ingestBody(0..<1, destinations: fixture.swarm.serverNames)
        let accepted = try await client.send(txnID: "good", body: body)
        #expect(accepted.status == 200, "\(String(decoding: accepted.body, as: UTF8.self))")
        await client.close()

        // The slow ones end at the request timeout: without an answer inside the head, 408 in the body.
        #expect(await partialHead.waitForClose(timeout: .seconds(10)))
        #expect(partialHead.received.isEmpty)
        #expect(await trickling.waitForClose(timeout: .seconds(10)))
        try await trickled
        #expect(ContinuousClock.now - started >= .milliseconds(950))
        let timedOut = RawIngestConnection.parseResponses(trickling.received).responses
        #expect(timedOut.map(\.status) == [408] && timedOut.first?.errcode == "M_UNKNOWN", "\(timedOut)")

        // Cut short, too large, not HTTP: each a Matrix error naming what was wrong.
        let cases: [(request: [UInt8], status: Int, error: String)] = [
            (Array((put + "Content-Length: 10\r\n\r\n{\"pd").utf8), 400,
             "request: the connection was closed before the request was complete"),
            (Array((put + "Content-Length: 5000\r\n\r\n").utf8) + Array(repeating: UInt8(ascii: " "), count: 5000), 413,
             "request body is over ingest.max_body_bytes (4096 bytes)"),
            (Array("\u{16}\u{3}\u{1}\0\u{2}\r\n\r\n".utf8), 400, "request line: the method is not an HTTP method"),
            (Array((put + "Content-Length: 2\r\n\r\n{]").utf8), 400, "request body: invalid JSON at byte 1"),
        ]
        for (request, status, error) in cases {
            let connection = try await connect()
            await connection.send(request)
            await connection.closeOutput()
            #expect(await connection.waitForClose(timeout: .seconds(5)))
            let responses = RawIngestConnection.parseResponses(connection.received).responses
            #expect(responses.map(\.status) == [status], "\(responses)")
            #expect(responses.first?.error?.hasPrefix(error) == true, "\(responses)")
            #expect(responses.first?.errcode?.hasPrefix("M_") == true, "\(responses)")
        }

        // Only the acknowledged PDU reaches the destination.
        let server = fixture.swarm.servers[0]
        #expect(await DaemonProcess.eventually(timeout: .seconds(20)) { server.receivedPDUCount >= 1 },
                "\(fixture.process?.output() ?? "")")
        #expect(pduNumbers(server) == [0])
    }
}
