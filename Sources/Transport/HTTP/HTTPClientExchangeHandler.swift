import NIOCore

/// One request handed to the channel, with the continuation of the task waiting for its response.
///
/// The handler that takes the exchange resumes the continuation exactly once, on the event loop.
struct HTTPClientExchange: Sendable {
    var request: HTTPClientRequest
    var timeout: TimeAmount
    var maxResponseBytes: Int
    var continuation: CheckedContinuation<Result<HTTPClientExchangeResult, HTTPClientError>, Never>
}

/// A complete response and whether the connection may carry another request afterwards.
struct HTTPClientExchangeResult: Sendable {
    var response: HTTPClientResponse
    var connectionReusable: Bool
}

/// An open channel whose TLS handshake verified the peer: what `HTTPClientConnection.connect` waits for.
struct HTTPClientChannelReady: Sendable {
    var channel: any Channel
    var handshake: TLSHandshakeCompleted
}

/// Outbound user event: the caller gave up on the request in flight.
struct HTTPClientExchangeCancellation: Sendable {}

/// The HTTP/1.1 end of a client connection, right after `OpenSSLHandler`: waits for the TLS
/// handshake, then runs one request/response exchange at a time over the plaintext, enforcing
/// the timeout and the response size limit.
///
/// Requests are written as one buffer each; responses are read by `HTTPResponseParser`. Any
/// failure resumes the waiting caller with the error and closes the channel, so a connection is
/// either idle and usable or gone. One timer serves every request on the connection: it is
/// scheduled for the earliest deadline and, when it fires early for a later request, moves on to
/// that request's deadline, so a keep-alive request schedules nothing.
final class HTTPClientExchangeHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = HTTPClientExchange
    typealias OutboundOut = ByteBuffer

    private enum State {
        case handshaking
        case idle
        case awaitingHead
        case receivingBody
        case closed
    }

    private struct InFlight {
        var continuation: CheckedContinuation<Result<HTTPClientExchangeResult, HTTPClientError>, Never>
        var method: String
        var target: String
        var timeout: TimeAmount
        var deadline: NIODeadline
        var maxResponseBytes: Int
        var requestAsksToClose: Bool
        var head: HTTPResponseParser.Head?
    }

    private let address: String
    private let handshakeTimeout: TimeAmount
    private var readyPromise: EventLoopPromise<HTTPClientChannelReady>?
    /// Whether TCP connected: before that, the connect attempt itself reports failures.
    private var wasActive = false
    private var handshakeTimeoutTask: Scheduled<Void>?
    private var requestTimer: Scheduled<Void>?
    private var requestTimerDeadline = NIODeadline.distantFuture
    private var state = State.handshaking
    private var inFlight: InFlight?
    private var parser = HTTPResponseParser()
    /// Received bytes the parser could not use yet (an incomplete line).
    private var unparsed: ByteBuffer?
    private var responseBody: ByteBuffer?

    init(address: String, readyPromise: EventLoopPromise<HTTPClientChannelReady>, handshakeTimeout: TimeAmount) {
        self.address = address
        self.readyPromise = readyPromise
        self.handshakeTimeout = handshakeTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive {
            wasActive = true
            startHandshakeTimer(context: context)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        finish(with: .connectionClosed(address: address))
    }

    func channelActive(context: ChannelHandlerContext) {
        wasActive = true
        startHandshakeTimer(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        // A body delimited by the connection closing ends here; `OpenSSLHandler` reports a close
        // without close_notify as an error first, so a truncated body never gets this far.
        if state == .receivingBody, case .end = parser.connectionClosed() {
            completeResponse(context: context)
        }
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
        let promise = readyPromise
        readyPromise = nil
        promise?.succeed(HTTPClientChannelReady(channel: context.channel, handshake: completed))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard state != .closed else { return }
        finish(with: HTTPClientError(error, address: address))
        context.close(promise: nil)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let exchange = unwrapOutboundIn(data)
        // Taking the exchange makes this handler the one to resume its continuation.
        promise?.succeed()
        guard state == .idle else {
            exchange.continuation.resume(returning: .failure(.connectionNotReusable(address: address)))
            return
        }
        let request = exchange.request
        let deadline = NIODeadline.now() + exchange.timeout
        inFlight = InFlight(
            continuation: exchange.continuation,
            method: request.method,
            target: request.target,
            timeout: exchange.timeout,
            deadline: deadline,
            maxResponseBytes: exchange.maxResponseBytes,
            requestAsksToClose: request.asksToClose,
            head: nil)
        state = .awaitingHead
        parser.expectResponse(requestIsHEAD: request.method == "HEAD", limit: exchange.maxResponseBytes)
        armRequestTimer(for: deadline, context: context)

        let written = context.eventLoop.makePromise(of: Void.self)
        written.futureResult.assumeIsolated().whenFailure { error in
            guard self.state == .awaitingHead || self.state == .receivingBody else { return }
            self.finish(with: HTTPClientError(error, address: self.address))
            context.close(promise: nil)
        }
        context.writeAndFlush(wrapOutboundOut(Self.encode(request, allocator: context.channel.allocator)), promise: written)
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
        // Parts of a read can still arrive after a failure closed the channel.
        guard state != .closed else { return }
        var bytes = unwrapInboundIn(data)
        if var earlier = unparsed {
            unparsed = nil
            earlier.writeBuffer(&bytes)
            bytes = earlier
        }
        do {
            while let part = try parser.next(&bytes) {
                switch part {
                case .head(let head):
                    receive(head: head, context: context)
                case .body(var chunk):
                    responseBody?.writeBuffer(&chunk)
                    if let exchange = inFlight, parser.responseBytes > exchange.maxResponseBytes {
                        failTooLarge(exchange, context: context)
                    }
                case .end:
                    completeResponse(context: context)
                }
                guard state != .closed else { return }
            }
        } catch {
            switch error {
            case .tooLarge:
                finish(with: .responseTooLarge(limit: inFlight?.maxResponseBytes ?? 0))
            case .malformed(let reason):
                finish(with: .malformedResponse(address: address, reason: reason))
            }
            context.close(promise: nil)
            return
        }
        if bytes.readableBytes > 0 {
            unparsed = bytes
        }
    }

    private func receive(head: HTTPResponseParser.Head, context: ChannelHandlerContext) {
        guard state == .awaitingHead, var exchange = inFlight else { return }
        exchange.head = head
        inFlight = exchange
        if let declared = head.contentLength, declared > exchange.maxResponseBytes - parser.responseBytes {
            failTooLarge(exchange, context: context)
            return
        }
        state = .receivingBody
        responseBody = context.channel.allocator.buffer(
            capacity: min(head.contentLength ?? 1024, exchange.maxResponseBytes))
    }

    private func completeResponse(context: ChannelHandlerContext) {
        guard state == .receivingBody, let exchange = inFlight, let head = exchange.head else { return }
        let reusable = head.keepAlive && !exchange.requestAsksToClose
        let response = HTTPClientResponse(
            statusCode: head.statusCode, headers: head.headers, body: responseBody ?? ByteBuffer())
        inFlight = nil
        responseBody = nil
        state = reusable ? .idle : .closed
        exchange.continuation.resume(
            returning: .success(HTTPClientExchangeResult(response: response, connectionReusable: reusable)))
        if !reusable {
            finish(with: .connectionClosed(address: address))
            context.close(promise: nil)
        }
    }

    private func failTooLarge(_ exchange: InFlight, context: ChannelHandlerContext) {
        finish(with: .responseTooLarge(limit: exchange.maxResponseBytes))
        context.close(promise: nil)
    }

    /// Makes sure the timer fires no later than `deadline`; a timer already due earlier is kept.
    private func armRequestTimer(for deadline: NIODeadline, context: ChannelHandlerContext) {
        guard requestTimer == nil || deadline < requestTimerDeadline else { return }
        requestTimer?.cancel()
        requestTimerDeadline = deadline
        requestTimer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            self.requestTimerFired(context: context)
        }
    }

    private func requestTimerFired(context: ChannelHandlerContext) {
        requestTimer = nil
        guard let exchange = inFlight, state != .closed else { return }
        guard exchange.deadline <= .now() else {
            armRequestTimer(for: exchange.deadline, context: context)
            return
        }
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
        requestTimer?.cancel()
        requestTimer = nil
        unparsed = nil
        // Before TCP connected, the failed connect attempt reports why, not the closing channel.
        if wasActive, let promise = readyPromise {
            readyPromise = nil
            promise.fail(error)
        }
        if let exchange = inFlight {
            inFlight = nil
            responseBody = nil
            exchange.continuation.resume(returning: .failure(error))
        }
    }

    /// The request line, header fields and body in one buffer, so that a request leaves in as
    /// few TLS records as its size allows.
    private static func encode(_ request: HTTPClientRequest, allocator: ByteBufferAllocator) -> ByteBuffer {
        let bodyLength = request.body.readableBytes
        let addsLength: Bool =
            switch request.method {
            case "GET", "HEAD", "DELETE", "OPTIONS": bodyLength > 0
            default: true
            }
        var capacity = request.method.utf8.count + request.target.utf8.count + 14 + bodyLength
        var declaresFraming = false
        for header in request.headers {
            capacity += header.name.utf8.count + header.value.utf8.count + 4
            if addsLength, !declaresFraming {
                declaresFraming = header.name.equalsIgnoringASCIICase("content-length")
                    || header.name.equalsIgnoringASCIICase("transfer-encoding")
            }
        }
        var buffer = allocator.buffer(capacity: capacity + 40)
        buffer.writeString(request.method)
        buffer.writeStaticString(" ")
        buffer.writeString(request.target)
        buffer.writeStaticString(" HTTP/1.1\r\n")
        for header in request.headers {
            buffer.writeString(header.name)
            buffer.writeStaticString(": ")
            buffer.writeString(header.value)
            buffer.writeStaticString("\r\n")
        }
        if addsLength, !declaresFraming {
            buffer.writeStaticString("Content-Length: ")
            buffer.writeString(String(bodyLength))
            buffer.writeStaticString("\r\n")
        }
        buffer.writeStaticString("\r\n")
        buffer.writeImmutableBuffer(request.body)
        return buffer
    }
}
