import NIOCore
import NIOPosix

/// Why one exchange with one nameserver did not produce an answer.
enum DNSAttemptFailure: Error, Equatable {
    case timeout
    case responseCode(DNSResponseCode)
    case malformed(String)
    case network(String)

    func error(for key: DNSCacheKey) -> DNSError {
        switch self {
        case .timeout: .timeout(name: key.name, type: key.type)
        case .responseCode(let code): .serverFailure(name: key.name, type: key.type, responseCode: code)
        case .malformed(let reason): .malformedResponse(name: key.name, type: key.type, reason: reason)
        case .network(let reason): .networkFailure(name: key.name, type: key.type, reason: reason)
        }
    }
}

/// Sends one query to one nameserver and waits, on an event loop, for the matching answer.
///
/// UDP uses a fresh socket on a random port per query, and ignores datagrams from other
/// addresses or with another ID or question (they may be spoofed), so only the timeout
/// ends a wait that gets no genuine answer. TCP frames messages with a 2-byte length.
struct DNSTransport: Sendable {
    let group: any EventLoopGroup
    let timeout: TimeAmount

    func exchangeOverUDP(_ query: DNSQuery, with server: SocketAddress) async -> Result<DNSResponse, DNSAttemptFailure> {
        let eventLoop = group.next()
        let promise = eventLoop.makePromise(of: DNSResponse.self)
        let channel: any Channel
        do {
            channel = try await DatagramBootstrap(group: eventLoop)
                .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 4096))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            DNSDatagramHandler(query: query, server: server, promise: promise))
                    }
                }
                .bind(host: server.protocol == .inet6 ? "::" : "0.0.0.0", port: 0)
                .get()
        } catch {
            promise.fail(DNSAttemptFailure.network("cannot open a UDP socket: \(error)"))
            return .failure(.network("cannot open a UDP socket: \(error)"))
        }
        let timer = eventLoop.scheduleTask(in: timeout) { promise.fail(DNSAttemptFailure.timeout) }
        channel.writeAndFlush(AddressedEnvelope(remoteAddress: server, data: ByteBuffer(bytes: query.message)))
            .whenFailure { promise.fail(DNSAttemptFailure.network("cannot send to \(server): \($0)")) }
        let result = await Self.outcome(of: promise.futureResult)
        timer.cancel()
        channel.close(promise: nil)
        return result
    }

    func exchangeOverTCP(_ query: DNSQuery, with server: SocketAddress) async -> Result<DNSResponse, DNSAttemptFailure> {
        let eventLoop = group.next()
        let promise = eventLoop.makePromise(of: DNSResponse.self)
        // The timer covers connecting too.
        let timer = eventLoop.scheduleTask(in: timeout) { promise.fail(DNSAttemptFailure.timeout) }
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: eventLoop)
                .connectTimeout(timeout)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(DNSStreamFrameDecoder()))
                        try channel.pipeline.syncOperations.addHandler(DNSStreamHandler(query: query, promise: promise))
                    }
                }
                .connect(to: server)
                .get()
        } catch {
            timer.cancel()
            promise.fail(DNSAttemptFailure.network("cannot connect to \(server) over TCP: \(error)"))
            return await Self.outcome(of: promise.futureResult)
        }
        let message = query.message
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt16(message.count))
        buffer.writeBytes(message)
        channel.writeAndFlush(buffer)
            .whenFailure { promise.fail(DNSAttemptFailure.network("cannot send to \(server) over TCP: \($0)")) }
        let result = await Self.outcome(of: promise.futureResult)
        timer.cancel()
        channel.close(promise: nil)
        return result
    }

    private static func outcome(of future: EventLoopFuture<DNSResponse>) async -> Result<DNSResponse, DNSAttemptFailure> {
        do {
            return .success(try await future.get())
        } catch let failure as DNSAttemptFailure {
            return .failure(failure)
        } catch {
            return .failure(.network("\(error)"))
        }
    }
}

/// Completes the promise with the first datagram from the nameserver that answers the query.
private final class DNSDatagramHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    private let query: DNSQuery
    private let server: SocketAddress
    private let promise: EventLoopPromise<DNSResponse>

    init(query: DNSQuery, server: SocketAddress, promise: EventLoopPromise<DNSResponse>) {
        self.query = query
        self.server = server
        self.promise = promise
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        guard envelope.remoteAddress == server else { return }
        switch Result(catching: { () throws(DNSWireError) in
            try DNSResponse(decoding: Array(envelope.data.readableBytesView), for: query)
        }) {
        case .success(let response):
            promise.succeed(response)
        case .failure(let error) where error.isMismatch:
            return
        case .failure(let error):
            promise.fail(DNSAttemptFailure.malformed(error.description))
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(DNSAttemptFailure.network("\(error)"))
    }
}

/// Splits a TCP stream into DNS messages, each preceded by its 2-byte length (RFC 1035 §4.2.2).
private struct DNSStreamFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt16.self),
              let message = buffer.getSlice(at: buffer.readerIndex + 2, length: Int(length))
        else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 2 + Int(length))
        context.fireChannelRead(wrapInboundOut(message))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }
}

/// Completes the promise with the answer read over TCP; over a connection of our own, an
/// answer that does not match the query is an error rather than noise.
private final class DNSStreamHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let query: DNSQuery
    private let promise: EventLoopPromise<DNSResponse>

    init(query: DNSQuery, promise: EventLoopPromise<DNSResponse>) {
        self.query = query
        self.promise = promise
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let message = unwrapInboundIn(data)
        switch Result(catching: { () throws(DNSWireError) in
            try DNSResponse(decoding: Array(message.readableBytesView), for: query)
        }) {
        case .success(let response):
            promise.succeed(response)
        case .failure(let error):
            promise.fail(DNSAttemptFailure.malformed(error.description))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(DNSAttemptFailure.network("the server closed the TCP connection without answering"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(DNSAttemptFailure.network("\(error)"))
        context.close(promise: nil)
    }
}
