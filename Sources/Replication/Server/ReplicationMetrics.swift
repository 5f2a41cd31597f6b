import NIOConcurrencyHelpers

/// What `/metrics` reports about the replication endpoint.
public struct ReplicationMetrics: Sendable, Equatable {
    public var clientsConnected = 0
    /// Commands received, by command name (refused lines count as `invalid`).
    public var commandsIn: [String: Int] = [:]
    /// Commands written, by command name.
    public var commandsOut: [String: Int] = [:]
    /// Lines queued for followers and not yet written.
    public var rowsBuffered = 0
    /// Connections closed, by reason: `client_closed`, `failed_to_keep_up`, `ping_timeout`, `auth_failed`,
    /// `line_too_long`, `too_many_connections`, `server_stopping`.
    public var disconnects: [String: Int] = [:]

    public init() {}
}

/// The counters behind `ReplicationMetrics`, updated from every event loop.
final class ReplicationCounters: Sendable {
    private let counts = NIOLockedValueBox(ReplicationMetrics())

    func received(_ command: String) {
        counts.withLockedValue { $0.commandsIn[command, default: 0] += 1 }
    }

    func sent(_ byCommand: [String: Int]) {
        counts.withLockedValue { metrics in
            for (command, count) in byCommand { metrics.commandsOut[command, default: 0] += count }
        }
    }

    func disconnected(_ reason: String) {
        counts.withLockedValue { $0.disconnects[reason, default: 0] += 1 }
    }

    var snapshot: ReplicationMetrics { counts.withLockedValue { $0 } }
}
