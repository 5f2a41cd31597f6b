import COpenSSL
import NIOCore
import NIOEmbedded
import NIOPosix
import SouthbridgeTestSupport
import Testing

@testable import Transport

/// An idle TLS 1.3 client connection leaves OpenSSL's object for `TLS13RecordLayer`: against a
/// real OpenSSL server driven record by record (key updates both ways, records split anywhere,
/// a tampered record, close_notify), and against nginx over loopback.
@Suite(.timeLimit(.minutes(1)))
struct TLS13RecordLayerTests {
    /// The server end: OpenSSL's own `SSL` over memory BIOs, so the test decides when each byte moves.
    private final class RawServer {
        let ssl: OpaquePointer
        private let input: OpaquePointer
        private let output: OpaquePointer
        /// KeyUpdate messages the server has received and sent.
        private(set) var keyUpdatesReceived = 0
        private(set) var keyUpdatesSent = 0

        init(context: TLSContext) throws {
            ssl = try #require(SSL_new(context.sslContext))
            input = try #require(BIO_new(BIO_s_mem()))
            output = try #require(BIO_new(BIO_s_mem()))
            SSL_set_bio(ssl, input, output)
            SSL_set_accept_state(ssl)
            SSL_set_msg_callback(ssl) { written, _, contentType, message, length, _, server in
                guard contentType == SSL3_RT_HANDSHAKE, length > 0,
                    message?.load(as: UInt8.self) == UInt8(SSL3_MT_KEY_UPDATE), let server
                else { return }
                let rawServer = Unmanaged<RawServer>.fromOpaque(server).takeUnretainedValue()
                if written == 0 {
                    rawServer.keyUpdatesReceived += 1
                } else {
                    rawServer.keyUpdatesSent += 1
                }
            }
            SSL_ctrl(ssl, SSL_CTRL_SET_MSG_CALLBACK_ARG, 0, Unmanaged.passUnretained(self).toOpaque())
        }

        deinit {
            SSL_free(ssl)
        }

        func take(_ buffer: ByteBuffer) {
            buffer.withUnsafeReadableBytes { bytes in
                _ = BIO_write(input, bytes.baseAddress, Int32(bytes.count))
            }
        }

        func drain() -> ByteBuffer {
            var buffer = ByteBuffer()
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                let read = BIO_read(output, &chunk, Int32(chunk.count))
                guard read > 0 else { return buffer }
                buffer.writeBytes(chunk[0..<Int(read)])
            }
        }

        func write(_ text: String) {
            let bytes = Array(text.utf8)
            #expect(SSL_write(ssl, bytes, Int32(bytes.count)) == Int32(bytes.count))
        }

        /// Everything OpenSSL can decrypt from what it was given, the last SSL_read's error, and
        /// OpenSSL's reason code for it.
        func read() -> (text: String, error: Int32, reason: Int32) {
            var text = [UInt8]()
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                let read = SSL_read(ssl, &chunk, Int32(chunk.count))
                guard read > 0 else {
                    let error = SSL_get_error(ssl, read)
                    let reason = ERR_GET_REASON(ERR_peek_error())
                    ERR_clear_error()
                    return (String(decoding: text, as: UTF8.self), error, reason)
                }
                text += chunk[0..<Int(read)]
            }
        }
    }

    /// A client `OpenSSLHandler` in an embedded channel, handshaken with `server`; its first
    /// request sent and read, no answer yet.
    private static func handshakenClient(
        _ client: TrustedClient, server: RawServer, recordsPerKey: UInt64 = 1 << 24
    ) throws -> (channel: EmbeddedChannel, handler: OpenSSLHandler) {
        let handler = try OpenSSLHandler(clientContext: client.context, peer: .hostname("localhost"))
        handler.recordsPerKey = recordsPerKey
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([handler, ClosesOnError()])
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 8448)).whenFailure { Issue.record($0) }
        for _ in 0..<4 {
            try pump(channel, to: server)
            _ = SSL_do_handshake(server.ssl)
            try channel.writeInbound(server.drain())
        }
        channel.embeddedEventLoop.run()
        try pump(channel, to: server)
        #expect(SSL_do_handshake(server.ssl) == 1)
        channel.writeAndFlush(ByteBuffer(string: "request 0"), promise: nil)
        try pump(channel, to: server)
        #expect(server.read().text == "request 0")
        #expect(!handler.usesOwnRecordLayer, "OpenSSL still holds the connection until its first answer")
        return (channel, handler)
    }

    /// The same, given a first answer, after which it has left OpenSSL's object.
    private static func connectedClient(
        _ client: TrustedClient, server: RawServer, recordsPerKey: UInt64 = 1 << 24,
        beforeFirstAnswer: (RawServer) -> Void = { _ in }
    ) throws -> (channel: EmbeddedChannel, handler: OpenSSLHandler) {
        let (channel, handler) = try handshakenClient(client, server: server, recordsPerKey: recordsPerKey)
        beforeFirstAnswer(server)
        server.write("first answer")
        try channel.writeInbound(server.drain())
        #expect(try readText(channel) == "first answer")
        return (channel, handler)
    }

    private static func pump(_ channel: EmbeddedChannel, to server: RawServer) throws {
        while let records = try channel.readOutbound(as: ByteBuffer.self) {
            server.take(records)
        }
    }

    private static func readText(_ channel: EmbeddedChannel) throws -> String {
        var text = ""
        while var plaintext = try channel.readInbound(as: ByteBuffer.self) {
            text += plaintext.readString(length: plaintext.readableBytes) ?? ""
        }
        return text
    }

    private static func tls13ServerContext(_ client: TrustedClient, suite: String) throws -> TLSContext {
        let context = try client.serverContext(minimumVersion: .tls13)
        #expect(SSL_CTX_set_ciphersuites(context.sslContext, suite) == 1)
        return context
    }

    @Test(arguments: ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"])
    func recordsKeyUpdatesAndCloseNotifyAgainstOpenSSL(_ suite: String) async throws {
        try await TrustedClient.with { client in
                let server = try RawServer(context: try Self.tls13ServerContext(client, suite: suite))
                let (channel, handler) = try Self.connectedClient(client, server: server)
                #expect(handler.usesOwnRecordLayer)

                // The first request continues the sequence numbers OpenSSL used.
                channel.writeAndFlush(ByteBuffer(string: "request 1"), promise: nil)
                try Self.pump(channel, to: server)
                #expect(server.read().text == "request 1")

                // The server updates its keys and asks for ours to change too.
                #expect(SSL_key_update(server.ssl, SSL_KEY_UPDATE_REQUESTED) == 1)
                server.write("after the update")
                try channel.writeInbound(server.drain())
                #expect(try Self.readText(channel) == "after the update")
                channel.writeAndFlush(ByteBuffer(string: "request 2"), promise: nil)
                try Self.pump(channel, to: server)
                #expect(server.read().text == "request 2")
                #expect(server.keyUpdatesReceived == 1, "the client answered the KeyUpdate with its own")

                // Two requests while the client is silent get one answer; an update that asks
                // for none gets none.
                for _ in 0..<2 {
                    #expect(SSL_key_update(server.ssl, SSL_KEY_UPDATE_REQUESTED) == 1)
                    server.write("update")
                }
                #expect(SSL_key_update(server.ssl, SSL_KEY_UPDATE_NOT_REQUESTED) == 1)
                server.write("update")
                try channel.writeInbound(server.drain())
                #expect(try Self.readText(channel) == "updateupdateupdate")
                channel.writeAndFlush(ByteBuffer(string: "request 3"), promise: nil)
                try Self.pump(channel, to: server)
                #expect(server.read().text == "request 3")
                #expect(server.keyUpdatesReceived == 2)

                // 40 KiB each way: several records, handed over in pieces that split them anywhere.
                let large = String(repeating: "0123456789abcdef", count: 2560)
                server.write(large)
                var records = server.drain()
                while records.readableBytes > 0 {
                    try channel.writeInbound(records.readSlice(length: min(777, records.readableBytes))!)
                }
                #expect(try Self.readText(channel) == large)
                channel.writeAndFlush(ByteBuffer(string: large), promise: nil)
                try Self.pump(channel, to: server)
                #expect(server.read().text == large)

                // The server's close_notify is answered and closes the channel.
                #expect(SSL_shutdown(server.ssl) == 0)
                try channel.writeInbound(server.drain())
                channel.embeddedEventLoop.run()
                #expect(!channel.isActive)
                try Self.pump(channel, to: server)
                #expect(server.read().error == SSL_ERROR_ZERO_RETURN)
                _ = try? channel.finish()
        }
    }

    @Test func theClientUpdatesItsKeysAfterRecordsPerKeyAndTheServerFollows() async throws {
        try await TrustedClient.with { client in
            let server = try RawServer(context: try Self.tls13ServerContext(client, suite: "TLS_AES_256_GCM_SHA384"))
            let (channel, handler) = try Self.connectedClient(client, server: server, recordsPerKey: 4)
            #expect(handler.usesOwnRecordLayer)
            // "request 0" went out under OpenSSL: record 0 of the first key.
            for round in 1...3 {
                for request in 1...5 {
                    channel.writeAndFlush(ByteBuffer(string: "request \(round).\(request) "), promise: nil)
                }
                try Self.pump(channel, to: server)
                #expect(server.read().text == (1...5).map { "request \(round).\($0) " }.joined())
                // The server answers each request for new keys before its next data.
                server.write("answer \(round)")
                try channel.writeInbound(server.drain())
                #expect(try Self.readText(channel) == "answer \(round)")
            }
            // Records 0-3 under the first key, then 4 under each: 16 records need 3 KeyUpdates.
            #expect(server.keyUpdatesReceived == 3)
            #expect(server.keyUpdatesSent == 3, "each asked the server to update its keys too")
            _ = try? channel.finish()
        }
    }

    @Test func aKeyUpdateWhileOpenSSLHoldsTheConnectionKeepsItThere() async throws {
        try await TrustedClient.with { client in
            let server = try RawServer(context: try Self.tls13ServerContext(client, suite: "TLS_AES_128_GCM_SHA256"))
            let (channel, handler) = try Self.connectedClient(client, server: server) { server in
                #expect(SSL_key_update(server.ssl, SSL_KEY_UPDATE_REQUESTED) == 1)
            }
            #expect(!handler.usesOwnRecordLayer, "the logged secrets are a generation behind")
            for round in 1...3 {
                channel.writeAndFlush(ByteBuffer(string: "request \(round)"), promise: nil)
                try Self.pump(channel, to: server)
                #expect(server.read().text == "request \(round)")
                server.write("answer \(round)")
                try channel.writeInbound(server.drain())
                #expect(try Self.readText(channel) == "answer \(round)")
            }
            #expect(!handler.usesOwnRecordLayer)
            #expect(server.keyUpdatesReceived == 1)
            _ = try? channel.finish()
        }
    }

    /// The records of `buffer`, each with its header.
    private static func records(of buffer: ByteBuffer) -> [ByteBuffer] {
        var rest = buffer
        var records: [ByteBuffer] = []
        while let length = rest.getInteger(at: rest.readerIndex + 3, as: UInt16.self) {
            records.append(rest.readSlice(length: 5 + Int(length))!)
        }
        return records
    }

    /// Sends a session ticket of over 3 KB in records of 512 bytes.
    private static func sendLargeTicket(from server: RawServer) {
        #expect(SSL_ctrl(server.ssl, SSL_CTRL_SET_MAX_SEND_FRAGMENT, 512, nil) == 1)
        #expect(SSL_new_session_ticket(server.ssl) == 1)
        #expect(SSL_do_handshake(server.ssl) == 1)
    }

    @Test func aTicketSplitAcrossRecordsKeepsOpenSSLUntilItIsWholeAndLaterOnesAreSkipped() async throws {
        try await TrustedClient.with { client in
            let context = try Self.tls13ServerContext(client, suite: "TLS_AES_128_GCM_SHA256")
            // Application data in every ticket makes it span several records.
            SSL_CTX_set_session_ticket_cb(
                context.sslContext,
                { ssl, _ in
                    let padding = [UInt8](repeating: 7, count: 3000)
                    return SSL_SESSION_set1_ticket_appdata(SSL_get_session(ssl), padding, padding.count)
                }, nil, nil)
            let server = try RawServer(context: context)
            let (channel, handler) = try Self.handshakenClient(client, server: server)

            server.write("answer 1")
            Self.sendLargeTicket(from: server)
            let records = Self.records(of: server.drain())
            #expect(records.count > 6)
            // In one read, so that OpenSSL takes the answer and the ticket's first records together.
            var allButLast = ByteBuffer()
            for var record in records.dropLast() {
                allButLast.writeBuffer(&record)
            }
            try channel.writeInbound(allButLast)
            #expect(try Self.readText(channel) == "answer 1")
            #expect(!handler.usesOwnRecordLayer, "OpenSSL holds the first part of a ticket")
            try channel.writeInbound(records.last!)
            #expect(try Self.readText(channel) == "")
            #expect(!handler.usesOwnRecordLayer, "the last record was not application data")

            server.write("answer 2")
            try channel.writeInbound(server.drain())
            #expect(try Self.readText(channel) == "answer 2")
            #expect(handler.usesOwnRecordLayer)

            // A ticket after the handover, split the same way, is skipped.
            Self.sendLargeTicket(from: server)
            server.write("answer 3")
            for record in Self.records(of: server.drain()) {
                try channel.writeInbound(record)
            }
            #expect(try Self.readText(channel) == "answer 3")
            channel.writeAndFlush(ByteBuffer(string: "request 1"), promise: nil)
            try Self.pump(channel, to: server)
            #expect(server.read().text == "request 1")
            _ = try? channel.finish()
        }
    }

    /// Closes the channel on any error, as the HTTP exchange handler does, and passes the error on.
    private final class ClosesOnError: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
            context.fireErrorCaught(error)
        }
    }

    @Test(arguments: [false, true])
    func aTamperedRecordFailsTheConnectionWithBadRecordMAC(keyUpdateOwed: Bool) async throws {
        try await TrustedClient.with { client in
                let server = try RawServer(context: try Self.tls13ServerContext(client, suite: "TLS_AES_128_GCM_SHA256"))
                let (channel, handler) = try Self.connectedClient(client, server: server)
                #expect(handler.usesOwnRecordLayer)
                #expect(client.context.cachedSessionCount == 1)
                if keyUpdateOwed {
                    // The answer is owed until the next application data: the alert must not carry it.
                    #expect(SSL_key_update(server.ssl, SSL_KEY_UPDATE_REQUESTED) == 1)
                }
                // Two records in one read; the second is tampered with.
                server.write("first")
                server.write("second")
                var records = server.drain()
                let last = records.writerIndex - 1
                records.setInteger(records.getInteger(at: last, as: UInt8.self)! ^ 1, at: last)
                #expect {
                    try channel.writeInbound(records)
                } throws: { error in
                    guard case TLSError.protocolFailure(_, let reason) = error else { return false }
                    return reason.contains("failed to authenticate")
                }
                channel.embeddedEventLoop.run()
                #expect(!channel.isActive)
                #expect(try Self.readText(channel) == "first", "what came before the bad record is delivered")
                #expect(client.context.cachedSessionCount == 0, "the failed connection's session is not offered again")
                // The alert reached the server, under keys it knows, before the connection closed.
                try Self.pump(channel, to: server)
                let failure = server.read()
                #expect(failure.error == SSL_ERROR_SSL)
                #expect(failure.reason == SSL_R_SSLV3_ALERT_BAD_RECORD_MAC)
                _ = try? channel.finish()
        }
    }

    @Test func idleConnectionsToNginxCarryEverySizeOfExchangeAndStillResume() async throws {
        try await TrustedClient.with { client in
            let site = NginxServer.Site(
                name: "records", certificate: try client.authority.issue(dnsNames: ["localhost"]),
                protocols: ["TLSv1.3"])
            let nginx = try await NginxServer.start(sites: [site])
            defer { nginx.stop() }
            let address = try SocketAddress(ipAddress: "127.0.0.1", port: nginx.port(of: "records"))
            func connect() async throws -> HTTPClientConnection {
                try await HTTPClientConnection.connect(
                    to: address, peer: .hostname("localhost"), tlsContext: client.context,
                    on: MultiThreadedEventLoopGroup.singleton, connectTimeout: .seconds(5),
                    handshakeTimeout: .seconds(5))
            }
            func get(_ target: String, on connection: HTTPClientConnection, body: ByteBuffer? = nil) async throws
                -> ByteBuffer
            {
                let request = HTTPClientRequest(
                    method: body == nil ? "GET" : "POST", target: target,
                    headers: [(name: "Host", value: "localhost")], body: body ?? ByteBuffer())
                let response = try await connection.execute(request, timeout: .seconds(5), maxResponseBytes: 1 << 20)
                #expect(response.statusCode == 200)
                return response.body
            }

            let connection = try await connect()
            let first = String(buffer: try await get("/connection", on: connection))
            #expect(try await connection.usesOwnTLSRecordLayer())
            let connectionNumber = first.split(separator: " ").first.map(String.init)
            for round in 1...10 {
                #expect(String(buffer: try await get("/small", on: connection)) == "hello")
                #expect(try await get("/large", on: connection).readableBytes == nginx.largeBodyBytes)
                let posted = ByteBuffer(repeating: UInt8(ascii: "x"), count: 40_000 + round)
                #expect(String(buffer: try await get("/small", on: connection, body: posted)) == "hello")
            }
            let last = String(buffer: try await get("/connection", on: connection))
            #expect(last == "\(connectionNumber ?? "?") 32", "one connection carried every request")
            await connection.close()

            // Freeing OpenSSL's object did not spoil the session: the next connection resumes it.
            let next = try await connect()
            #expect(next.isTLSSessionReused)
            #expect(String(buffer: try await get("/session-reused", on: next)) == "r")
            await next.close()
        }
    }
}
