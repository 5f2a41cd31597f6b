import NIOCore

/// Every decision of the `ConnectionPool`: events go in with the current time, actions come
/// out, and the `ConnectionPool` actor only carries the actions out on sockets and timers.
///
/// Guarantees, whatever order events arrive in:
/// - never more than `maxConnections` connections open (connecting, busy and idle ones),
///   never more than `maxTLSHandshakes` being opened at once, never more new connections
///   than the token bucket of `maxNewConnectionsPerSecond` allows;
/// - at most one connection per key (`ResolvedFederationAddress.connectionKey`), for every
///   request class: a destination's requests take turns on one connection, the way
///   Matrix sends one transaction at a time per destination, and a second connection to
///   the same server would only double the handshakes a small CPU has to pay for;
/// - one request at a time on a connection (no pipelining).
///
/// A request that cannot be served waits. When a resource frees up, the waiter served
/// next is the first by request class, then by `HostRanker` score, then by arrival. A
/// destination whose connection is released while other destinations wait for a slot
/// (all slots busy, none idle) keeps it for its own next request only while its turn
/// lasts: a waiter of a higher class takes the slot at once, one of the same class once
/// the holder has made `fairnessExchanges` exchanges or held the connection for
/// `fairnessHoldTime`. An idle connection is closed after `idleTimeout`, and the least
/// recently used idle connection is closed as soon as a waiter needs its slot. A waiter
/// still waiting at its deadline fails with the reason it was held back.
///
/// The same turn applies to opening a connection: one still being opened after
/// `fairnessHoldTime` while another destination waits for a handshake turn is abandoned
/// and counted as a timeout, so a blackholed destination holds a turn for at most one
/// fairness deadline, and afterwards ranks behind every live one.
///
/// When opening a connection fails, every request waiting for that key fails with the
/// attempt's error: the destination is unreachable now, and the sender's backoff decides
/// when to try again.
struct ConnectionPoolStateMachine: Sendable {
    /// A lease request, numbered by the driver.
    struct RequestID: Hashable, Sendable, CustomStringConvertible {
        let value: Int
        init(_ value: Int) { self.value = value }
        var description: String { "request \(value)" }
    }

    /// A connection, numbered by the state machine when it decides to open one.
    struct ConnectionID: Hashable, Sendable, CustomStringConvertible {
        let value: Int
        init(_ value: Int) { self.value = value }
        var description: String { "connection \(value)" }
    }

    /// Why a request gets no connection.
    enum Failure: Hashable, Sendable {
        /// Opening the connection for its key failed; the driver knows the error.
        case connectFailed(ConnectionID)
        /// Opening the connection for its key took its whole turn while others waited.
        case connectAbandoned(after: TimeAmount)
        case waitTimedOut(waited: TimeAmount, reason: ConnectionPoolError.WaitReason)
        case cancelled
    }

    /// What the driver must do.
    enum Action: Hashable, Sendable {
        /// Open a connection for `key` (TCP connect and TLS handshake), then report
        /// `connectionEstablished` or `connectionFailed`.
        case createConnection(ConnectionID, key: String)
        /// Hand the connection to the request; it comes back through `connectionReleased`.
        case executeOnConnection(RequestID, ConnectionID)
        /// Close the connection (or abandon it if it is still being opened).
        case closeConnection(ConnectionID)
        case failRequest(RequestID, Failure)
        /// Call `timerFired` at this time; replaces any earlier timer.
        case scheduleTimer(at: NIODeadline)
    }

    private struct Waiter {
        let id: RequestID
        let requestClass: RequestClass
        let sequence: Int
        let arrived: NIODeadline
        let deadline: NIODeadline

        /// Within one key: the higher class first, then arrival order.
        func isServed(before other: Waiter) -> Bool {
            (requestClass, sequence) < (other.requestClass, other.sequence)
        }
    }

    private struct Connection {
        enum State {
            case connecting(since: NIODeadline)
            case busy(RequestID)
            case idle(since: NIODeadline)
        }

        let id: ConnectionID
        let key: String
        var state: State
        var established: NIODeadline?
        var exchanges = 0

        var idleSince: NIODeadline? {
            if case .idle(let since) = state { return since }
            return nil
        }
    }

    /// Successful handshakes are averaged over this window for `handshakesPerSecond`.
    static let handshakeRateWindow: TimeAmount = .seconds(10)

    let limits: ConnectionPool.Limits
    private(set) var ranker: HostRanker
    private var bucket: TokenBucket
    private var connections: [ConnectionID: Connection] = [:]
    private var connectionByKey: [String: ConnectionID] = [:]
    private var waitersByKey: [String: [Waiter]] = [:]
    private var keyOfWaiter: [RequestID: String] = [:]
    private var waitingByClass: [RequestClass: Int] = Dictionary(uniqueKeysWithValues: RequestClass.allCases.map { ($0, 0) })
    private var connectingCount = 0
    private var idleCount = 0
    private var nextConnectionNumber = 0
    private var nextSequence = 0
    private var earliestDeadline: NIODeadline?
    private var earliestDeadlineIsStale = false
    private var scheduledWakeUp: NIODeadline?
    private var nextTokenNeeded: NIODeadline?
    /// Whether a waiter is held back only by `maxTLSHandshakes`, so slow connects must end by their turn.
    private var handshakeTurnWanted = false
    private var lastServeBlock: ConnectionPoolError.WaitReason?
    private var peakOpen = 0
    private var peakHandshaking = 0
    private var handshakesCompleted = 0
    private var recentHandshakes: [NIODeadline] = []

    init(limits: ConnectionPool.Limits, ranker: HostRanker = HostRanker()) {
        self.limits = limits
        self.ranker = ranker
        self.bucket = TokenBucket(ratePerSecond: limits.maxNewConnectionsPerSecond)
    }

    /// A request for a connection to `key`, waiting at most until `deadline`. With
    /// `reusingIdle` false an idle connection for the key is closed and a fresh one opened.
    mutating func request(_ id: RequestID, key: String, class requestClass: RequestClass, deadline: NIODeadline,
                          reusingIdle: Bool = true, now: NIODeadline) -> [Action] {
        precondition(keyOfWaiter[id] == nil, "\(id) is already waiting")
        var actions: [Action] = []
        if let connectionID = connectionByKey[key], connections[connectionID]?.idleSince != nil {
            if reusingIdle {
                idleCount -= 1
                hand(connectionID, to: id, actions: &actions)
                return finish(actions, now: now)
            }
            remove(connectionID)
            actions.append(.closeConnection(connectionID))
        }
        let waiter = Waiter(id: id, requestClass: requestClass, sequence: nextSequence, arrived: now, deadline: deadline)
        nextSequence += 1
        waitersByKey[key, default: []].append(waiter)
        keyOfWaiter[id] = key
        waitingByClass[requestClass, default: 0] += 1
        if !earliestDeadlineIsStale { earliestDeadline = min(earliestDeadline ?? deadline, deadline) }
        serve(now: now, actions: &actions)
        return finish(actions, now: now)
    }

    /// The connection finished its TCP connect and TLS handshake.
    mutating func connectionEstablished(_ id: ConnectionID, now: NIODeadline) -> [Action] {
        guard var connection = connections[id], case .connecting = connection.state else {
            return [.closeConnection(id)]
        }
        connectingCount -= 1
        handshakesCompleted += 1
        recentHandshakes.removeAll { now - $0 >= Self.handshakeRateWindow }
        recentHandshakes.append(now)
        connection.established = now
        connection.state = .idle(since: now)
        connections[id] = connection
        idleCount += 1
        var actions: [Action] = []
        if let next = takeNextWaiter(of: connection.key) {
            idleCount -= 1
            hand(id, to: next.id, actions: &actions)
        }
        serve(now: now, actions: &actions)
        return finish(actions, now: now)
    }

    /// Opening the connection failed; `timedOut` says whether connect or handshake ran out of time.
    mutating func connectionFailed(_ id: ConnectionID, timedOut: Bool, now: NIODeadline) -> [Action] {
        guard let connection = connections[id], case .connecting = connection.state else { return [] }
        remove(id)
        ranker.record(timedOut ? .timeout : .failure, for: connection.key, at: now)
        var actions: [Action] = []
        for waiter in takeAllWaiters(of: connection.key) {
            actions.append(.failRequest(waiter.id, .connectFailed(id)))
        }
        serve(now: now, actions: &actions)
        return finish(actions, now: now)
    }

    /// The request on the connection is done. `reusable` says whether the exchange ended
    /// cleanly with the connection open; `outcome`, when known, goes to the `HostRanker`.
    mutating func connectionReleased(_ id: ConnectionID, reusable: Bool, outcome: HostRanker.Outcome?,
                                     now: NIODeadline) -> [Action] {
        guard let connection = connections[id], case .busy = connection.state else { return [] }
        if let outcome { ranker.record(outcome, for: connection.key, at: now) }
        var actions: [Action] = []
        guard reusable else {
            remove(id)
            actions.append(.closeConnection(id))
            serve(now: now, actions: &actions)
            return finish(actions, now: now)
        }
        guard let next = nextWaiter(of: connection.key) else {
            connections[id]?.state = .idle(since: now)
            idleCount += 1
            serve(now: now, actions: &actions)
            return finish(actions, now: now)
        }
        if let starved = slotStarvedWaiter(now: now, excluding: connection.key),
           starved.requestClass < next.requestClass
            || (starved.requestClass == next.requestClass && turnIsOver(connection, now: now)) {
            remove(id)
            actions.append(.closeConnection(id))
            serve(now: now, excluding: connection.key, actions: &actions)
            return finish(actions, now: now)
        }
        _ = takeNextWaiter(of: connection.key)
        hand(id, to: next.id, actions: &actions)
        return finish(actions, now: now)
    }

    /// The connection went away on its own (the peer closed an idle connection, or the
    /// driver gave up on it).
    mutating func connectionClosed(_ id: ConnectionID, now: NIODeadline) -> [Action] {
        guard connections[id] != nil else { return [] }
        remove(id)
        var actions: [Action] = []
        serve(now: now, actions: &actions)
        return finish(actions, now: now)
    }

    /// The time asked for by the last `scheduleTimer` (or later) has come.
    mutating func timerFired(now: NIODeadline) -> [Action] {
        scheduledWakeUp = nil
        var actions: [Action] = []
        for id in idleConnections(where: { $0 + limits.idleTimeout <= now }) {
            remove(id)
            actions.append(.closeConnection(id))
        }
        if let earliest = currentEarliestDeadline(), earliest <= now {
            let expired = waitersByKey.flatMap { key, waiters in
                waiters.filter { $0.deadline <= now }.map { (key: key, waiter: $0) }
            }
            for (key, waiter) in expired.sorted(by: { $0.waiter.sequence < $1.waiter.sequence }) {
                let reason = waitReason(for: key)
                removeWaiter(waiter.id)
                actions.append(.failRequest(waiter.id, .waitTimedOut(waited: now - waiter.arrived, reason: reason)))
            }
        }
        if connectingCount >= limits.maxTLSHandshakes, hasCandidate(excluding: nil) {
            abandonConnectsPastTheirTurn(now: now, actions: &actions)
        }
        serve(now: now, actions: &actions)
        return finish(actions, now: now)
    }

    /// The waiting request is no longer wanted. A request already handed a connection is
    /// not affected: its connection comes back through `connectionReleased`.
    mutating func cancel(_ id: RequestID, now: NIODeadline) -> [Action] {
        guard keyOfWaiter[id] != nil else { return [] }
        removeWaiter(id)
        return finish([.failRequest(id, .cancelled)], now: now)
    }

    /// Closes idle connections unused since before `cutoff`; `.distantFuture` closes all.
    mutating func closeIdleConnections(idleSince cutoff: NIODeadline, now: NIODeadline) -> [Action] {
        var actions: [Action] = []
        for id in idleConnections(where: { $0 < cutoff }) {
            remove(id)
            actions.append(.closeConnection(id))
        }
        serve(now: now, actions: &actions)
        return finish(actions, now: now)
    }

    func counts(at now: NIODeadline) -> ConnectionPool.Counts {
        let recent = recentHandshakes.filter { now - $0 < Self.handshakeRateWindow }.count
        return ConnectionPool.Counts(
            open: connections.count, idle: idleCount, handshaking: connectingCount, waiting: keyOfWaiter.count,
            peakOpen: peakOpen, peakHandshaking: peakHandshaking, handshakesCompleted: handshakesCompleted,
            waitingByClass: waitingByClass,
            handshakesPerSecond: Double(recent) * 1e9 / Double(Self.handshakeRateWindow.nanoseconds))
    }

    /// The connection open for `key`, if any.
    func connection(for key: String) -> ConnectionID? {
        connectionByKey[key]
    }

    /// Whether `id` is still waiting for a connection.
    func isWaiting(_ id: RequestID) -> Bool {
        keyOfWaiter[id] != nil
    }

    /// Opens connections for the best waiters whose key has none, until a cap stops it.
    /// All such waiters need the same three resources, so when the best one cannot have
    /// them, none after it can.
    private mutating func serve(now: NIODeadline, excluding excludedKey: String? = nil, actions: inout [Action]) {
        nextTokenNeeded = nil
        lastServeBlock = nil
        handshakeTurnWanted = false
        while true {
            if connectingCount >= limits.maxTLSHandshakes {
                lastServeBlock = .maxTLSHandshakes(limits.maxTLSHandshakes)
                handshakeTurnWanted = hasCandidate(excluding: excludedKey)
                return
            }
            if connections.count >= limits.maxConnections, idleCount == 0 {
                lastServeBlock = .maxConnections(limits.maxConnections)
                return
            }
            guard let key = bestCandidate(now: now, excluding: excludedKey)?.key else { return }
            guard bucket.hasToken(at: now) else {
                lastServeBlock = .maxNewConnectionsPerSecond(limits.maxNewConnectionsPerSecond)
                nextTokenNeeded = bucket.nextToken
                return
            }
            if connections.count >= limits.maxConnections, let victim = leastRecentlyUsedIdle() {
                remove(victim)
                actions.append(.closeConnection(victim))
            }
            bucket.take(at: now)
            let id = ConnectionID(nextConnectionNumber)
            nextConnectionNumber += 1
            connections[id] = Connection(id: id, key: key, state: .connecting(since: now))
            connectionByKey[key] = id
            connectingCount += 1
            peakOpen = max(peakOpen, connections.count)
            peakHandshaking = max(peakHandshaking, connectingCount)
            actions.append(.createConnection(id, key: key))
        }
    }

    /// The waiter to serve first among keys without a connection: class, then rank, then arrival.
    private func bestCandidate(now: NIODeadline, excluding excludedKey: String?) -> (key: String, waiter: Waiter)? {
        var best: (key: String, waiter: Waiter, score: Double)?
        for (key, waiters) in waitersByKey where connectionByKey[key] == nil && key != excludedKey {
            guard let waiter = Self.first(of: waiters) else { continue }
            if let current = best, waiter.requestClass > current.waiter.requestClass { continue }
            let score = ranker.score(of: key, at: now)
            if let current = best, waiter.requestClass == current.waiter.requestClass,
               (score, waiter.sequence) > (current.score, current.waiter.sequence) {
                continue
            }
            best = (key, waiter, score)
        }
        return best.map { ($0.key, $0.waiter) }
    }

    private func hasCandidate(excluding excludedKey: String?) -> Bool {
        waitersByKey.keys.contains { connectionByKey[$0] == nil && $0 != excludedKey }
    }

    /// Ends the connects that have taken a whole fairness turn while others wait for one.
    private mutating func abandonConnectsPastTheirTurn(now: NIODeadline, actions: inout [Action]) {
        let overdue = connections.values.compactMap { connection -> (Connection, NIODeadline)? in
            guard case .connecting(let since) = connection.state, since + limits.fairnessHoldTime <= now else { return nil }
            return (connection, since)
        }
        for (connection, since) in overdue.sorted(by: { $0.0.id.value < $1.0.id.value }) {
            remove(connection.id)
            actions.append(.closeConnection(connection.id))
            ranker.record(.timeout, for: connection.key, at: now)
            for waiter in takeAllWaiters(of: connection.key) {
                actions.append(.failRequest(waiter.id, .connectAbandoned(after: now - since)))
            }
        }
    }

    /// The best waiter of another key that waits only because every slot is busy, so that
    /// giving back a connection would let it in right away.
    private func slotStarvedWaiter(now: NIODeadline, excluding key: String) -> Waiter? {
        guard connections.count >= limits.maxConnections, idleCount == 0,
              connectingCount < limits.maxTLSHandshakes, bucket.hasToken(at: now) else { return nil }
        return bestCandidate(now: now, excluding: key)?.waiter
    }

    private func turnIsOver(_ connection: Connection, now: NIODeadline) -> Bool {
        connection.exchanges >= limits.fairnessExchanges
            || now - (connection.established ?? now) >= limits.fairnessHoldTime
    }

    private func waitReason(for key: String) -> ConnectionPoolError.WaitReason {
        if let id = connectionByKey[key], let connection = connections[id] {
            if case .connecting = connection.state { return .connectionInProgress }
            return .destinationBusy
        }
        return lastServeBlock ?? .outranked
    }

    /// Idle connections whose idle-since time passes `test`, in the order they were opened.
    private func idleConnections(where test: (NIODeadline) -> Bool) -> [ConnectionID] {
        connections.values.filter { $0.idleSince.map(test) ?? false }.map(\.id).sorted { $0.value < $1.value }
    }

    private func leastRecentlyUsedIdle() -> ConnectionID? {
        var oldest: (id: ConnectionID, since: NIODeadline)?
        for connection in connections.values {
            guard let since = connection.idleSince else { continue }
            if let current = oldest, (current.since, current.id.value) <= (since, connection.id.value) { continue }
            oldest = (connection.id, since)
        }
        return oldest?.id
    }

    /// Appends the timer action when the next thing due is earlier than the timer set.
    private mutating func finish(_ actions: [Action], now: NIODeadline) -> [Action] {
        var due = currentEarliestDeadline()
        for connection in connections.values {
            if let since = connection.idleSince {
                due = min(due ?? .distantFuture, since + limits.idleTimeout)
            }
        }
        if let nextTokenNeeded { due = min(due ?? nextTokenNeeded, nextTokenNeeded) }
        if handshakeTurnWanted {
            for connection in connections.values {
                if case .connecting(let since) = connection.state {
                    due = min(due ?? .distantFuture, since + limits.fairnessHoldTime)
                }
            }
        }
        guard let due, scheduledWakeUp.map({ due < $0 }) ?? true else { return actions }
        scheduledWakeUp = due
        return actions + [.scheduleTimer(at: due)]
    }

    private mutating func hand(_ connectionID: ConnectionID, to request: RequestID, actions: inout [Action]) {
        connections[connectionID]?.state = .busy(request)
        connections[connectionID]?.exchanges += 1
        actions.append(.executeOnConnection(request, connectionID))
    }

    private mutating func remove(_ id: ConnectionID) {
        guard let connection = connections.removeValue(forKey: id) else { return }
        if connectionByKey[connection.key] == id { connectionByKey[connection.key] = nil }
        switch connection.state {
        case .connecting: connectingCount -= 1
        case .idle: idleCount -= 1
        case .busy: break
        }
    }

    private static func first(of waiters: [Waiter]) -> Waiter? {
        waiters.min { $0.isServed(before: $1) }
    }

    private func nextWaiter(of key: String) -> Waiter? {
        waitersByKey[key].flatMap(Self.first(of:))
    }

    private mutating func takeNextWaiter(of key: String) -> Waiter? {
        guard let waiter = nextWaiter(of: key) else { return nil }
        removeWaiter(waiter.id)
        return waiter
    }

    private mutating func takeAllWaiters(of key: String) -> [Waiter] {
        let waiters = (waitersByKey[key] ?? []).sorted { $0.isServed(before: $1) }
        for waiter in waiters { removeWaiter(waiter.id) }
        return waiters
    }

    private mutating func removeWaiter(_ id: RequestID) {
        guard let key = keyOfWaiter.removeValue(forKey: id), var waiters = waitersByKey[key],
              let index = waiters.firstIndex(where: { $0.id == id }) else { return }
        let waiter = waiters.remove(at: index)
        waitersByKey[key] = waiters.isEmpty ? nil : waiters
        waitingByClass[waiter.requestClass, default: 1] -= 1
        if waiter.deadline == earliestDeadline { earliestDeadlineIsStale = true }
    }

    private mutating func currentEarliestDeadline() -> NIODeadline? {
        if earliestDeadlineIsStale {
            earliestDeadline = waitersByKey.values.lazy.flatMap { $0 }.map(\.deadline).min()
            earliestDeadlineIsStale = false
        }
        return earliestDeadline
    }
}
