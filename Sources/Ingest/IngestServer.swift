#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// The ingest listener: HTTP/1.1 with keep-alive on loopback TCP or a unix socket,
/// handing each complete request to `IngestAPI` off the event loop.
///
/// Every refusal is a Matrix error, bytes that are not HTTP/1.1 included, and no connection
/// lasts forever: `IngestConnectionState` holds the deadlines (`ingest.idle_timeout_ms`
/// between requests, `ingest.request_timeout_ms` for a whole request).
public final class IngestServer: Sendable {
    private let channel: any Channel
    /// The TCP port bound (the one the kernel chose when asked for port 0); nil for a unix socket.
    public let boundPort: Int?

    private init(channel: any Channel, boundPort: Int?) {
        self.channel = channel
        self.boundPort = boundPort
    }

    /// Listens on `host:port`, or on the unix socket `unixPath` when it is given.
    ///
    /// - Parameters:
    ///   - idleTimeout: how long a connection may wait for the first byte of its next request.
    ///   - requestTimeout: how long a request may take to arrive whole, from its first byte.
    public static func bind(
        host: String = "127.0.0.1", port: Int = 0, unixPath: String? = nil,
        api: IngestAPI, maxBodyBytes: Int, idleTimeout: TimeAmount, requestTimeout: TimeAmount,
        group: any EventLoopGroup
    ) async throws -> IngestServer {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // A client that closes its side after a request still gets the answer, and a request
            // cut short by the close gets an error saying so.
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handlers = channel.pipeline.syncOperations
                    try handlers.addHandler(IngestBytesObserver())
                    try handlers.configureHTTPServerPipeline(withErrorHandling: false)
                    try handlers.addHandler(IngestHTTPHandler(
                        api: api, maxBodyBytes: maxBodyBytes, idleTimeout: idleTimeout, requestTimeout: requestTimeout))
                }
            }
        if let unixPath {
            let channel = try await bootstrap.bind(unixDomainSocketPath: unixPath, cleanupExistingSocketFile: true).get()
            // The homeserver runs as another user, in southbridge's group: the owner's umask
            // would leave the socket writable by southbridge alone.
            guard chmod(unixPath, IngestServer.unixSocketMode) == 0 else {
                let error = errno
                try? await channel.close()
                throw IngestServerError.socketPermissions(path: unixPath, errno: error)
            }
            return IngestServer(channel: channel, boundPort: nil)
        }
        let channel = try await bootstrap.bind(host: host, port: port).get()
        return IngestServer(channel: channel, boundPort: channel.localAddress?.port ?? port)
    }

    /// Owner and group read and write: the homeserver's user connects as a member of the group.
    public static let unixSocketMode: mode_t = 0o660

    /// Stops accepting connections; requests already being handled finish.
    public func close() async {
        try? await channel.close()
    }
}

public enum IngestServerError: Error, CustomStringConvertible {
    case socketPermissions(path: String, errno: Int32)

    public var description: String {
        switch self {
        case .socketPermissions(let path, let code):
            "cannot make the ingest socket \(path) group-writable: errno \(code)"
        }
    }
}

/// Inbound user event: bytes arrived from the client, before the HTTP decoder buffers them.
struct IngestBytesReceived {}

/// First in the pipeline: tells `IngestHTTPHandler` when bytes arrive, which the HTTP decoder
/// does not while a request head is incomplete, so that a request's time starts at its first byte.
final class IngestBytesObserver: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireUserInboundEventTriggered(IngestBytesReceived())
        context.fireChannelRead(data)
    }
}

final class IngestHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let api: IngestAPI
    private let maxBodyBytes: Int
    private let idleTimeout: TimeAmount
    private let requestTimeout: TimeAmount
    private var connection: IngestConnectionState?
    private var timer: Scheduled<Void>?
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var bodyTooLarge = false
    private var refusal: IngestError?

    init(api: IngestAPI, maxBodyBytes: Int, idleTimeout: TimeAmount, requestTimeout: TimeAmount) {
        self.api = api
        self.maxBodyBytes = maxBodyBytes
        self.idleTimeout = idleTimeout
        self.requestTimeout = requestTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IngestBytesReceived {
            apply(connection?.bytesReceived(now: .now()), context: context)
        } else if case .inputClosed? = event as? ChannelEvent {
            apply(connection?.clientClosedInput(), context: context)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parserError = error as? HTTPParserError, connection?.hasEnded == false else {
            context.close(promise: nil)
            return
        }
        // The decoder stops at the first error, so nothing more of this request will come.
        head = nil
        body = []
        apply(connection?.failed(), context: context)
        write(IngestResponse(IngestError.malformedRequest(parserError)), keepAlive: false, version: .http1_1, context: context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let requestHead):
            apply(connection?.headReceived(now: .now()), context: context)
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
            apply(connection?.requestReceived(), context: context)
            if let early = earlyRefusal {
                write(IngestResponse(early), keepAlive: false, version: requestHead.version, context: context)
                return
            }
            let keepAlive = requestHead.isKeepAlive
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

    /// The answer decided from the head or the body's size alone: a bad token, or too large.
    private var earlyRefusal: IngestError? {
        refusal ?? (bodyTooLarge ? IngestError.tooLarge(limit: maxBodyBytes) : nil)
    }

    private func start(context: ChannelHandlerContext) {
        guard connection == nil else { return }
        let state = IngestConnectionState(idleTimeout: idleTimeout, requestTimeout: requestTimeout, now: .now())
        connection = state
        if let deadline = state.firstDeadline { apply(.arm(deadline), context: context) }
    }

    private func apply(_ action: IngestConnectionState.Action?, context: ChannelHandlerContext) {
        switch action {
        case nil, .none?:
            break
        case .arm(let deadline)?:
            timer?.cancel()
            timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
                apply(connection?.timerFired(now: .now()), context: context)
            }
        case .cancelTimer?:
            timer?.cancel()
            timer = nil
        case .close?:
            timer?.cancel()
            timer = nil
            context.close(promise: nil)
        case .refuseSlowRequest?:
            timer = nil
            let version = head?.version ?? .http1_1
            let error = earlyRefusal ?? IngestError.requestTimeout(requestTimeout)
            head = nil
            body = []
            write(IngestResponse(error), keepAlive: false, version: version, context: context)
        }
    }

    private func write(_ response: IngestResponse, keepAlive requested: Bool, version: HTTPVersion, context: ChannelHandlerContext) {
        // The state changes before the write: finishing the answer can deliver the next
        // pipelined request at once, and that request must find the connection receiving.
        let keepAlive = requested && connection?.mayKeepAlive == true
        apply(connection?.responded(keepAlive: keepAlive, now: .now()), context: context)
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
