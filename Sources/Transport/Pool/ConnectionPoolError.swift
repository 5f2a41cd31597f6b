import NIOCore

/// Why the pool gave a request no connection; connection and TLS failures are thrown as
/// the `HTTPClientError` of the attempt instead.
public enum ConnectionPoolError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What a waiting request was held back by when its wait ran out.
    public enum WaitReason: Sendable, Hashable, CustomStringConvertible {
        /// The destination's one connection was carrying another request (no pipelining).
        case destinationBusy
        /// The destination's connection was still being opened.
        case connectionInProgress
        /// `limits.max_connections` connections were open and none idle.
        case maxConnections(Int)
        /// `limits.max_tls_handshakes` handshakes were in progress.
        case maxTLSHandshakes(Int)
        /// `limits.max_new_connections_per_second` was used up.
        case maxNewConnectionsPerSecond(Int)
        /// Requests of a higher class or of better-ranked destinations were served first.
        case outranked

        public var description: String {
            switch self {
            case .destinationBusy:
                "the destination's one connection was busy with another request"
            case .connectionInProgress:
                "the destination's connection was still being opened"
            case .maxConnections(let limit):
                "all \(limit) connections (limits.max_connections) were in use"
            case .maxTLSHandshakes(let limit):
                "\(limit) TLS handshakes (limits.max_tls_handshakes) were already in progress"
            case .maxNewConnectionsPerSecond(let limit):
                "\(limit) new connections per second (limits.max_new_connections_per_second) were used up"
            case .outranked:
                "requests of a higher class or to better-ranked destinations were served first"
            }
        }
    }

    /// The request waited for a connection until its deadline.
    case waitTimeout(destination: String, requestClass: RequestClass, waited: TimeAmount, reason: WaitReason)
    /// Opening the connection took a whole fairness turn while other destinations waited
    /// for a TLS handshake turn, so it was given up.
    case connectAbandoned(destination: String, after: TimeAmount)

    public var description: String {
        switch self {
        case .waitTimeout(let destination, let requestClass, let waited, let reason):
            "\(destination): no connection for a \(requestClass) within \(waited.nanoseconds / 1_000_000) ms: \(reason)"
        case .connectAbandoned(let destination, let after):
            "\(destination): gave up opening a connection after \(after.nanoseconds / 1_000_000) ms "
                + "(limits.fairness_hold_ms) because other destinations waited for a TLS handshake turn"
        }
    }
}
