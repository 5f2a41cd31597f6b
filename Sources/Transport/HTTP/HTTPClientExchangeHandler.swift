import NIOCore
import NIOHTTP1

/// One request handed to the channel, with the promise its response completes.
struct HTTPClientExchange: Sendable {
    var request: HTTPClientRequest
    var timeout: TimeAmount
    var maxResponseBytes: Int
    var promise: EventLoopPromise<HTTPClientExchangeResult>
}

/// A complete response and whether the connection may carry another request afterwards.
struct HTTPClientExchangeResult: Sendable {
    var response: HTTPClientResponse
    var connectionReusable: Bool
}

/// Outbound user event: the caller gave up on the request in flight.
struct HTTPClientExchangeCancellation: Sendable {}

/// The last handler of a client connection's pipeline: waits for the TLS handshake, then runs
/// one request/response exchange at a time, enforcing the timeout and the response size limit.
///
/// Any failure fails the outstanding promise and closes the channel, so a connection is either
/// idle and usable or gone.
final class HTTPClientExchangeHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientExchange
    typealias OutboundOut = HTTPClientRequestPart

    private enum State {
        case handshaking
        case idle
        case awaitingHead
        case receivingBody
        case closed
    }

    private struct InFlight {
        var promise: EventLoopPromise<HTTPClientExchangeResult>
        var method: String
        var target: String
        var timeout: TimeAmount
        var maxResponseBytes: Int
        var requestAsksToClose: Bool
        var timeoutTask: Scheduled<Void>?
        var head: HTTPResponseHead?
        var receivedBytes: Int
    }

    private let address: String
    private let handshakeTimeout: TimeAmount
    private var handshakePromise: EventLoopPromise<TLSHandshakeCompleted>?
    private var handshakeTimeoutTask: Scheduled<Void>?
    private var state = State.handshaking
    private var inFlight: InFlight?
    private var responseBody: ByteBuffer?

    init(address: String, handshakePromise: EventLoopPromise<TLSHandshakeCompleted>, handshakeTimeout: TimeAmount) {
        self.address = address
        self.handshakePromise = handshakePromise
        self.handshakeTimeout = handshakeTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive {
            startHandshakeTimer(context: context)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        finish(with: .connectionClosed(address: address))
    }

    func channelActive(context: ChannelHandlerContext) {
        startHandshakeTimer(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(with: .connectionClosed(address: address))
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let completed = event as? TLSHandshakeCompleted else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        guard state == .handshaking else { return }
        state = .idle
        handshakeTimeoutTask?.cancel()
        handshakeTimeoutTask = nil
        let promise = handshakePromise
        handshakePromise = nil
        promise?.succeed(completed)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard state != .closed else { return }
        finish(with: classify(error))
        context.close(promise: nil)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let exchange = unwrapOutboundIn(data)
        guard state == .idle else {
            let error = HTTPClientError.connectionNotReusable(address: address)
            exchange.promise.fail(error)
            promise?.fail(error)
            return
        }
        let request = exchange.request
        var headers = HTTPHeaders(request.headers.map { ($0.name, $0.value) })
        if !request.hasHeader("content-length") && !request.hasHeader("transfer-encoding")
            && (request.body.readableBytes > 0 || !Self.methodsWithoutBody.contains(request.method))
        {
            headers.add(name: "Content-Length", value: String(request.body.readableBytes))
        }
        let head = HTTPRequestHead(
            version: .http1_1, method: HTTPMethod(rawValue: request.method), uri: request.target, headers: headers)

        let loop = context.eventLoop.assumeIsolated()
        let timeoutTask = loop.scheduleTask(in: exchange.timeout) {
            self.requestTimedOut(context: context)
        }
        inFlight = InFlight(
            promise: exchange.promise,
            method: request.method,
            target: request.target,
            timeout: exchange.timeout,
            maxResponseBytes: exchange.maxResponseBytes,
            requestAsksToClose: request.asksToClose,
            timeoutTask: timeoutTask,
            head: nil,
            receivedBytes: 0)
        state = .awaitingHead
        promise?.succeed()

        let onWriteFailure: (any Error) -> Void = { error in
            guard self.state == .awaitingHead || self.state == .receivingBody else { return }
            self.finish(with: self.classify(error))
            context.close(promise: nil)
        }
        context.write(wrapOutboundOut(.head(head))).assumeIsolated().whenFailure(onWriteFailure)
        if request.body.readableBytes > 0 {
            context.write(wrapOutboundOut(.body(.byteBuffer(request.body)))).assumeIsolated().whenFailure(
                onWriteFailure)
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenFailure(onWriteFailure)
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        guard event is HTTPClientExchangeCancellation else {
            context.triggerUserOutboundEvent(event, promise: promise)
            return
        }
        promise?.succeed()
        guard state != .closed else { return }
        finish(with: .cancelled)
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            receive(head: head, context: context)
        case .body(var chunk):
            guard state == .receivingBody, var exchange = inFlight else { return }
            exchange.receivedBytes += chunk.readableBytes
            inFlight = exchange
            guard exchange.receivedBytes <= exchange.maxResponseBytes else {
                failTooLarge(exchange, context: context)
                return
            }
            responseBody!.writeBuffer(&chunk)
        case .end:
            guard state == .receivingBody, let exchange = inFlight, let head = exchange.head else { return }
            exchange.timeoutTask?.cancel()
            let reusable = head.isKeepAlive && !exchange.requestAsksToClose
            let response = HTTPClientResponse(
                statusCode: Int(head.status.code),
                headers: head.headers.map { (name: $0.name, value: $0.value) },
                body: responseBody ?? ByteBuffer())
            inFlight = nil
            responseBody = nil
            state = reusable ? .idle : .closed
            exchange.promise.succeed(HTTPClientExchangeResult(response: response, connectionReusable: reusable))
            if !reusable {
                context.close(promise: nil)
            }
        }
    }

    private func receive(head: HTTPResponseHead, context: ChannelHandlerContext) {
        // Parts decoded from the same read can still arrive after a failure closed the channel.
        guard state != .closed else { return }
        guard state == .awaitingHead, var exchange = inFlight else {
            finish(
                with: .malformedResponse(address: address, reason: "response received without an outstanding request"))
            context.close(promise: nil)
            return
        }
        exchange.head = head
        // The status line and header fields count against the limit along with the body.
        exchange.receivedBytes = head.headers.reduce(16) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 }
        inFlight = exchange
        let declaredLength = head.headers.first(name: "content-length").flatMap { Int($0) }.map { max(0, $0) }
        if exchange.receivedBytes > exchange.maxResponseBytes
            || (declaredLength ?? 0) > exchange.maxResponseBytes - exchange.receivedBytes
        {
            failTooLarge(exchange, context: context)
            return
        }
        state = .receivingBody
        responseBody = context.channel.allocator.buffer(
            capacity: min(declaredLength ?? 1024, exchange.maxResponseBytes))
    }

    private func failTooLarge(_ exchange: InFlight, context: ChannelHandlerContext) {
        finish(with: .responseTooLarge(limit: exchange.maxResponseBytes))
        context.close(promise: nil)
    }

    private func requestTimedOut(context: ChannelHandlerContext) {
        guard let exchange = inFlight else { return }
        finish(with: .requestTimeout(method: exchange.method, target: exchange.target, timeout: exchange.timeout))
        context.close(promise: nil)
    }

    private func startHandshakeTimer(context: ChannelHandlerContext) {
        guard state == .handshaking, handshakeTimeoutTask == nil else { return }
        let timeout = handshakeTimeout
        handshakeTimeoutTask = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            guard self.state == .handshaking else { return }
            self.finish(with: .tlsHandshakeTimeout(address: self.address, timeout: timeout))
            context.close(promise: nil)
        }
    }

    /// Moves to `closed`, failing whatever was still waiting with `error`.
    private func finish(with error: HTTPClientError) {
        state = .closed
        handshakeTimeoutTask?.cancel()
        handshakeTimeoutTask = nil
        if let promise = handshakePromise {
            handshakePromise = nil
            promise.fail(error)
        }
        if let exchange = inFlight {
            inFlight = nil
            responseBody = nil
            exchange.timeoutTask?.cancel()
            exchange.promise.fail(error)
        }
    }

    private func classify(_ error: any Error) -> HTTPClientError {
        HTTPClientError(error, address: address)
    }

    private static let methodsWithoutBody: Set<String> = ["GET", "HEAD", "DELETE", "OPTIONS"]
}
