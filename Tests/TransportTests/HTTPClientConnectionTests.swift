import Glibc
import NIOCore
import NIOPosix
import Testing
import Transport

/// The client against the in-process server (`OpenSSLHandler` in server mode + NIO's HTTP server).
@Suite(.timeLimit(.minutes(1)))
struct HTTPClientConnectionTests {
    private static func get(_ target: String) -> HTTPClientRequest {
        HTTPClientRequest(method: "GET", target: target, headers: [(name: "Host", value: "localhost")])
    }

    private func connect(to server: TestHTTPSServer, context: TLSContext, peer: TLSPeer = .hostname("localhost"))
        async throws -> HTTPClientConnection
    {
        try await HTTPClientConnection.connect(
            to: try server.address, peer: peer, tlsContext: context, on: MultiThreadedEventLoopGroup.singleton,
            connectTimeout: .seconds(5), handshakeTimeout: .seconds(5))
    }

    @Test func twoRequestsShareOneKeepAliveConnection() async throws {
        try await TrustedClient.with { client in
            try await TestHTTPSServer.with(tlsContext: try client.serverContext()) { server in
                let connection = try await connect(to: server, context: client.context)
                #expect(connection.negotiatedProtocol == "http/1.1")
                let first = try await connection.execute(
                    Self.get("/count"), timeout: .seconds(5), maxResponseBytes: 4096)
                #expect(connection.isReusable)
                let second = try await connection.execute(
                    Self.get("/count"), timeout: .seconds(5), maxResponseBytes: 4096)
                #expect(String(buffer: first.body) == "1")
                #expect(String(buffer: second.body) == "2")
                #expect(second.firstHeaderValue("content-length") == "1")
                #expect(connection.isReusable)
                await connection.close()
                #expect(!connection.isReusable)
            }
        }
    }

    /// A caller that prefers the loop's executor gets its connection on that loop, and its first
    /// request leaves together with the handshake's last flight.
    @Test(arguments: [TLSVersion.tls12, .tls13])
    func callerOnAnEventLoopKeepsItsConnectionOnThatLoop(_ version: TLSVersion) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 3)
        let loop = group.next()
        do {
            try await TrustedClient.with { client in
                let serverContext = try client.serverContext(minimumVersion: version, maximumVersion: version)
                try await TestHTTPSServer.with(tlsContext: serverContext) { server in
                    try await withTaskExecutorPreference(EventLoopTaskExecutor(loop)) {
                        let connection = try await HTTPClientConnection.connect(
                            to: try server.address, peer: .hostname("localhost"), tlsContext: client.context,
                            on: group, connectTimeout: .seconds(5), handshakeTimeout: .seconds(5))
                        #expect(connection.eventLoop === loop)
                        #expect(loop.inEventLoop)
                        for expected in 1...3 {
                            let response = try await connection.execute(
                                Self.get("/count"), timeout: .seconds(5), maxResponseBytes: 1024)
                            #expect(String(buffer: response.body) == "\(expected)")
                        }
                        #expect(connection.isReusable)
                        await connection.close()
                        #expect(!connection.isReusable)
                    }
                }
            }
        } catch {
            try await group.shutdownGracefully()
            throw error
        }
        try await group.shutdownGracefully()
    }

    @Test func chunkedResponseIsReassembled() async throws {
        try await TrustedClient.with { client in
            try await TestHTTPSServer.with(tlsContext: try client.serverContext()) { server in
                let connection = try await connect(to: server, context: client.context)
                let response = try await connection.execute(
                    Self.get("/chunked"), timeout: .seconds(5), maxResponseBytes: 4096)
                #expect(response.statusCode == 200)
                #expect(response.firstHeaderValue("Transfer-Encoding") == "chunked")
                #expect(String(buffer: response.body) == "alpha-beta-gamma")
                #expect(connection.isReusable)
                let after = try await connection.execute(
                    Self.get("/hello"), timeout: .seconds(5), maxResponseBytes: 4096)
                #expect(String(buffer: after.body) == "hello")
                await connection.close()
            }
        }
    }

    @Test func largeBodiesArriveWhole() async throws {
        try await TrustedClient.with { client in
            try await TestHTTPSServer.with(tlsContext: try client.serverContext()) { server in
                let connection = try await connect(to: server, context: client.context)
                for target in ["/bytes?300000", "/chunked-bytes?300000"] {
                    let response = try await connection.execute(
                        Self.get(target), timeout: .seconds(5), maxResponseBytes: 1 << 20)
                    #expect(response.body.readableBytes == 300_000, "\(target)")
                }
                #expect(connection.isReusable)
                await connection.close()
            }
        }
    }

    @Test(arguments: ["/bytes?100000", "/chunked-bytes?100000"])
    func oversizedResponseFailsAndRetiresTheConnection(_ target: String) async throws {
        try await TrustedClient.with { client in
            try await TestHTTPSServer.with(tlsContext: try client.serverContext()) { server in
                let connection = try await connect(to: server, context: client.context)
                let error = await #expect(throws: HTTPClientError.self) {
                    _ = try await connection.execute(Self.get(target), timeout: .seconds(5), maxResponseBytes: 10_000)
                }
                #expect(error == .responseTooLarge(limit: 10_000))
                #expect(error?.description == "response exceeded the limit of 10000 bytes")
                #expect(!connection.isReusable)
                let next = await #expect(throws: HTTPClientError.self) {
                    _ = try await connection.execute(Self.get("/hello"), timeout: .seconds(5), maxResponseBytes: 10_000)
                }
                #expect(next == .connectionNotReusable(address: "127.0.0.1:\(server.port)"))
            }
        }
    }

    @Test func requestTargetIsSentVerbatim() async throws {
        try await TrustedClient.with { client in
            try await TestHTTPSServer.with(tlsContext: try client.serverContext()) { server in
                let connection = try await connect(to: server, context: client.context)
                let target = "/target/_matrix/federation/v1/send/1696%2F1?x=%20y&z=%E2%9C%93"
                let response = try await connection.execute(
                    Self.get(target), timeout: .seconds(5), maxResponseBytes: 4096)
                #expect(String(buffer: response.body) == target)
                await connection.close()
            }
        }
    }

    @Test func requestBodyIsSentWithContentLength() async throws {
        try await TrustedClient.with { client in
            try await TestHTTPSServer.with(tlsContext: try client.serverContext()) { server in
                let connection = try await connect(to: server, context: client.context)
                let body = Array(#"{"pdus":[],"edus":[]}"#.utf8)
                let request = HTTPClientRequest(
                    method: "PUT", target: "/echo",
                    headers: [(name: "Host", value: "localhost"), (name: "Content-Type", value: "application/json")],
                    body: body)
                let response = try await connection.execute(request, timeout: .seconds(5), maxResponseBytes: 4096)
                #expect(response.bodyBytes == body)
                let empty = try await connection.execute(
                    HTTPClientRequest(method: "POST", target: "/echo", headers: [(name: "Host", value: "localhost")]),
                    timeout: .seconds(5), maxResponseBytes: 4096)
                #expect(empty.body.readableBytes == 0)
                #expect(connection.isReusable)
                await connection.close()
            }
        }
    }

    @Test func connectionCloseFromTheServerRetiresTheConnection() async throws {
        try await TrustedClient.with { client in
            try await TestHTTPSServer.with(tlsContext: try client.serverContext()) { server in
                let connection = try await connect(to: server, context: client.context)
                let response = try await connection.execute(
                    Self.get("/close"), timeout: .seconds(5), maxResponseBytes: 4096)
                #expect(String(buffer: response.body) == "bye")
                #expect(!connection.isReusable)
            }
        }
    }

    @Test func connectionCloseFromTheRequestRetiresTheConnection() async throws {
        try await TrustedClient.with { client in
            try await TestHTTPSServer.with(tlsContext: try client.serverContext()) { server in
                let connection = try await connect(to: server, context: client.context)
                var request = Self.get("/hello")
                request.headers.append((name: "Connection", value: "close"))
                let response = try await connection.execute(request, timeout: .seconds(5), maxResponseBytes: 4096)
                #expect(String(buffer: response.body) == "hello")
                #expect(!connection.isReusable)
            }
        }
    }

    @Test func requestTimeoutFailsAndRetiresTheConnection() async throws {
        try await TrustedClient.with { client in
            try await TestHTTPSServer.with(tlsContext: try client.serverContext()) { server in
                let connection = try await connect(to: server, context: client.context)
                let error = await #expect(throws: HTTPClientError.self) {
                    _ = try await connection.execute(
                        Self.get("/silent"), timeout: .milliseconds(200), maxResponseBytes: 4096)
                }
                #expect(error == .requestTimeout(method: "GET", target: "/silent", timeout: .milliseconds(200)))
                #expect(error?.description == "GET /silent got no complete response within 200 ms")
                #expect(!connection.isReusable)
            }
        }
    }

    @Test func cancellingTheWaitingTaskFailsTheRequestAndRetiresTheConnection() async throws {
        try await TrustedClient.with { client in
            try await TestHTTPSServer.with(tlsContext: try client.serverContext()) { server in
                let connection = try await connect(to: server, context: client.context)
                let waiting = Task {
                    try await connection.execute(Self.get("/silent"), timeout: .seconds(30), maxResponseBytes: 4096)
                }
                waiting.cancel()
                let result = await waiting.result
                #expect(throws: HTTPClientError.cancelled) { try result.get() }
                #expect(!connection.isReusable)
            }
        }
    }

    @Test func invalidRequestIsRefusedBeforeSendingAndKeepsTheConnection() async throws {
        try await TrustedClient.with { client in
            try await TestHTTPSServer.with(tlsContext: try client.serverContext()) { server in
                let connection = try await connect(to: server, context: client.context)
                let error = await #expect(throws: HTTPClientError.self) {
                    _ = try await connection.execute(Self.get("/a b"), timeout: .seconds(5), maxResponseBytes: 4096)
                }
                #expect(
                    error == .invalidRequest(reason: "target \"/a b\" must be non-empty visible ASCII without spaces"))
                var injected = Self.get("/hello")
                injected.headers.append((name: "X-Evil", value: "a\r\nInjected: yes"))
                await #expect(
                    throws: HTTPClientError.invalidRequest(reason: "headers[1] X-Evil value contains CR, LF or NUL")
                ) {
                    _ = try await connection.execute(injected, timeout: .seconds(5), maxResponseBytes: 4096)
                }
                #expect(connection.isReusable)
                await connection.close()
            }
        }
    }

    @Test(arguments: [TLSVersion.tls12, .tls13])
    func secondConnectionResumesTheTLSSession(_ version: TLSVersion) async throws {
        try await TrustedClient.with { client in
            let serverContext = try client.serverContext(minimumVersion: version, maximumVersion: version)
            try await TestHTTPSServer.with(tlsContext: serverContext) { server in
                let first = try await connect(to: server, context: client.context)
                #expect(!first.isTLSSessionReused)
                #expect(first.tlsProtocolVersion == (version == .tls13 ? "TLSv1.3" : "TLSv1.2"))
                _ = try await first.execute(Self.get("/hello"), timeout: .seconds(5), maxResponseBytes: 4096)
                await first.close()
                #expect(client.context.cachedSessionCount == 1)

                let second = try await connect(to: server, context: client.context)
                #expect(second.isTLSSessionReused)
                let response = try await second.execute(
                    Self.get("/hello"), timeout: .seconds(5), maxResponseBytes: 4096)
                #expect(String(buffer: response.body) == "hello")
                await second.close()

                let otherPeer = try await connect(to: server, context: client.context, peer: .ipAddress("127.0.0.1"))
                #expect(!otherPeer.isTLSSessionReused, "sessions are kept per peer identity")
                await otherPeer.close()
            }
        }
    }

    @Test func connectionRefusedNamesTheAddress() async throws {
        // A socket that is bound but not listening holds the port, so nothing else can take it and
        // connecting is refused.
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(descriptor >= 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { generic in
                bind(descriptor, generic, length) == 0 && getsockname(descriptor, generic, &length) == 0
            }
        }
        #expect(bound)
        let port = Int(UInt16(bigEndian: address.sin_port))
        let context = try TLSContext.client(caFile: nil)
        let error = await #expect(throws: HTTPClientError.self) {
            _ = try await HTTPClientConnection.connect(
                to: try SocketAddress(ipAddress: "127.0.0.1", port: port), peer: .hostname("localhost"),
                tlsContext: context, on: MultiThreadedEventLoopGroup.singleton,
                connectTimeout: .seconds(5), handshakeTimeout: .seconds(5))
        }
        #expect(error == .connectionRefused(address: "127.0.0.1:\(port)"))
        #expect(error?.description == "connection to 127.0.0.1:\(port) refused")
    }

    @Test func silentServerFailsTheHandshakeWithATimeout() async throws {
        let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = listener.localAddress?.port ?? 0
        let context = try TLSContext.client(caFile: nil)
        let error = await #expect(throws: HTTPClientError.self) {
            _ = try await HTTPClientConnection.connect(
                to: try SocketAddress(ipAddress: "127.0.0.1", port: port), peer: .hostname("localhost"),
                tlsContext: context, on: MultiThreadedEventLoopGroup.singleton,
                connectTimeout: .seconds(5), handshakeTimeout: .milliseconds(150))
        }
        #expect(error == .tlsHandshakeTimeout(address: "127.0.0.1:\(port)", timeout: .milliseconds(150)))
        try await listener.close()
    }

    @Test func plaintextServerFailsTheHandshakeWithOpenSSLsReason() async throws {
        let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(PlaintextHTTPResponder())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = listener.localAddress?.port ?? 0
        let context = try TLSContext.client(caFile: nil)
        let error = await #expect(throws: HTTPClientError.self) {
            _ = try await HTTPClientConnection.connect(
                to: try SocketAddress(ipAddress: "127.0.0.1", port: port), peer: .hostname("plain.example"),
                tlsContext: context, on: MultiThreadedEventLoopGroup.singleton,
                connectTimeout: .seconds(5), handshakeTimeout: .seconds(5))
        }
        guard case .tls(.handshakeFailed(let peer, let reason)) = error else {
            Issue.record("expected a handshake failure, got \(String(describing: error))")
            return
        }
        #expect(peer == "plain.example")
        #expect(reason.contains("wrong version number"), "\(reason)")
        try await listener.close()
    }
}

/// Answers whatever arrives with a plaintext HTTP error, as a server without TLS on the port would.
private final class PlaintextHTTPResponder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let response = ByteBuffer(string: "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        context.writeAndFlush(wrapOutboundOut(response), promise: nil)
    }
}
