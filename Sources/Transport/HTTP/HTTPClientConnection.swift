import NIOCore
import NIOPosix
import Synchronization

/// One verified TLS connection to a remote server that carries HTTP/1.1 requests one at a time.
///
/// `connect` returns only after TCP connected and the TLS handshake verified the peer, each
/// within its own timeout. `execute` sends one request and returns the complete response;
/// there is no pipelining. After a complete response the connection stays open for the next
/// request unless either side asked to close; any error, timeout, oversized or incomplete
/// response closes it, and `isReusable` turns false for good. The connection is closed when
/// the object is released, so dropping it never leaks a socket.
public final class HTTPClientConnection: Sendable {
    private struct ExchangeState {
        var busy = false
        var reusable = true
        var closeRequested = false
    }

    /// The address the connection was opened to.
    public let remoteAddress: SocketAddress
    /// The identity the server's certificate was verified against.
    public let peer: TLSPeer
    /// Whether the handshake resumed an earlier session instead of a full certificate exchange.
    public let isTLSSessionReused: Bool
    /// The ALPN protocol agreed on, normally "http/1.1".
    public let negotiatedProtocol: String?
    /// The TLS version in use, as OpenSSL names it ("TLSv1.3").
    public let tlsProtocolVersion: String

    /// The event loop that carries the connection's I/O. A task that prefers
    /// `EventLoopTaskExecutor(eventLoop)` talks to the connection without crossing threads.
    public var eventLoop: any EventLoop { channel.eventLoop }

    private let channel: any Channel
    private let addressDescription: String
    private let exchangeState = Mutex(ExchangeState())

    private init(channel: any Channel, remoteAddress: SocketAddress, peer: TLSPeer, handshake: TLSHandshakeCompleted) {
        self.channel = channel
        self.remoteAddress = remoteAddress
        self.addressDescription = remoteAddress.hostAndPort
        self.peer = peer
        self.isTLSSessionReused = handshake.sessionReused
        self.negotiatedProtocol = handshake.negotiatedProtocol
        self.tlsProtocolVersion = handshake.protocolVersion
    }

    deinit {
        // Most connections are closed by `close()` or by the peer before they are released;
        // closing again from another thread would only wake the event loop to do nothing.
        if channel.isActive {
            channel.close(promise: nil)
        }
    }

    /// Opens TCP to `address`, runs the TLS handshake verifying the server as `peer`, and
    /// returns the connection ready for its first request.
    ///
    /// The connection lives on the event loop of `eventLoopGroup` that the caller runs on, if
    /// any (see `EventLoopTaskExecutor`), otherwise on the group's next loop.
    public static func connect(
        to address: SocketAddress,
        peer: TLSPeer,
        tlsContext: TLSContext,
        on eventLoopGroup: any EventLoopGroup,
        connectTimeout: TimeAmount,
        handshakeTimeout: TimeAmount
    ) async throws(HTTPClientError) -> HTTPClientConnection {
        let tcp = try await TCPConnection.open(to: address, on: eventLoopGroup, timeout: connectTimeout)
        return try await handshake(over: tcp, peer: peer, tlsContext: tlsContext, timeout: handshakeTimeout)
    }

    /// Runs the TLS handshake on an open TCP connection, verifying the server as `peer`; the
    /// TCP connection is closed if it fails. The handshake starts only now, so a connection
    /// can wait for a handshake slot after its TCP connect without holding one.
    /// `onServerAnswer` is called (on the event loop) when the server's first bytes arrive.
    public static func handshake(
        over tcp: TCPConnection,
        peer: TLSPeer,
        tlsContext: TLSContext,
        timeout handshakeTimeout: TimeAmount,
        onServerAnswer: (@Sendable () -> Void)? = nil
    ) async throws(HTTPClientError) -> HTTPClientConnection {
        let channel = tcp.channel
        let address = tcp.remoteAddress
        let addressDescription = address.hostAndPort
        // Completed by the exchange handler once the handshake verified the peer, or failed by
        // whatever ends the attempt first; the caller waits for this alone.
        let ready = channel.eventLoop.makePromise(of: HTTPClientChannelReady.self)
        channel.eventLoop.execute {
            do {
                guard channel.isActive else { throw HTTPClientError.connectionClosed(address: addressDescription) }
                let pipeline = channel.pipeline.syncOperations
                // The exchange handler first, so that it already listens when the handshake starts.
                try pipeline.addHandler(
                    HTTPClientExchangeHandler(address: addressDescription, readyPromise: ready, handshakeTimeout: handshakeTimeout))
                try pipeline.addHandler(OpenSSLHandler(clientContext: tlsContext, peer: peer), position: .first)
                if let onServerAnswer {
                    try pipeline.addHandler(FirstReadObserver(onFirstRead: onServerAnswer), position: .first)
                }
            } catch {
                ready.fail(error)
                channel.close(promise: nil)
            }
        }
        do {
            let channelReady = try await withTaskCancellationHandler {
                try await ready.futureResult.get()
            } onCancel: {
                channel.close(promise: nil)
            }
            return HTTPClientConnection(
                channel: channelReady.channel, remoteAddress: address, peer: peer, handshake: channelReady.handshake)
        } catch {
            channel.close(promise: nil)
            throw Task.isCancelled ? .cancelled : HTTPClientError(error, address: addressDescription)
        }
    }

    /// Whether the TLS connection runs on `TLS13RecordLayer`, OpenSSL's object freed (for tests).
    func usesOwnTLSRecordLayer() async throws -> Bool {
        let channel = self.channel
        return try await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.handler(type: OpenSSLHandler.self).usesOwnRecordLayer
        }.get()
    }

    /// Completes once the connection is closed, by either side.
    public var closeFuture: EventLoopFuture<Void> {
        channel.closeFuture
    }

    /// Whether `close()` was called: a close that happens otherwise is the peer's doing, or an
    /// error's.
    public var closeRequested: Bool {
        exchangeState.withLock { $0.closeRequested }
    }

    /// Whether the connection is open, idle, and may carry another request.
    public var isReusable: Bool {
        exchangeState.withLock { $0.reusable && !$0.busy } && channel.isActive
    }

    /// Sends `request` and waits for its complete response.
    ///
    /// - Parameters:
    ///   - timeout: the longest wait from sending to the end of the response.
    ///   - maxResponseBytes: the most bytes of header fields and body accepted; a larger
    ///     response fails with `responseTooLarge` and closes the connection.
    public func execute(
        _ request: HTTPClientRequest,
        timeout: TimeAmount,
        maxResponseBytes: Int
    ) async throws(HTTPClientError) -> HTTPClientResponse {
        try request.validate()
        let address = addressDescription
        try exchangeState.withLock { (state) throws(HTTPClientError) in
            guard state.reusable, !state.busy else { throw .connectionNotReusable(address: address) }
            state.busy = true
        }
        let channel = self.channel
        let outcome = await withTaskCancellationHandler {
            await withCheckedContinuation {
                (continuation: CheckedContinuation<Result<HTTPClientExchangeResult, HTTPClientError>, Never>) in
                // The handler resumes the continuation once it has taken the exchange; a write
                // that fails never reached it (the pipeline is gone), so it is resumed here.
                let written = channel.eventLoop.makePromise(of: Void.self)
                written.futureResult.whenFailure { error in
                    continuation.resume(returning: .failure(HTTPClientError(error, address: address)))
                }
                channel.writeAndFlush(
                    HTTPClientExchange(
                        request: request, timeout: timeout, maxResponseBytes: maxResponseBytes,
                        continuation: continuation),
                    promise: written)
            }
        } onCancel: {
            channel.triggerUserOutboundEvent(HTTPClientExchangeCancellation(), promise: nil)
        }
        exchangeState.withLock { state in
            state.busy = false
            if case .success(let result) = outcome, result.connectionReusable {
                return
            }
            state.reusable = false
        }
        switch outcome {
        case .success(let result):
            return result.response
        case .failure(let error):
            // A cancellation that reached the channel before the request did closes the
            // connection under it; the caller still learns that it was cancelled.
            throw Task.isCancelled ? .cancelled : error
        }
    }

    /// Closes the connection (sending TLS close_notify first); later requests fail.
    public func close() async {
        try? await startClosing().get()
    }

    /// `close()` without a task waiting for it: the future completes once the socket is closed
    /// (successfully too when it already was).
    public func startClosing() -> EventLoopFuture<Void> {
        exchangeState.withLock { state in
            state.reusable = false
            state.closeRequested = true
        }
        channel.close(promise: nil)
        return channel.closeFuture
    }
}

/// Calls back when the first bytes arrive, then leaves the pipeline.
private final class FirstReadObserver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let onFirstRead: @Sendable () -> Void

    init(onFirstRead: @escaping @Sendable () -> Void) {
        self.onFirstRead = onFirstRead
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        onFirstRead()
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
