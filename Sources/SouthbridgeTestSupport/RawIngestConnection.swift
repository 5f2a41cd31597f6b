import Federation
import NIOCore
import NIOPosix
import SouthbridgeSwarm
import Synchronization

/// A homeserver's connection to the ingest API that sends whatever bytes it is given, as a
/// broken or hostile homeserver would (truncated, malformed, trickled), and collects every
/// byte southbridge answers until it closes the connection. `IngestClient` is the well-behaved one.
public final class RawIngestConnection: Sendable {
    /// One HTTP/1.1 response read back from the bytes received.
    public struct Response: Sendable, CustomStringConvertible {
        public var status: Int
        public var headers: [(name: String, value: String)]
        public var body: [UInt8]

        public var json: JSONValue? { try? JSONValue.parse(body) }
        /// The Matrix error's `errcode` and `error`, when the body is one.
        public var errcode: String? { json?["errcode"]?.stringValue }
        public var error: String? { json?["error"]?.stringValue }

        public func header(_ name: String) -> String? {
            headers.first { $0.name.lowercased() == name }?.value
        }

        public var description: String { "\(status) \(String(decoding: body.prefix(300), as: UTF8.self))" }
    }

    private final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let received = Mutex<[UInt8]>([])
        let closed: EventLoopPromise<Void>

        init(closed: EventLoopPromise<Void>) {
            self.closed = closed
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let bytes = unwrapInboundIn(data)
            received.withLock { $0 += bytes.readableBytesView }
        }

        func channelInactive(context: ChannelHandlerContext) {
            closed.succeed()
            context.fireChannelInactive()
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            // The server closed its side: nothing more will come.
            if case .inputClosed? = event as? ChannelEvent {
                context.close(promise: nil)
            }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }

    private let channel: any Channel
    private let collector: Collector

    private init(channel: any Channel, collector: Collector) {
        self.channel = channel
        self.collector = collector
    }

    public static func connect(unixPath: String, group: any EventLoopGroup) async throws -> RawIngestConnection {
        let loop = group.next()
        let collector = Collector(closed: loop.makePromise())
        let channel = try await ClientBootstrap(group: loop)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .connectTimeout(.seconds(5))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) }
            }
            .connect(unixDomainSocketPath: unixPath)
            .get()
        return RawIngestConnection(channel: channel, collector: collector)
    }

    /// Sends `bytes` as they are; a write to a connection the server already closed is not an error.
    public func send(_ bytes: [UInt8]) async {
        try? await channel.writeAndFlush(channel.allocator.buffer(bytes: bytes))
    }

    public func send(_ text: String) async {
        await send(Array(text.utf8))
    }

    /// Sends `bytes` one at a time, `interval` apart: a client that trickles its request.
    public func trickle(_ bytes: [UInt8], interval: Duration) async throws {
        for byte in bytes {
            guard channel.isActive else { return }
            await send([byte])
            try await Task.sleep(for: interval)
        }
    }

    /// Ends the request stream; the server may still answer.
    public func closeOutput() async {
        try? await channel.close(mode: .output)
    }

    /// Everything received so far.
    public var received: [UInt8] { collector.received.withLock { $0 } }

    /// Whether the server has closed the connection.
    public var isClosed: Bool { !channel.isActive }

    /// Waits until the server closes the connection, at most `timeout`; true when it did.
    public func waitForClose(timeout: Duration) async -> Bool {
        let loop = channel.eventLoop
        let outcome = loop.makePromise(of: Bool.self)
        // Whichever comes first completes the promise; a promise ignores a second completion.
        collector.closed.futureResult.whenComplete { _ in outcome.succeed(true) }
        let timer = loop.scheduleTask(in: TimeAmount(timeout)) { outcome.succeed(false) }
        let closed = (try? await outcome.futureResult.get()) ?? false
        timer.cancel()
        return closed
    }

    /// Waits until `count` complete responses arrived or the server closed, at most `timeout`,
    /// and returns the responses that arrived.
    public func responses(count: Int = 1, timeout: Duration) async -> [Response] {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let parsed = Self.parseResponses(received).responses
            if parsed.count >= count || !channel.isActive { return Self.parseResponses(received).responses }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return Self.parseResponses(received).responses
    }

    public func close() async {
        try? await channel.close()
    }

    /// The complete responses at the start of `bytes` (Content-Length framed, as southbridge
    /// sends them), and how many bytes follow them that are not a complete response.
    public static func parseResponses(_ bytes: [UInt8]) -> (responses: [Response], unparsed: Int) {
        var responses: [Response] = []
        var rest = bytes[...]
        while let end = rest.indices.first(where: { index in
            index + 3 < rest.endIndex && rest[index...(index + 3)].elementsEqual([13, 10, 13, 10])
        }) {
            let lines = String(decoding: rest[..<end], as: UTF8.self).split(separator: "\r\n", omittingEmptySubsequences: false)
            guard let statusLine = lines.first, statusLine.hasPrefix("HTTP/1."), statusLine.count >= 12,
                  let status = Int(statusLine.dropFirst(9).prefix(3)) else { break }
            var headers: [(name: String, value: String)] = []
            for line in lines.dropFirst() {
                guard let colon = line.firstIndex(of: ":") else { continue }
                headers.append((String(line[..<colon]), String(line[line.index(after: colon)...].drop(while: { $0 == " " }))))
            }
            let length = headers.first { $0.name.lowercased() == "content-length" }.flatMap { Int($0.value) } ?? 0
            let bodyStart = end + 4
            guard rest.endIndex - bodyStart >= length else { break }
            responses.append(Response(status: status, headers: headers, body: Array(rest[bodyStart..<(bodyStart + length)])))
            rest = rest[(bodyStart + length)...]
        }
        return (responses, rest.count)
    }
}
