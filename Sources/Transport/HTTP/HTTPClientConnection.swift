import NIOCore
import NIOHTTP1
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
        channel.close(promise: nil)
    }

    /// Opens TCP to `address`, runs the TLS handshake verifying the server as `peer`, and
    /// returns the connection ready for its first request.
    public static func connect(
        to address: SocketAddress,
        peer: TLSPeer,
        tlsContext: TLSContext,
        on eventLoopGroup: any EventLoopGroup,
        connectTimeout: TimeAmount,
        handshakeTimeout: TimeAmount
    ) async throws(HTTPClientError) -> HTTPClientConnection {
        let eventLoop = eventLoopGroup.next()
        let addressDescription = address.hostAndPort
        let handshake = eventLoop.makePromise(of: TLSHandshakeCompleted.self)
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                do {
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(OpenSSLHandler(clientContext: tlsContext, peer: peer))
                    try pipeline.addHandler(HTTPRequestEncoder())
                    try pipeline.addHandler(
                        ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .fireError)))
                    try pipeline.addHandler(
                        HTTPClientExchangeHandler(
                            address: addressDescription, handshakePromise: handshake, handshakeTimeout: handshakeTimeout
                        ))
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }

        let channel: any Channel
        do {
            channel = try await bootstrap.connect(to: address).get()
        } catch {
            let failure: HTTPClientError
            if case ChannelError.connectTimeout = error {
                failure = .connectTimeout(address: addressDescription, timeout: connectTimeout)
            } else {
                failure = HTTPClientError(error, address: addressDescription)
            }
            handshake.fail(failure)
            throw failure
        }
        do {
            let completed = try await withTaskCancellationHandler {
                try await handshake.futureResult.get()
            } onCancel: {
                channel.close(promise: nil)
            }
            return HTTPClientConnection(channel: channel, remoteAddress: address, peer: peer, handshake: completed)
        } catch {
            channel.close(promise: nil)
            throw Task.isCancelled ? .cancelled : HTTPClientError(error, address: addressDescription)
        }
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
        let promise = channel.eventLoop.makePromise(of: HTTPClientExchangeResult.self)
        let exchange = HTTPClientExchange(
            request: request, timeout: timeout, maxResponseBytes: maxResponseBytes, promise: promise)
        channel.writeAndFlush(exchange).whenFailure { error in
            promise.fail(HTTPClientError(error, address: address))
        }
        let outcome: Result<HTTPClientExchangeResult, HTTPClientError>
        do {
            let channel = self.channel
            outcome = .success(
                try await withTaskCancellationHandler {
                    try await promise.futureResult.get()
                } onCancel: {
                    channel.triggerUserOutboundEvent(HTTPClientExchangeCancellation(), promise: nil)
                })
        } catch {
            outcome = .failure(HTTPClientError(error, address: address))
        }
        exchangeState.withLock { state in
            state.busy = false
            if case .success(let result) = outcome, result.connectionReusable {
                return
            }
            state.reusable = false
        }
        return try outcome.get().response
    }

    /// Closes the connection (sending TLS close_notify first); later requests fail.
    public func close() async {
        exchangeState.withLock { $0.reusable = false }
        try? await channel.close()
    }
}
