import NIOCore
import NIOPosix

/// A follower's side of one connection, line by line: what `southbridge tail` reads and the tests drive.
///
/// Lines are kept until asked for with `nextLine`, so a caller sees every line in order; `pauseReading` stops
/// reading the socket altogether (the kernel's buffers fill and the server's queue grows), which is how a slow
/// follower looks from the server.
public final class ReplicationClient: Sendable {
    public enum Failure: Error, CustomStringConvertible {
        case timedOut(Duration)
        public var description: String {
            switch self {
            case .timedOut(let timeout): "no line within \(timeout)"
            }
        }
    }

    private let channel: any Channel
    private let inbox: NIOLoopBound<LineInbox>

    private init(channel: any Channel, inbox: NIOLoopBound<LineInbox>) {
        self.channel = channel
        self.inbox = inbox
    }

    /// Connects to `host:port`, or to the unix socket `unixPath` when given. `receiveBufferBytes` shrinks the
    /// socket's receive buffer (a slow follower in tests).
    public static func connect(host: String = "127.0.0.1", port: Int = 0, unixPath: String? = nil,
                               receiveBufferBytes: Int? = nil, group: any EventLoopGroup) async throws -> ReplicationClient {
        var bootstrap = ClientBootstrap(group: group).connectTimeout(.seconds(10))
        if let receiveBufferBytes {
            bootstrap = bootstrap.channelOption(.socketOption(.so_rcvbuf), value: SocketOptionValue(receiveBufferBytes))
        }
        // Kept here rather than looked up: a server that refuses the connection closes it, and empties its
        // pipeline, before the caller reads why.
        let inbox = LineInbox()
        bootstrap = bootstrap.channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(inbox)
            }
        }
        let channel = try await (unixPath.map { bootstrap.connect(unixDomainSocketPath: $0) }
            ?? bootstrap.connect(host: host, port: port)).get()
        let bound = try await channel.eventLoop.submit { NIOLoopBound(inbox, eventLoop: channel.eventLoop) }.get()
        return ReplicationClient(channel: channel, inbox: bound)
    }

    /// Sends `line` and a newline.
    public func send(_ line: String) async throws {
        try await send(bytes: Array(line.utf8) + [0x0A])
    }

    /// Sends bytes as they are, newline or not.
    public func send(bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(channel.allocator.buffer(bytes: bytes))
    }

    /// The next line the server sent (without its newline), or nil once the connection closed and every line
    /// was read; throws when none comes within `timeout`.
    public func nextLine(timeout: Duration = .seconds(10)) async throws -> String? {
        let inbox = self.inbox
        return try await channel.eventLoop.flatSubmit { inbox.value.next(timeout: timeout) }.get()
    }

    /// Stops reading from the socket until `resumeReading`.
    public func pauseReading() async throws {
        try await channel.setOption(.autoRead, value: false).get()
    }

    public func resumeReading() async throws {
        try await channel.setOption(.autoRead, value: true).get()
        channel.read()
    }

    public func close() async {
        try? await channel.close()
    }
}

/// Splits what the server sends into lines and hands them to `next` in order. Used on its channel's event loop
/// only, once created.
private final class LineInbox: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer

    private var pending = ByteBuffer()
    private var lines = CircularBuffer<String>()
    private var closed = false
    private var waiter: (promise: EventLoopPromise<String?>, timeout: Scheduled<Void>)?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        pending.writeBuffer(&bytes)
        while let newline = pending.readableBytesView.firstIndex(of: 0x0A) {
            let length = newline - pending.readableBytesView.startIndex
            lines.append(pending.readString(length: length) ?? "")
            pending.moveReaderIndex(forwardBy: 1)
        }
        pending.discardReadBytes()
        deliver()
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed = true
        deliver()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func next(timeout: Duration) -> EventLoopFuture<String?> {
        let eventLoop = MultiThreadedEventLoopGroup.currentEventLoop!
        let promise = eventLoop.makePromise(of: String?.self)
        if let line = lines.popFirst() {
            promise.succeed(line)
        } else if closed {
            promise.succeed(nil)
        } else {
            let inbox = NIOLoopBound(self, eventLoop: eventLoop)
            let timer = eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000
                                                                + timeout.components.attoseconds / 1_000_000_000)) {
                inbox.value.waiter = nil
                promise.fail(ReplicationClient.Failure.timedOut(timeout))
            }
            waiter?.timeout.cancel()
            waiter?.promise.fail(ReplicationClient.Failure.timedOut(.zero))
            waiter = (promise, timer)
        }
        return promise.futureResult
    }

    private func deliver() {
        guard let (promise, timer) = waiter else { return }
        if let line = lines.popFirst() {
            waiter = nil
            timer.cancel()
            promise.succeed(line)
        } else if closed {
            waiter = nil
            timer.cancel()
            promise.succeed(nil)
        }
    }
}
