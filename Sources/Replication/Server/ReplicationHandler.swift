import Federation
import Logging
import NIOCore

/// One follower's channel: splits its bytes into lines of at most `ClientCommand.maxLineBytes`, feeds them to its
/// `ReplicationConnectionState`, carries the actions out, and writes the connection's queue while the channel
/// is writable.
final class ReplicationHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// What every connection shares.
    struct Context: Sendable {
        let serverName: String
        let secret: [UInt8]?
        let pingIntervalMS: Int64
        let limits: ReplicationConnection.Limits
        let hub: ReplicationHub
        let counters: ReplicationCounters
        let requests: @Sendable (ReplicationServer.Request) -> Void
        let logger: Logger
    }

    private let shared: Context
    private var state: ReplicationConnectionState
    private var connection: ReplicationConnection?
    private var context: ChannelHandlerContext?
    private var received = ByteBuffer()
    private var pingTask: RepeatedTask?
    private var closing = false
    private var logger: Logger

    init(_ shared: Context) {
        self.shared = shared
        self.logger = shared.logger
        state = ReplicationConnectionState(secret: shared.secret, pingIntervalMS: shared.pingIntervalMS,
                                           nowMS: Self.monotonicMS())
    }

    static func monotonicMS() -> Int64 {
        Int64(NIODeadline.now().uptimeNanoseconds / 1_000_000)
    }

    func channelActive(context: ChannelHandlerContext) {
        self.context = context
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let admitted = shared.hub.admit({ id in
            ReplicationConnection(id: id, eventLoop: context.eventLoop, limits: shared.limits)
        }, isAuthenticated: shared.secret == nil)
        guard let connection = admitted else {
            closing = true
            shared.counters.disconnected("too_many_connections")
            shared.logger.warning("replication connection refused: replication.max_connections reached",
                                  metadata: ["max_connections": "\(shared.hub.maxConnections)"])
            var line = context.channel.allocator.buffer(capacity: 80)
            line.writeBytes(ServerCommand.error(
                "too many replication connections (replication.max_connections = \(shared.hub.maxConnections))").line)
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(line)).whenComplete { _ in channel.close(promise: nil) }
            return
        }
        self.connection = connection
        logger[metadataKey: "replication_connection"] = "\(connection.id)"
        connection.setHooks(ReplicationConnection.Hooks(
            drain: { loopBound.value.drain() },
            closeWithError: { text, reason in loopBound.value.close(withError: text, reason: reason) }))
        logger.info("replication connection opened", metadata: ["remote": "\(context.remoteAddress.map { "\($0)" } ?? "unix")"])
        let interval = TimeAmount.milliseconds(shared.pingIntervalMS)
        pingTask = context.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            loopBound.value.apply(loopBound.value.state.timerFired(nowMS: Self.monotonicMS()))
        }
        apply(state.connected(serverName: shared.serverName, nowMS: Self.monotonicMS()))
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        pingTask?.cancel()
        pingTask = nil
        if let connection {
            if !closing {
                shared.counters.disconnected("client_closed")
                logger.info("replication connection closed by the follower", metadata: ["name": "\(connection.name)"])
            }
            connection.markClosed()
            shared.hub.remove(connection)
        }
        closing = true
        self.context = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        var bytes = unwrapInboundIn(data)
        received.writeBuffer(&bytes)
        while !closing {
            let view = received.readableBytesView
            guard let newline = view.firstIndex(of: 0x0A) else {
                if received.readableBytes > ClientCommand.maxLineBytes { apply(state.lineTooLong()) }
                break
            }
            let length = newline - view.startIndex
            guard length <= ClientCommand.maxLineBytes + 1 else {
                apply(state.lineTooLong())
                break
            }
            let line = received.readBytes(length: length)!
            received.moveReaderIndex(forwardBy: 1)
            countReceived(line)
            apply(state.lineReceived(line, nowMS: Self.monotonicMS()))
        }
        received.discardReadBytes()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { drain() }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("replication connection failed", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    private static let clientCommands: Set<String> = ["NAME", "PING", "AUTH", "REPLICATE", "REMOTE_SERVER_UP", "ERROR"]

    /// Counts the line under its command name, or `invalid` when it names none a client sends.
    private func countReceived(_ line: [UInt8]) {
        let name = String(decoding: line.prefix { $0 != 0x20 && $0 != 0x0D }.prefix(24), as: UTF8.self)
        guard !name.isEmpty else { return }
        shared.counters.received(Self.clientCommands.contains(name) ? name : "invalid")
    }

    private func apply(_ actions: [ReplicationConnectionState.Action]) {
        guard let connection else { return }
        for action in actions {
            switch action {
            case .send(let command):
                connection.enqueueLive([command])
            case .sendPing:
                connection.enqueueLive([.ping(WallClock.nowMS())])
            case .closeWithError(let text, let reason):
                close(withError: text, reason: reason)
            case .rename(let name):
                connection.name = name
                logger.info("replication follower named itself", metadata: ["name": "\(name)"])
            case .replicate(let stream, let token):
                shared.requests(.replicate(connection, stream, token))
            case .remoteServerUp(let server):
                shared.requests(.remoteServerUp(server, from: connection))
            case .logError(let text):
                logger.warning("replication follower reported an error", metadata: ["name": "\(connection.name)", "error": "\(text)"])
            }
        }
    }

    /// Writes what is queued, in writes of many lines, until the queue is empty or the channel is full.
    func drain() {
        guard let context, let connection, !closing else { return }
        if connection.hasOverflowed {
            close(withError: "Failed to keep up", reason: "failed_to_keep_up")
            return
        }
        var wrote = false
        var sent: [String: Int] = [:]
        while context.channel.isWritable {
            switch connection.take(max: 512) {
            case .overflowed:
                if wrote { context.flush() }
                close(withError: "Failed to keep up", reason: "failed_to_keep_up")
                return
            case .lines(let lines):
                guard !lines.isEmpty else { break }
                var buffer = context.channel.allocator.buffer(capacity: lines.reduce(0) { $0 + $1.count })
                for line in lines {
                    buffer.writeBytes(line)
                    sent[Self.commandName(line), default: 0] += 1
                }
                context.write(wrapOutboundOut(buffer), promise: nil)
                wrote = true
                continue
            }
            break
        }
        if wrote {
            context.flush()
            state.sent(nowMS: Self.monotonicMS())
            shared.counters.sent(sent)
        }
    }

    private static func commandName(_ line: [UInt8]) -> String {
        switch (line.first, line.dropFirst().first) {
        case (UInt8(ascii: "R"), UInt8(ascii: "D")): "RDATA"
        case (UInt8(ascii: "R"), _): "REMOTE_SERVER_UP"
        case (UInt8(ascii: "P"), UInt8(ascii: "O")): "POSITION"
        case (UInt8(ascii: "P"), _): "PING"
        case (UInt8(ascii: "E"), _): "ERROR"
        default: "SERVER"
        }
    }

    /// Drops what is queued, writes `ERROR <text>` and closes once it is written, or after the ping timeout
    /// when the follower reads nothing more.
    func close(withError text: String, reason: String) {
        guard let context, !closing else { return }
        closing = true
        shared.counters.disconnected(reason)
        shared.counters.sent(["ERROR": 1])
        if let connection {
            connection.markClosed()
            shared.hub.remove(connection)
            logger.info("replication connection closed", metadata: ["name": "\(connection.name)", "error": "\(text)"])
        }
        pingTask?.cancel()
        pingTask = nil
        var line = context.channel.allocator.buffer(capacity: text.utf8.count + 8)
        line.writeBytes(ServerCommand.error(text).line)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(line)).whenComplete { _ in channel.close(promise: nil) }
        channel.eventLoop.scheduleTask(in: .milliseconds(state.pingTimeoutMS)) { channel.close(promise: nil) }
    }
}
