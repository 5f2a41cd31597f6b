import NIOCore

extension ConnectionPool {
    /// The caps and timeouts of the pool, all from configuration.
    public struct Limits: Sendable, Equatable {
        /// `limits.max_connections`: open connections in total, connecting and idle ones included.
        public var maxConnections: Int
        /// `limits.max_tls_handshakes`: TLS handshakes running at once (a TCP connect in
        /// progress holds a socket, not a handshake slot).
        public var maxTLSHandshakes: Int
        /// `limits.max_new_connections_per_second`: new connections started per second,
        /// with a burst of one second's worth; past it, in rounds of one second's worth.
        public var maxNewConnectionsPerSecond: Int
        public var connectTimeout: TimeAmount
        public var tlsHandshakeTimeout: TimeAmount
        /// How long an unused keep-alive connection stays open.
        public var idleTimeout: TimeAmount
        /// `limits.fairness_exchanges`: after this many exchanges on one connection, a
        /// destination gives the connection back when others wait for a slot.
        public var fairnessExchanges: Int
        /// `limits.fairness_hold_ms`: after holding a connection this long, a destination
        /// gives it back when others wait for a slot.
        public var fairnessHoldTime: TimeAmount
        /// `transport.connection_wait_timeout_ms`: the longest a request waits for a
        /// connection unless its caller gives its own deadline.
        public var waitTimeout: TimeAmount

        public init(maxConnections: Int, maxTLSHandshakes: Int, connectTimeout: TimeAmount,
                    tlsHandshakeTimeout: TimeAmount, idleTimeout: TimeAmount = .seconds(120),
                    maxNewConnectionsPerSecond: Int = 20, fairnessExchanges: Int = 20,
                    fairnessHoldTime: TimeAmount = .seconds(10), waitTimeout: TimeAmount = .seconds(120)) {
            precondition(maxConnections > 0 && maxTLSHandshakes > 0 && maxNewConnectionsPerSecond > 0
                         && fairnessExchanges > 0, "pool limits must be positive")
            self.maxConnections = maxConnections
            self.maxTLSHandshakes = maxTLSHandshakes
            self.maxNewConnectionsPerSecond = maxNewConnectionsPerSecond
            self.connectTimeout = connectTimeout
            self.tlsHandshakeTimeout = tlsHandshakeTimeout
            self.idleTimeout = idleTimeout
            self.fairnessExchanges = fairnessExchanges
            self.fairnessHoldTime = fairnessHoldTime
            self.waitTimeout = waitTimeout
        }
    }

    /// A snapshot for metrics and tests.
    public struct Counts: Sendable, Equatable {
        /// Sockets held: connecting, handshaking, busy, idle and closing connections.
        public var open: Int
        public var idle: Int
        /// TLS handshakes running.
        public var handshaking: Int
        /// Requests waiting for a connection, all classes together.
        public var waiting: Int
        public var peakOpen: Int
        public var peakHandshaking: Int
        /// Connections opened successfully since the start.
        public var handshakesCompleted: Int
        /// Requests waiting for a connection, per class (every class present, zero included).
        public var waitingByClass: [RequestClass: Int]
        /// Successful handshakes per second, averaged over the last 10 seconds.
        public var handshakesPerSecond: Double
        /// TCP connects in progress.
        public var connecting: Int
        /// Connections whose TCP is up, waiting for a handshake slot.
        public var awaitingHandshake: Int
        /// Connections told to close whose socket is not closed yet.
        public var closing: Int
        /// Idle connections closed to make room for a waiting destination, since the start.
        public var evictions: Int
    }
}
