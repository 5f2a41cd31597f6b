import NIOConcurrencyHelpers

/// The followers connected and where each stream stands: live rows go from here to every follower that is live
/// on their stream, and a follower switches from history to live here, under the one lock that also orders the
/// live rows, so no row is missed or sent twice across the switch.
///
/// A stream's position is the token of the last row handed to `publish`; every row at or below it is committed,
/// so a history read up to it sees them all.
final class ReplicationHub: Sendable {
    enum Phase: Equatable {
        /// Reading history; rows published meanwhile are read from the Outbox later instead.
        case catchingUp(generation: Int)
        case live
    }

    private struct Follower {
        let connection: ReplicationConnection
        var isAuthenticated: Bool
        var phases: [ReplicationStream: Phase] = [:]
        var generation = 0
    }

    private struct State {
        var positions: [ReplicationStream: Int64]
        var followers: [Int: Follower] = [:]
        var nextID = 0
    }

    let maxConnections: Int
    private let state: NIOLockedValueBox<State>

    init(positions: [ReplicationStream: Int64], maxConnections: Int) {
        self.maxConnections = maxConnections
        state = NIOLockedValueBox(State(positions: positions))
    }

    /// A new connection's id, or nil when `maxConnections` are connected.
    func admit(_ makeConnection: (Int) -> ReplicationConnection, isAuthenticated: Bool) -> ReplicationConnection? {
        state.withLockedValue { state in
            guard state.followers.count < maxConnections else { return nil }
            state.nextID += 1
            let connection = makeConnection(state.nextID)
            state.followers[connection.id] = Follower(connection: connection, isAuthenticated: isAuthenticated)
            return connection
        }
    }

    func authenticated(_ connection: ReplicationConnection) {
        state.withLockedValue { $0.followers[connection.id]?.isAuthenticated = true }
    }

    func remove(_ connection: ReplicationConnection) {
        _ = state.withLockedValue { $0.followers.removeValue(forKey: connection.id) }
    }

    var connections: [ReplicationConnection] {
        state.withLockedValue { $0.followers.values.map(\.connection) }
    }

    func position(of stream: ReplicationStream) -> Int64 {
        state.withLockedValue { $0.positions[stream] ?? 0 }
    }

    /// How a subscription starts.
    enum Start: Equatable {
        /// `NOW`: `POSITION` is queued and the follower is live.
        case live
        /// Send the rows in `(after, upTo]`, then call `finishHistory`.
        case history(after: Int64, upTo: Int64, generation: Int)
        /// The follower's token is past the stream's position (another Outbox, or one restored from a backup).
        case tokenAhead(position: Int64)
    }

    func startSubscription(_ connection: ReplicationConnection, _ stream: ReplicationStream, from token: ReplicationToken) -> Start {
        state.withLockedValue { state in
            guard var follower = state.followers[connection.id] else { return .live }
            let position = state.positions[stream] ?? 0
            follower.generation += 1
            defer { state.followers[connection.id] = follower }
            switch token {
            case .now:
                follower.phases[stream] = .live
                connection.enqueueHistory([.position(stream, position)])
                return .live
            case .after(let after) where after > position:
                follower.phases[stream] = nil
                return .tokenAhead(position: position)
            case .after(let after):
                follower.phases[stream] = .catchingUp(generation: follower.generation)
                return .history(after: after, upTo: position, generation: follower.generation)
            }
        }
    }

    /// Whether a history reader still serves the follower's current subscription.
    func isCurrent(_ connection: ReplicationConnection, _ stream: ReplicationStream, generation: Int) -> Bool {
        state.withLockedValue { $0.followers[connection.id]?.phases[stream] == .catchingUp(generation: generation) }
    }

    /// Called when history up to `sentUpTo` is queued: when the stream has not moved since, queues `POSITION` and
    /// makes the follower live; otherwise returns the new position to read up to.
    func finishHistory(_ connection: ReplicationConnection, _ stream: ReplicationStream, generation: Int,
                       sentUpTo: Int64) -> Int64? {
        state.withLockedValue { state in
            guard state.followers[connection.id]?.phases[stream] == .catchingUp(generation: generation) else { return nil }
            let position = state.positions[stream] ?? 0
            guard position == sentUpTo else { return position }
            state.followers[connection.id]?.phases[stream] = .live
            connection.enqueueHistory([.position(stream, position)])
            return nil
        }
    }

    /// The follower stopped following `stream` (its history could not be read).
    func abandon(_ connection: ReplicationConnection, _ stream: ReplicationStream, generation: Int) {
        state.withLockedValue { state in
            guard state.followers[connection.id]?.phases[stream] == .catchingUp(generation: generation) else { return }
            state.followers[connection.id]?.phases[stream] = nil
        }
    }

    /// Moves `stream` to the last of `rows` and sends them to every follower live on it; rows at or below the
    /// position (committed before the hub started) are skipped.
    func publish(_ stream: ReplicationStream, _ rows: [(token: Int64, row: [UInt8])]) {
        state.withLockedValue { state in
            let position = state.positions[stream] ?? 0
            let fresh = rows.filter { $0.token > position }
            guard let last = fresh.last else { return }
            state.positions[stream] = last.token
            let followers = state.followers.values.filter { $0.phases[stream] == .live }
            guard !followers.isEmpty else { return }
            let lines = fresh.map { ServerCommand.rdata(stream, token: $0.token, row: $0.row).line }
            for follower in followers { follower.connection.enqueueLive(lines: lines) }
        }
    }

    /// Sends `command` to every authenticated follower but `sender`.
    func broadcast(_ command: ServerCommand, except sender: ReplicationConnection?) {
        state.withLockedValue { state in
            for follower in state.followers.values where follower.isAuthenticated && follower.connection.id != sender?.id {
                follower.connection.enqueueLive([command])
            }
        }
    }
}
