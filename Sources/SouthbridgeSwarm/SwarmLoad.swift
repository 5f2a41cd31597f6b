import NIOConcurrencyHelpers
import NIOCore
import Transport

/// Connections and TLS handshakes in progress at once across the servers that share it, with
/// their peaks: a sender's connection limits as the receiving end sees them.
///
/// A connection counts from its accept until the server has read its close. A handshake counts
/// from the first bytes the client sends (its ClientHello, sent once the client has given the
/// connection a handshake turn) until the server has read the client's Finished, or the
/// connection closes. Both end after the client counts them done, by as long as the servers'
/// event loop takes to get to them: on a loaded loop the counts run above what the client
/// ever had, so they check a client's limits from the other end without replacing its own count.
public final class SwarmLoad: Sendable {
    public struct Counts: Sendable, Equatable {
        public var open = 0
        public var peakOpen = 0
        public var handshaking = 0
        public var peakHandshaking = 0
    }

    private let counts = NIOLockedValueBox(Counts())

    public init() {}

    public var current: Counts { counts.withLockedValue { $0 } }

    /// Starts the peaks again from what is open and handshaking now.
    public func resetPeaks() {
        counts.withLockedValue {
            $0.peakOpen = $0.open
            $0.peakHandshaking = $0.handshaking
        }
    }

    func connectionOpened() {
        counts.withLockedValue {
            $0.open += 1
            $0.peakOpen = max($0.peakOpen, $0.open)
        }
    }

    func connectionClosed() {
        counts.withLockedValue { $0.open -= 1 }
    }

    func handshakeStarted() {
        counts.withLockedValue {
            $0.handshaking += 1
            $0.peakHandshaking = max($0.peakHandshaking, $0.handshaking)
        }
    }

    func handshakeEnded() {
        counts.withLockedValue { $0.handshaking -= 1 }
    }
}

/// Sits before the TLS handler: the first bytes a connection brings start its handshake in
/// `SwarmLoad`, and its close ends a handshake that never finished.
final class SwarmHandshakeStart: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let load: SwarmLoad
    private var started = false
    private var ended = false

    init(load: SwarmLoad) {
        self.load = load
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !started {
            started = true
            load.handshakeStarted()
        }
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        end()
        context.fireChannelInactive()
    }

    func end() {
        guard started, !ended else { return }
        ended = true
        load.handshakeEnded()
    }
}

/// Sits after the TLS handler: its handshake-completed event ends the handshake.
final class SwarmHandshakeEnd: ChannelInboundHandler {
    typealias InboundIn = Any

    private let start: SwarmHandshakeStart

    init(start: SwarmHandshakeStart) {
        self.start = start
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is TLSHandshakeCompleted { start.end() }
        context.fireUserInboundEventTriggered(event)
    }
}
