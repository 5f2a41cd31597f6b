import Federation
import Ingest
import Logging
import NIOCore
import NIOPosix
import Outbox
import SouthbridgeSwarm
import SouthbridgeTestSupport

/// A real outbox and the real ingest listener on a unix socket, torn down after the test.
struct IngestServerFixture {
    static let token = "secret"

    let socketPath: String
    let outbox: Outbox
    let group: any EventLoopGroup

    /// Runs `body` with a fresh fixture and awaits its teardown, whether `body` throws or not.
    static func with(
        maxBodyBytes: Int = 1 << 20, idleTimeout: TimeAmount = .seconds(60), requestTimeout: TimeAmount = .seconds(30),
        _ body: (IngestServerFixture) async throws -> Void
    ) async throws {
        let directory = try TemporaryDirectory(prefix: "southbridge-ingest-server")
        defer { directory.remove() }
        let outbox = try Outbox(path: directory.path + "/outbox.sqlite3", logger: Logger(label: "test"))
        defer { outbox.close() }
        // Its own loop: the deadlines under test must not wait behind other tests' work (thousands of
        // TLS handshakes) on the shared loops.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let api = IngestAPI(outbox: outbox, bearerToken: token, ownServerName: "self.example", logger: Logger(label: "test"),
                            metricsText: { "" })
        let socketPath = directory.path + "/ingest.sock"
        let server = try await IngestServer.bind(
            unixPath: socketPath, api: api, maxBodyBytes: maxBodyBytes, idleTimeout: idleTimeout,
            requestTimeout: requestTimeout, group: group)
        do {
            try await body(IngestServerFixture(socketPath: socketPath, outbox: outbox, group: group))
        } catch {
            await server.close()
            try? await group.shutdownGracefully()
            throw error
        }
        await server.close()
        try? await group.shutdownGracefully()
    }

    func connect() async throws -> RawIngestConnection {
        try await RawIngestConnection.connect(unixPath: socketPath, group: group)
    }

    func client(token: String = Self.token) async throws -> IngestClient {
        try await IngestClient.connect(unixPath: socketPath, token: token, group: group)
    }

    /// The numbers of the PDUs the outbox holds for `destination` (see `request(pdu:)`).
    func storedPDUNumbers(for destination: String = "a.example") async throws -> [Int] {
        try await outbox.pendingPDUs(for: destination, after: 0, limit: 10_000).compactMap { pdu in
            (try? JSONValue.parse(pdu.canonicalJSON))?["content"]?["n"]?.intValue.map(Int.init)
        }
    }

    /// A whole `PUT /send` request for one PDU numbered `number`, for `a.example`.
    static func request(pdu number: Int, txnID: String? = nil, token: String = token, keepAlive: Bool = true) -> [UInt8] {
        let body = sendBody(pdu: number)
        return Array(("PUT /_southbridge/v1/send/\(txnID ?? "txn-\(number)") HTTP/1.1\r\nHost: localhost\r\n"
            + "Authorization: Bearer \(token)\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n"
            + (keepAlive ? "" : "Connection: close\r\n") + "\r\n").utf8) + body
    }

    static func sendBody(pdu number: Int) -> [UInt8] {
        Array(#"{"pdus":[{"pdu":{"room_id":"!r:self.example","type":"m.room.message","sender":"@u:self.example","content":{"n":\#(number)}},"destinations":["a.example"]}]}"#.utf8)
    }
}
