import Glibc
import NIOCore

/// Every decision of the `ConnectionPool`: events go in with the current time, actions come
/// out, and the `ConnectionPool` actor only carries the actions out on sockets and timers.
///
/// Guarantees, whatever order events arrive in:
/// - never more than `maxConnections` sockets open: connecting, waiting for a handshake turn,
///   handshaking, busy, idle, and closing ones too (a connection closed to make room counts
///   until its TLS close_notify and TCP close are done and the driver reports it closed);
/// - never more than `maxTLSHandshakes` TLS handshakes running at once, and never more new
///   connections than the token bucket of `maxNewConnectionsPerSecond` allows;
/// - at most one connection per key (`ResolvedFederationAddress.connectionKey`), for every
///   request class: a destination's requests take turns on one connection, the way Matrix
///   sends one transaction at a time per destination;
/// - one request at a time on a connection (no pipelining).
///
/// A connection is opened in two steps. The TCP connect holds a socket but no handshake
/// slot: a blackholed server, whose connect never completes, costs live destinations
/// nothing but that socket, and a hundred of them are probed side by side. Only once TCP is
/// up does the connection wait for one of the `maxTLSHandshakes` slots, where the TLS
/// handshake (the CPU-heavy part) runs; connects run ahead of the handshakes by at most
/// `maxTLSHandshakes` connections. While another connection waits for a slot, a handshake
/// whose server has not answered within `handshakeSilence`, or that is still running after
/// `handshakeTurn`, is abandoned, and so is a TCP connect still running
/// after `fairnessHoldTime` while a destination waits for a socket: either is counted as a
/// timeout, so the destination then ranks behind every live one.
///
/// A request that cannot be served waits. When a resource frees up, the waiter served next
/// is the first by request class, then by `HostRanker` score, then by arrival; the waiting
/// destinations are kept ordered that way (O(log n) per change, the score taken when the
/// destination starts waiting and again whenever one of its outcomes is recorded). A
/// destination whose connection is released while other destinations wait for a socket
/// keeps it for its own next request only while its turn lasts: a waiter of a higher class
/// takes the slot at once, one of the same class once the holder has made
/// `fairnessExchanges` exchanges or held the connection for `fairnessHoldTime`.
///
/// An idle connection is closed after `idleTimeout`. When a waiter needs a socket and all
/// are in use, the idle connection least likely to be used next is closed: each
/// connection's use is a count of its exchanges that halves every `idleTimeout`, so a
/// destination that talks often (a busy room) outlasts one that spoke once, and among
/// equals the least recently used goes first. A waiter still waiting at its deadline fails
/// with the reason it was held back.
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
    struct ConnectionID: Hashable, Sendable, Comparable, CustomStringConvertible {
        let value: Int
        init(_ value: Int) { self.value = value }
        var description: String { "connection \(value)" }
        static func < (lhs: ConnectionID, rhs: ConnectionID) -> Bool { lhs.value < rhs.value }
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
        /// Open a TCP connection for `key`, then report `connectionTCPConnected` or
        /// `connectionFailed`.
        case createConnection(ConnectionID, key: String)
        /// Run the TLS handshake on the connection, then report `connectionEstablished` or
        /// `connectionFailed`.
        case startHandshake(ConnectionID)
        /// Hand the connection to the request; it comes back through `connectionReleased`.
        case executeOnConnection(RequestID, ConnectionID)
        /// Close the connection, whatever step it is at, and report `connectionClosed` once
        /// its socket is closed; nothing else is reported for it.
        case closeConnection(ConnectionID)
        case failRequest(RequestID, Failure)
        /// Call `timerFired` at this time; replaces any earlier timer.
        case scheduleTimer(at: NIODeadline)
    }

    /// A TLS handshake that has not finished after this long gives its slot up when another
    /// connection waits for one. A healthy server finishes in a few round trips, well under a
    /// second; a server that accepted TCP and then says nothing would otherwise hold a slot
    /// for the whole `tls_handshake_timeout_ms`.
    static let handshakeTurn: TimeAmount = .seconds(3)

    /// A TLS handshake whose server has sent nothing back this long after the ClientHello
    /// gives its slot up when another connection waits for one: a live server answers within
    /// a round trip, and one that accepted TCP and then says nothing would otherwise hold a
    /// slot for the whole `handshakeTurn`.
    static let handshakeSilence: TimeAmount = .seconds(1)

    /// Successful handshakes are averaged over this window for `handshakesPerSecond`.
    static let handshakeRateWindow: TimeAmount = .seconds(10)

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

    /// The order destinations without a connection are served in: class, score, arrival.
    private struct CandidateRank: Comparable, Sendable {
        let requestClass: RequestClass
        let score: Double
        let sequence: Int

        static func < (lhs: CandidateRank, rhs: CandidateRank) -> Bool {
            (lhs.requestClass, lhs.score, lhs.sequence) < (rhs.requestClass, rhs.score, rhs.sequence)
        }
    }

    /// The order TCP-connected connections get a handshake slot in: class, then connect order.
    private struct HandshakeRank: Comparable, Sendable {
        let requestClass: RequestClass
        let sequence: Int

        static func < (lhs: HandshakeRank, rhs: HandshakeRank) -> Bool {
            (lhs.requestClass, lhs.sequence) < (rhs.requestClass, rhs.sequence)
        }
    }

    /// The order idle connections are closed in to make room: least used, then oldest.
    private struct EvictionRank: Comparable, Sendable {
        let use: Double
        let id: ConnectionID

        static func < (lhs: EvictionRank, rhs: EvictionRank) -> Bool { (lhs.use, lhs.id) < (rhs.use, rhs.id) }
    }

    /// When a connection went idle, oldest first.
    private struct IdleRank: Comparable, Sendable {
        let since: NIODeadline
        let id: ConnectionID

        static func < (lhs: IdleRank, rhs: IdleRank) -> Bool { (lhs.since, lhs.id) < (rhs.since, rhs.id) }
    }

    /// A waiter's deadline, in the order they fall due.
    private struct DeadlineRank: Comparable, Sendable {
        let deadline: NIODeadline
        let sequence: Int

        static func < (lhs: DeadlineRank, rhs: DeadlineRank) -> Bool {
            (lhs.deadline, lhs.sequence) < (rhs.deadline, rhs.sequence)
        }
    }

    /// Why a connection is being closed.
    private enum Closing: Equatable {
        /// To make room for a waiting destination.
        case evicted
        /// Its destination's turn ended while others waited: the socket it frees goes to another key.
        case turnEnded
        case other
    }

    private struct Connection {
        enum State: Equatable {
            /// TCP connect in progress.
            case connecting(since: NIODeadline)
            /// TCP is up; waiting for a handshake slot.
            case awaitingHandshake
            case handshaking(since: NIODeadline)
            case busy(RequestID)
            case idle(since: NIODeadline)
            /// Told to close; still holds its socket until the driver reports it closed.
            case closing(Closing)
        }

        let id: ConnectionID
        let key: String
        var state: State
        var established: NIODeadline?
        /// The server has answered the handshake (sent its first bytes).
        var heardFrom = false
        var exchanges = 0
        /// log2 of the exchange count decayed with a half-life of `idleTimeout`, kept in a
        /// frame where time adds instead of the count shrinking (see `EvictionRank`).
        var use = 0.0

        var idleSince: NIODeadline? {
            if case .idle(let since) = state { return since }
            return nil
        }
    }

    let limits: ConnectionPool.Limits
    private(set) var ranker: HostRanker
    private var bucket: TokenBucket
    private var connections: [ConnectionID: Connection] = [:]
    private var connectionByKey: [String: ConnectionID] = [:]
    private var waitersByKey: [String: [Waiter]] = [:]
    private var keyOfWaiter: [RequestID: String] = [:]
    private var waitingByClass: [RequestClass: Int] = Dictionary(uniqueKeysWithValues: RequestClass.allCases.map { ($0, 0) })
    /// Keys with waiters and no connection.
    private var candidates = IndexedHeap<String, CandidateRank>()
    private var awaitingHandshake = IndexedHeap<ConnectionID, HandshakeRank>()
    private var evictable = IndexedHeap<ConnectionID, EvictionRank>()
    private var deadlines = IndexedHeap<RequestID, DeadlineRank>()
    /// Idle connections by the time they went idle, for the idle timeout: a heap rather than a
    /// FIFO, because a connection idle for long would hold back a FIFO's clean-up.
    private var idleOrder = IndexedHeap<ConnectionID, IdleRank>()
    private var connectOrder = DeadlineFIFO<ConnectionID>()
    private var handshakeOrder = DeadlineFIFO<ConnectionID>()
    private var connectingCount = 0
    private var handshakingCount = 0
    private var idleCount = 0
    private var closingCount = 0
    /// Idle connections closed to make room for waiters, not yet closed.
    private var evictionsInProgress = 0
    private var nextConnectionNumber = 0
    private var nextSequence = 0
    private var scheduledWakeUp: NIODeadline?
    private var nextTokenNeeded: NIODeadline?
    /// The last connect left tokens in the bucket: the round it belongs to goes on one at a time.
    private var roundTokensLeft = false
    /// A waiter is held back only by the sockets in use, so slow TCP connects must end by their turn.
    private var socketTurnWanted = false
    private var lastServeBlock: ConnectionPoolError.WaitReason?
    private var peakOpen = 0
    private var peakHandshaking = 0
    private var handshakesCompleted = 0
    private var evictions = 0
    private var recentHandshakes: [NIODeadline] = []

    init(limits: ConnectionPool.Limits, ranker: HostRanker = HostRanker()) {
        self.limits = limits
        self.ranker = ranker
        self.bucket = TokenBucket(ratePerSecond: limits.maxNewConnectionsPerSecond)
    }

    // MARK: - Events

    /// A request for a connection to `key`, waiting at most until `deadline`. With
    /// `reusingIdle` false an idle connection for the key is closed and a fresh one opened.
    mutating func request(_ id: RequestID, key: String, class requestClass: RequestClass, deadline: NIODeadline,
                          reusingIdle: Bool = true, now: NIODeadline) -> [Action] {
        precondition(keyOfWaiter[id] == nil, "\(id) is already waiting")
        var actions: [Action] = []
        if let connectionID = connectionByKey[key], connections[connectionID]?.idleSince != nil {
            if reusingIdle {
                hand(connectionID, to: id, now: now, actions: &actions)
                return finish(actions, now: now)
            }
            startClosing(connectionID, actions: &actions)
        }
        let waiter = Waiter(id: id, requestClass: requestClass, sequence: nextSequence, arrived: now, deadline: deadline)
        nextSequence += 1
        waitersByKey[key, default: []].append(waiter)
        keyOfWaiter[id] = key
        waitingByClass[requestClass, default: 0] += 1
        deadlines.set(id, DeadlineRank(deadline: deadline, sequence: waiter.sequence))
        refreshCandidate(key, now: now)
        serve(now: now, actions: &actions)
        return finish(actions, now: now)
    }

    /// The connection's TCP connect completed; it waits for a handshake slot.
    mutating func connectionTCPConnected(_ id: ConnectionID, now: NIODeadline) -> [Action] {
        guard var connection = connections[id], case .connecting = connection.state else { return [] }
        connectingCount -= 1
        connection.state = .awaitingHandshake
        connections[id] = connection
        let requestClass = nextWaiter(of: connection.key)?.requestClass ?? .catchUp
        awaitingHandshake.set(id, HandshakeRank(requestClass: requestClass, sequence: nextSequence))
        nextSequence += 1
        var actions: [Action] = []
        serve(now: now, actions: &actions)
        return finish(actions, now: now)
    }

    /// The server answered the connection's handshake: it is making progress, and keeps its
    /// slot for the whole `handshakeTurn`.
    mutating func handshakeProgressed(_ id: ConnectionID, now: NIODeadline) -> [Action] {
        guard case .handshaking = connections[id]?.state else { return [] }
        connections[id]?.heardFrom = true
        return finish([], now: now)
    }

    /// The connection finished its TLS handshake.
    mutating func connectionEstablished(_ id: ConnectionID, now: NIODeadline) -> [Action] {
        guard var connection = connections[id], case .handshaking = connection.state else { return [] }
        handshakingCount -= 1
        handshakesCompleted += 1
        recentHandshakes.removeAll { now - $0 >= Self.handshakeRateWindow }
        recentHandshakes.append(now)
        connection.established = now
        connection.use = useFrame(now)
        connections[id] = connection
        var actions: [Action] = []
        if let next = takeNextWaiter(of: connection.key) {
            hand(id, to: next.id, now: now, actions: &actions)
        } else {
            becomeIdle(id, now: now)
        }
        serve(now: now, actions: &actions)
        return finish(actions, now: now)
    }

    /// Opening the connection failed (TCP or TLS), and its socket is closed;
    /// `timedOut` says whether the connect or the handshake ran out of time.
    mutating func connectionFailed(_ id: ConnectionID, timedOut: Bool, now: NIODeadline) -> [Action] {
        guard let connection = connections[id] else { return [] }
        switch connection.state {
        case .connecting, .awaitingHandshake, .handshaking: break
        default: return []
        }
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
        if let outcome {
            ranker.record(outcome, for: connection.key, at: now)
            refreshCandidate(connection.key, now: now)
        }
        var actions: [Action] = []
        guard reusable else {
            startClosing(id, actions: &actions)
            serve(now: now, actions: &actions)
            return finish(actions, now: now)
        }
        guard let next = nextWaiter(of: connection.key) else {
            becomeIdle(id, now: now)
            serve(now: now, actions: &actions)
            return finish(actions, now: now)
        }
        if let starved = socketStarvedCandidate(now: now, excluding: connection.key),
           starved.requestClass < next.requestClass
            || (starved.requestClass == next.requestClass && turnIsOver(connection, now: now)) {
            startClosing(id, because: .turnEnded, actions: &actions)
            serve(now: now, excluding: connection.key, actions: &actions)
            return finish(actions, now: now)
        }
        _ = takeNextWaiter(of: connection.key)
        hand(id, to: next.id, now: now, actions: &actions)
        return finish(actions, now: now)
    }

    /// The connection's socket is closed: one the pool closed (`closeConnection`), or an idle
    /// one the peer closed.
    mutating func connectionClosed(_ id: ConnectionID, now: NIODeadline) -> [Action] {
        guard let connection = connections[id] else { return [] }
        remove(id)
        var actions: [Action] = []
        serve(now: now, excluding: connection.state == .closing(.turnEnded) ? connection.key : nil, actions: &actions)
        return finish(actions, now: now)
    }

    /// The time asked for by the last `scheduleTimer` (or later) has come.
    mutating func timerFired(now: NIODeadline) -> [Action] {
        scheduledWakeUp = nil
        var actions: [Action] = []
        while let (id, rank) = idleOrder.first, rank.since + limits.idleTimeout <= now {
            startClosing(id, actions: &actions)
        }
        while let (id, rank) = deadlines.first, rank.deadline <= now {
            guard let key = keyOfWaiter[id], let waiter = waitersByKey[key]?.first(where: { $0.id == id }) else {
                deadlines.remove(id)
                continue
            }
            let reason = waitReason(for: key)
            removeWaiter(id, now: now)
            actions.append(.failRequest(id, .waitTimedOut(waited: now - waiter.arrived, reason: reason)))
        }
        if !awaitingHandshake.isEmpty {
            for id in handshakeOrder.entries(olderThan: Self.handshakeSilence, at: now, where: isHandshaking) {
                guard let connection = connections[id], case .handshaking(let since) = connection.state else { continue }
                if !connection.heardFrom || since + Self.handshakeTurn <= now {
                    abandon(id, now: now, actions: &actions)
                }
            }
        }
        if socketTurnWanted {
            for id in connectOrder.entries(olderThan: limits.fairnessHoldTime, at: now, where: isConnecting) {
                abandon(id, now: now, actions: &actions)
            }
        }
        serve(now: now, actions: &actions)
        return finish(actions, now: now)
    }

    /// The waiting request is no longer wanted. A request already handed a connection is
    /// not affected: its connection comes back through `connectionReleased`.
    mutating func cancel(_ id: RequestID, now: NIODeadline) -> [Action] {
        guard keyOfWaiter[id] != nil else { return [] }
        removeWaiter(id, now: now)
        return finish([.failRequest(id, .cancelled)], now: now)
    }

    /// Closes idle connections unused since before `cutoff`; `.distantFuture` closes all.
    mutating func closeIdleConnections(idleSince cutoff: NIODeadline, now: NIODeadline) -> [Action] {
        var actions: [Action] = []
        let idle = connections.values.filter { ($0.idleSince ?? .distantFuture) < cutoff }.map(\.id).sorted()
        for id in idle { startClosing(id, actions: &actions) }
        serve(now: now, actions: &actions)
        return finish(actions, now: now)
    }

    // MARK: - Queries

    func counts(at now: NIODeadline) -> ConnectionPool.Counts {
        let recent = recentHandshakes.filter { now - $0 < Self.handshakeRateWindow }.count
        return ConnectionPool.Counts(
            open: connections.count, idle: idleCount, handshaking: handshakingCount, waiting: keyOfWaiter.count,
            peakOpen: peakOpen, peakHandshaking: peakHandshaking, handshakesCompleted: handshakesCompleted,
            waitingByClass: waitingByClass,
            handshakesPerSecond: Double(recent) * 1e9 / Double(Self.handshakeRateWindow.nanoseconds),
            connecting: connectingCount, awaitingHandshake: awaitingHandshake.count, closing: closingCount,
            evictions: evictions)
    }

    /// The connection open for `key`, if any.
    func connection(for key: String) -> ConnectionID? {
        connectionByKey[key]
    }

    /// Whether `id` is still waiting for a connection.
    func isWaiting(_ id: RequestID) -> Bool {
        keyOfWaiter[id] != nil
    }

    // MARK: - Serving

    /// Starts handshakes for connections whose TCP is up, then opens TCP connections for the
    /// best destinations without one, until a cap stops it. All such destinations need the
    /// same resources, so when the best one cannot have them, none after it can.
    private mutating func serve(now: NIODeadline, excluding excludedKey: String? = nil, actions: inout [Action]) {
        while handshakingCount < limits.maxTLSHandshakes, let (id, _) = awaitingHandshake.popFirst() {
            connections[id]?.state = .handshaking(since: now)
            handshakingCount += 1
            peakHandshaking = max(peakHandshaking, handshakingCount)
            handshakeOrder.append(id, at: now)
            actions.append(.startHandshake(id))
        }
        nextTokenNeeded = nil
        lastServeBlock = nil
        socketTurnWanted = false
        while let (key, _) = candidates.first(excluding: excludedKey) {
            // Connects run ahead of the handshakes by at most one round of slots.
            if awaitingHandshake.count >= limits.maxTLSHandshakes {
                lastServeBlock = .maxTLSHandshakes(limits.maxTLSHandshakes)
                return
            }
            // Paced connects start in rounds of a second's worth, which then go on as handshake
            // slots free up until the round's tokens are spent: the handshakes of a round overlap
            // as unpaced ones do, where smaller rounds left the loop idle between their steps
            // (per destination 1.5× the CPU of unpaced connects with rounds of a fifth, BENCHMARKS.md).
            let waitingCount = candidates.count - (excludedKey.map(candidates.contains) == true ? 1 : 0)
            let round = min(Self.connectRound(limits), waitingCount)
            guard bucket.tokens(at: now) >= (roundTokensLeft ? 1 : round) else {
                lastServeBlock = .maxNewConnectionsPerSecond(limits.maxNewConnectionsPerSecond)
                nextTokenNeeded = bucket.nextTokens(round)
                return
            }
            if connections.count >= limits.maxConnections {
                // A closing connection still holds its socket: close one more idle connection
                // only while fewer are closing for waiters than waiters could use the sockets.
                let wanted = min(waitingCount, bucket.tokens(at: now))
                if evictionsInProgress < wanted, let (victim, _) = evictable.first {
                    evictions += 1
                    startClosing(victim, because: .evicted, actions: &actions)
                    continue
                }
                lastServeBlock = .maxConnections(limits.maxConnections)
                socketTurnWanted = evictionsInProgress == 0 && connectingCount > 0
                return
            }
            bucket.take(at: now)
            roundTokensLeft = bucket.tokens(at: now) > 0
            let id = ConnectionID(nextConnectionNumber)
            nextConnectionNumber += 1
            connections[id] = Connection(id: id, key: key, state: .connecting(since: now))
            connectionByKey[key] = id
            candidates.remove(key)
            connectingCount += 1
            connectOrder.append(id, at: now)
            peakOpen = max(peakOpen, connections.count)
            actions.append(.createConnection(id, key: key))
        }
    }

    /// The most new connections a paced round waits to have tokens for: a second's worth.
    static func connectRound(_ limits: ConnectionPool.Limits) -> Int {
        limits.maxNewConnectionsPerSecond
    }

    /// Ends an attempt that took its whole turn while others waited: counted as a timeout.
    private mutating func abandon(_ id: ConnectionID, now: NIODeadline, actions: inout [Action]) {
        guard let connection = connections[id] else { return }
        let since: NIODeadline = switch connection.state {
        case .connecting(let since), .handshaking(let since): since
        default: now
        }
        startClosing(id, actions: &actions)
        ranker.record(.timeout, for: connection.key, at: now)
        for waiter in takeAllWaiters(of: connection.key) {
            actions.append(.failRequest(waiter.id, .connectAbandoned(after: now - since)))
        }
    }

    /// The best destination of another key that waits only because every socket is busy, so
    /// that giving back a connection would let it in right away.
    private func socketStarvedCandidate(now: NIODeadline, excluding key: String) -> CandidateRank? {
        guard connections.count >= limits.maxConnections, evictable.isEmpty,
              awaitingHandshake.count < limits.maxTLSHandshakes, bucket.hasToken(at: now) else { return nil }
        return candidates.first(excluding: key)?.priority
    }

    private func turnIsOver(_ connection: Connection, now: NIODeadline) -> Bool {
        connection.exchanges >= limits.fairnessExchanges
            || now - (connection.established ?? now) >= limits.fairnessHoldTime
    }

    private func waitReason(for key: String) -> ConnectionPoolError.WaitReason {
        if let id = connectionByKey[key], let connection = connections[id] {
            switch connection.state {
            case .connecting, .awaitingHandshake, .handshaking: return .connectionInProgress
            default: return .destinationBusy
            }
        }
        return lastServeBlock ?? .outranked
    }

    /// Appends the timer action when the next thing due is earlier than the timer set.
    private mutating func finish(_ actions: [Action], now: NIODeadline) -> [Action] {
        var due = deadlines.first?.priority.deadline
        func consider(_ time: NIODeadline?) {
            if let time { due = min(due ?? time, time) }
        }
        consider(idleOrder.first.map { $0.priority.since + limits.idleTimeout })
        consider(nextTokenNeeded)
        // Drops finished handshakes from the front of the queue, which keeps it short.
        _ = handshakeOrder.first(where: isHandshaking)
        if !awaitingHandshake.isEmpty {
            // At most max_tls_handshakes are running: looking at each is cheap.
            for id in handshakeOrder.entries(olderThan: .zero, at: now, where: isHandshaking) {
                guard let connection = connections[id], case .handshaking(let since) = connection.state else { continue }
                consider(since + (connection.heardFrom ? Self.handshakeTurn : Self.handshakeSilence))
            }
        }
        if socketTurnWanted {
            consider(connectOrder.first(where: isConnecting).map { $0.at + limits.fairnessHoldTime })
        }
        guard let due, scheduledWakeUp.map({ due < $0 }) ?? true else { return actions }
        scheduledWakeUp = due
        return actions + [.scheduleTimer(at: due)]
    }

    // MARK: - Connections

    private mutating func hand(_ connectionID: ConnectionID, to request: RequestID, now: NIODeadline,
                               actions: inout [Action]) {
        guard var connection = connections[connectionID] else { return }
        if connection.idleSince != nil {
            idleCount -= 1
            evictable.remove(connectionID)
            idleOrder.remove(connectionID)
        }
        connection.state = .busy(request)
        connection.exchanges += 1
        connection.use = Self.logSum(connection.use, useFrame(now))
        connections[connectionID] = connection
        actions.append(.executeOnConnection(request, connectionID))
    }

    private mutating func becomeIdle(_ id: ConnectionID, now: NIODeadline) {
        guard let connection = connections[id] else { return }
        connections[id]?.state = .idle(since: now)
        idleCount += 1
        idleOrder.set(id, IdleRank(since: now, id: id))
        evictable.set(id, EvictionRank(use: connection.use, id: id))
    }

    /// Tells the driver to close the connection; it keeps its socket, and its place under
    /// `maxConnections`, until `connectionClosed`.
    private mutating func startClosing(_ id: ConnectionID, because reason: Closing = .other, actions: inout [Action]) {
        guard let connection = connections[id] else { return }
        if case .closing = connection.state { return }
        leaveState(connection)
        connections[id]?.state = .closing(reason)
        closingCount += 1
        if reason == .evicted { evictionsInProgress += 1 }
        if connectionByKey[connection.key] == id {
            connectionByKey[connection.key] = nil
        }
        refreshCandidate(connection.key, now: nil)
        actions.append(.closeConnection(id))
    }

    private mutating func remove(_ id: ConnectionID) {
        guard let connection = connections.removeValue(forKey: id) else { return }
        leaveState(connection)
        if case .closing(let reason) = connection.state {
            closingCount -= 1
            if reason == .evicted { evictionsInProgress -= 1 }
        }
        if connectionByKey[connection.key] == id {
            connectionByKey[connection.key] = nil
            refreshCandidate(connection.key, now: nil)
        }
    }

    /// Updates the counts and ordered sets for a connection leaving its state.
    private mutating func leaveState(_ connection: Connection) {
        switch connection.state {
        case .connecting: connectingCount -= 1
        case .awaitingHandshake: awaitingHandshake.remove(connection.id)
        case .handshaking: handshakingCount -= 1
        case .idle:
            idleCount -= 1
            evictable.remove(connection.id)
            idleOrder.remove(connection.id)
        case .busy, .closing: break
        }
    }

    private func isConnecting(_ id: ConnectionID, _ since: NIODeadline) -> Bool {
        connections[id]?.state == .connecting(since: since)
    }

    private func isHandshaking(_ id: ConnectionID, _ since: NIODeadline) -> Bool {
        connections[id]?.state == .handshaking(since: since)
    }

    /// `now` in units of the use count's half-life: adding one exchange at `now` adds
    /// 2^useFrame(now) to the count, so comparing logs compares counts decayed to any one time.
    private func useFrame(_ now: NIODeadline) -> Double {
        Double(now.uptimeNanoseconds) / Double(max(1, limits.idleTimeout.nanoseconds))
    }

    /// log2(2^a + 2^b), without overflow.
    private static func logSum(_ a: Double, _ b: Double) -> Double {
        let (high, low) = a > b ? (a, b) : (b, a)
        return high + log2(1 + exp2(low - high))
    }

    // MARK: - Waiters

    /// Puts `key` in line for a new connection, or takes it out, as its waiters and
    /// connection now say; `now` (when given) refreshes its score.
    private mutating func refreshCandidate(_ key: String, now: NIODeadline?) {
        guard connectionByKey[key] == nil, let first = nextWaiter(of: key) else {
            candidates.remove(key)
            return
        }
        let score = now.map { ranker.score(of: key, at: $0) } ?? candidates.priority(of: key)?.score
            ?? ranker.score(of: key, at: first.arrived)
        candidates.set(key, CandidateRank(requestClass: first.requestClass, score: score, sequence: first.sequence))
    }

    private static func first(of waiters: [Waiter]) -> Waiter? {
        waiters.min { $0.isServed(before: $1) }
    }

    private func nextWaiter(of key: String) -> Waiter? {
        waitersByKey[key].flatMap(Self.first(of:))
    }

    private mutating func takeNextWaiter(of key: String) -> Waiter? {
        guard let waiter = nextWaiter(of: key) else { return nil }
        removeWaiter(waiter.id, now: nil)
        return waiter
    }

    private mutating func takeAllWaiters(of key: String) -> [Waiter] {
        let waiters = (waitersByKey[key] ?? []).sorted { $0.isServed(before: $1) }
        for waiter in waiters { removeWaiter(waiter.id, now: nil) }
        return waiters
    }

    private mutating func removeWaiter(_ id: RequestID, now: NIODeadline?) {
        deadlines.remove(id)
        guard let key = keyOfWaiter.removeValue(forKey: id), var waiters = waitersByKey[key],
              let index = waiters.firstIndex(where: { $0.id == id }) else { return }
        let waiter = waiters.remove(at: index)
        waitersByKey[key] = waiters.isEmpty ? nil : waiters
        waitingByClass[waiter.requestClass, default: 1] -= 1
        refreshCandidate(key, now: now)
    }
}
