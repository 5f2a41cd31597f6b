import Glibc
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Transport

/// A TLS server on loopback that answers every connection's first request with a broken
/// HTTP/1.1 response, so tests see how a client copes with a peer that goes wrong mid-exchange.
///
/// The TLS side is real (`OpenSSLHandler` in server mode, a certificate the caller provides);
/// only the HTTP response misbehaves, in the way `Behaviour` says. Request bytes are read up
/// to the blank line that ends the head; request bodies are not expected.
public final class MisbehavingServer: Sendable {
    /// How the server answers.
    public enum Behaviour: Sendable, Equatable {
        /// Sends the head declaring `Content-Length: 2048` and the first 1,024 body bytes, waits
        /// until they are on the wire, then resets the TCP connection (SO_LINGER 0 and close):
        /// no close_notify, no FIN, an RST.
        case resetMidResponse
        /// Sends a valid response (`hello` with a Content-Length) one byte every `interval`.
        case drip(interval: TimeAmount)
        /// Sends a chunked body of `bytes` bytes, declaring no length up front.
        case oversizedBody(bytes: Int)
        /// Sends the next of these byte strings, whatever they are, on each new connection (the
        /// last one again once they run out), then closes the connection with close_notify.
        case answers([[UInt8]])
    }

    public let behaviour: Behaviour
    public let port: Int
    private let channel: any Channel

    private init(behaviour: Behaviour, port: Int, channel: any Channel) {
        self.behaviour = behaviour
        self.port = port
        self.channel = channel
    }

    /// Starts a server on 127.0.0.1 on a free port, presenting `certificate`.
    public static func start(
        behaviour: Behaviour,
        certificate: (certificatePEM: String, privateKeyPEM: String),
        group: any EventLoopGroup
    ) async throws -> MisbehavingServer {
        let tlsContext = try TLSContext.server(
            certificateChainPEM: certificate.certificatePEM, privateKeyPEM: certificate.privateKeyPEM)
        let connections = NIOLockedValueBox(0)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                let connection = connections.withLockedValue { count in
                    defer { count += 1 }
                    return count
                }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(OpenSSLHandler(serverContext: tlsContext))
                    try channel.pipeline.syncOperations.addHandler(
                        MisbehavingResponder(behaviour: behaviour, connection: connection))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        return MisbehavingServer(behaviour: behaviour, port: channel.localAddress?.port ?? 0, channel: channel)
    }

    /// Stops accepting connections; connections already open end when their clients close them.
    public func stop() async {
        try? await channel.close()
    }
}

/// Reads one request head, then answers as the `Behaviour` says.
final class MisbehavingResponder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let behaviour: MisbehavingServer.Behaviour
    /// How many connections the server accepted before this one.
    private let connection: Int
    private var request: [UInt8] = []
    private var answered = false
    private var drip: (remaining: ArraySlice<UInt8>, next: Scheduled<Void>?)?

    init(behaviour: MisbehavingServer.Behaviour, connection: Int) {
        self.behaviour = behaviour
        self.connection = connection
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered else { return }
        var bytes = unwrapInboundIn(data)
        request += bytes.readBytes(length: bytes.readableBytes) ?? []
        guard request.count >= 4, request.indices.dropFirst(3).contains(where: { index in
            request[(index - 3)...index].elementsEqual([13, 10, 13, 10])
        }) else { return }
        answered = true
        switch behaviour {
        case .resetMidResponse:
            resetMidResponse(context: context)
        case .drip(let interval):
            drip = (remaining: Array("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".utf8)[...], next: nil)
            dripNextByte(interval: interval, context: context)
        case .oversizedBody(let total):
            sendChunked(total: total, context: context)
        case .answers(let answers):
            guard let answer = answers.indices.last.map({ answers[min(connection, $0)] }) else {
                context.close(promise: nil)
                return
            }
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: answer)))
                .assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        drip?.next?.cancel()
        drip = nil
        context.fireChannelInactive()
    }

    private func resetMidResponse(context: ChannelHandlerContext) {
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 2048\r\n\r\n"
        var response = context.channel.allocator.buffer(string: head)
        response.writeRepeatingByte(UInt8(ascii: "r"), count: 1024)
        context.writeAndFlush(wrapOutboundOut(response)).assumeIsolated().whenSuccess {
            // Give the client time to read the half body, so the reset really comes mid-response.
            context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(50)) {
                self.reset(context: context)
            }
        }
    }

    /// Closes the socket with SO_LINGER 0, which makes the kernel send an RST. The close starts
    /// below `OpenSSLHandler`, so no close_notify goes out first.
    private func reset(context: ChannelHandlerContext) {
        guard let provider = context.channel as? any SocketOptionProvider,
            let tlsContext = try? context.pipeline.syncOperations.context(handlerType: OpenSSLHandler.self)
        else {
            context.close(promise: nil)
            return
        }
        provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).assumeIsolated().whenComplete { _ in
            tlsContext.close(promise: nil)
        }
    }

    private func dripNextByte(interval: TimeAmount, context: ChannelHandlerContext) {
        guard var state = drip, let byte = state.remaining.popFirst() else { return }
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: [byte])), promise: nil)
        state.next = context.eventLoop.assumeIsolated().scheduleTask(in: interval) {
            self.dripNextByte(interval: interval, context: context)
        }
        drip = state
    }

    private func sendChunked(total: Int, context: ChannelHandlerContext) {
        context.write(
            wrapOutboundOut(context.channel.allocator.buffer(string: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")),
            promise: nil)
        var sent = 0
        while sent < total {
            let size = min(16 * 1024, total - sent)
            var chunk = context.channel.allocator.buffer(capacity: size + 16)
            chunk.writeString(String(size, radix: 16) + "\r\n")
            chunk.writeRepeatingByte(UInt8(ascii: "o"), count: size)
            chunk.writeString("\r\n")
            context.write(wrapOutboundOut(chunk), promise: nil)
            sent += size
        }
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: "0\r\n\r\n")), promise: nil)
    }
}
