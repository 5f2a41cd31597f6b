import NIOCore
import NIOHTTP1
import NIOPosix
import Transport

/// An in-process HTTPS/1.1 server on 127.0.0.1 built from `OpenSSLHandler` in server mode and
/// NIO's HTTP server pipeline, with routes that exercise the client's framing and limits.
///
/// Routes: `/count` (requests seen on this connection), `/hello`, `/chunked` (three chunks),
/// `/bytes?N` (N bytes with Content-Length), `/chunked-bytes?N` (N bytes in chunks),
/// `/echo` (the request body), `/target...` (the raw request-target), `/close`
/// (answers with Connection: close), `/silent` (never answers).
final class TestHTTPSServer: Sendable {
    let channel: any Channel

    var port: Int { channel.localAddress?.port ?? 0 }

    var address: SocketAddress {
        get throws { try SocketAddress(ipAddress: "127.0.0.1", port: port) }
    }

    private init(channel: any Channel) {
        self.channel = channel
    }

    static func start(tlsContext: TLSContext, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton)
        async throws
        -> TestHTTPSServer
    {
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(OpenSSLHandler(serverContext: tlsContext))
                    try pipeline.configureHTTPServerPipeline()
                    try pipeline.addHandler(TestRoutesHandler())
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        return TestHTTPSServer(channel: channel)
    }

    /// Runs `body` with a started server and closes its listening socket afterwards.
    static func with<Result>(
        tlsContext: TLSContext,
        _ body: (TestHTTPSServer) async throws -> Result
    ) async throws -> Result {
        let server = try await start(tlsContext: tlsContext)
        do {
            let result = try await body(server)
            try? await server.channel.close()
            return result
        } catch {
            try? await server.channel.close()
            throw error
        }
    }
}

private final class TestRoutesHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private var requestCount = 0
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body.clear()
        case .body(var chunk):
            body.writeBuffer(&chunk)
        case .end:
            requestCount += 1
            if let head { respond(to: head, context: context) }
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let parts = head.uri.split(separator: "?", maxSplits: 1)
        let path = parts.first.map(String.init) ?? ""
        let query = parts.count > 1 ? String(parts[1]) : ""
        switch path {
        case "/count":
            send(status: .ok, body: ByteBuffer(string: String(requestCount)), context: context)
        case "/hello":
            send(status: .ok, body: ByteBuffer(string: "hello"), context: context)
        case "/echo":
            send(status: .ok, body: body, context: context)
        case "/bytes":
            send(status: .ok, body: ByteBuffer(repeating: UInt8(ascii: "x"), count: Int(query) ?? 0), context: context)
        case "/chunked":
            writeChunked(["alpha-", "beta-", "gamma"].map { ByteBuffer(string: $0) }, context: context)
        case "/chunked-bytes":
            let total = Int(query) ?? 0
            let chunks = stride(from: 0, to: total, by: 4096).map {
                ByteBuffer(repeating: UInt8(ascii: "y"), count: min(4096, total - $0))
            }
            writeChunked(chunks, context: context)
        case "/close":
            let headers = HTTPHeaders([("Content-Length", "3"), ("Connection", "close")])
            context.write(
                wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil
            )
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "bye")))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        case "/silent":
            break
        default:
            if path.hasPrefix("/target") {
                send(status: .ok, body: ByteBuffer(string: head.uri), context: context)
            } else {
                send(status: .notFound, body: ByteBuffer(string: "no route for \(head.uri)"), context: context)
            }
        }
    }

    private func send(status: HTTPResponseStatus, body: ByteBuffer, context: ChannelHandlerContext) {
        let headers = HTTPHeaders([("Content-Length", String(body.readableBytes))])
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    /// Without Content-Length, NIO's response encoder frames the body with chunked transfer-coding.
    private func writeChunked(_ chunks: [ByteBuffer], context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok))), promise: nil)
        for chunk in chunks {
            context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(chunk))), promise: nil)
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
}
