import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// The ingest listener: HTTP/1.1 with keep-alive on loopback TCP or a unix socket,
/// handing each complete request to `IngestAPI` off the event loop.
public final class IngestServer: Sendable {
    private let channel: any Channel
    /// The TCP port bound (the one the kernel chose when asked for port 0); nil for a unix socket.
    public let boundPort: Int?

    private init(channel: any Channel, boundPort: Int?) {
        self.channel = channel
        self.boundPort = boundPort
    }

    /// Listens on `host:port`, or on the unix socket `unixPath` when it is given.
    public static func bind(
        host: String = "127.0.0.1", port: Int = 0, unixPath: String? = nil,
        api: IngestAPI, maxBodyBytes: Int, group: any EventLoopGroup
    ) async throws -> IngestServer {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(IngestHTTPHandler(api: api, maxBodyBytes: maxBodyBytes))
                }
            }
        if let unixPath {
            let channel = try await bootstrap.bind(unixDomainSocketPath: unixPath, cleanupExistingSocketFile: true).get()
            return IngestServer(channel: channel, boundPort: nil)
        }
        let channel = try await bootstrap.bind(host: host, port: port).get()
        return IngestServer(channel: channel, boundPort: channel.localAddress?.port ?? port)
    }

    /// Stops accepting connections; requests already being handled finish.
    public func close() async {
        try? await channel.close()
    }
}

final class IngestHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let api: IngestAPI
    private let maxBodyBytes: Int
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var bodyTooLarge = false
    private var refusal: IngestError?

    init(api: IngestAPI, maxBodyBytes: Int) {
        self.api = api
        self.maxBodyBytes = maxBodyBytes
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let requestHead):
            head = requestHead
            body = []
            bodyTooLarge = false
            refusal = nil
            let path = requestHead.uri.firstIndex(of: "?").map { String(requestHead.uri[..<$0]) } ?? requestHead.uri
            // Refuse a bad token before buffering a body of up to ingest.max_body_bytes.
            refusal = api.refusalBeforeBody(path: path, authorization: requestHead.headers.first(name: "authorization"))
            if let length = requestHead.headers.first(name: "content-length").flatMap(Int.init), length > maxBodyBytes {
                bodyTooLarge = true
            }
        case .body(var chunk):
            guard !bodyTooLarge, refusal == nil else { return }
            if body.count + chunk.readableBytes > maxBodyBytes {
                bodyTooLarge = true
                body = []
            } else {
                body.append(contentsOf: chunk.readBytes(length: chunk.readableBytes) ?? [])
            }
        case .end:
            guard let requestHead = head else { return }
            head = nil
            let keepAlive = requestHead.isKeepAlive && !bodyTooLarge && refusal == nil
            if let refusal {
                write(IngestResponse(refusal), keepAlive: false, version: requestHead.version, context: context)
                return
            }
            if bodyTooLarge {
                write(IngestResponse(IngestError.tooLarge(limit: maxBodyBytes)), keepAlive: false, version: requestHead.version, context: context)
                return
            }
            let target = requestHead.uri
            let questionMark = target.firstIndex(of: "?")
            let path = questionMark.map { String(target[..<$0]) } ?? target
            let query = questionMark.map { IngestRequest.parseQuery(target[target.index(after: $0)...]) } ?? [:]
            let request = IngestRequest(
                method: requestHead.method.rawValue, path: path, query: query,
                authorization: requestHead.headers.first(name: "authorization"), body: body)
            body = []
            let api = self.api
            let promise = context.eventLoop.makePromise(of: IngestResponse.self)
            // Above the sender's priority: a homeserver waits for this answer, and its jobs
            // (and the outbox's resumption of them) must not queue behind a fan-out's.
            Task(priority: .userInitiated) { promise.succeed(await api.handle(request)) }
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            promise.futureResult.whenSuccess { response in
                let (handler, context) = loopBound.value
                handler.write(response, keepAlive: keepAlive, version: requestHead.version, context: context)
            }
        }
    }

    private func write(_ response: IngestResponse, keepAlive: Bool, version: HTTPVersion, context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: response.contentType)
        headers.add(name: "content-length", value: String(response.body.count))
        if !keepAlive { headers.add(name: "connection", value: "close") }
        let head = HTTPResponseHead(version: version, status: HTTPResponseStatus(statusCode: response.status), headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: response.body)))), promise: nil)
        let done = context.writeAndFlushPromise(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            done.futureResult.whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
        }
    }
}

extension ChannelHandlerContext {
    fileprivate func writeAndFlushPromise(_ data: NIOAny) -> EventLoopPromise<Void> {
        let promise = eventLoop.makePromise(of: Void.self)
        writeAndFlush(data, promise: promise)
        return promise
    }
}
