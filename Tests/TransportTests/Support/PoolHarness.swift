import NIOCore
import Testing
@testable import Transport

typealias PoolMachine = ConnectionPoolStateMachine
typealias PoolAction = ConnectionPoolStateMachine.Action
typealias RequestID = ConnectionPoolStateMachine.RequestID
typealias ConnectionID = ConnectionPoolStateMachine.ConnectionID

/// A time on the injected clock, in milliseconds from the start of a test.
func ms(_ value: Int64) -> NIODeadline {
    .uptimeNanoseconds(UInt64(1_000_000_000_000 + value * 1_000_000))
}

/// Pool limits for a test: generous everywhere except where a test narrows them.
func poolLimits(connections: Int = 64, handshakes: Int = 64, perSecond: Int = 10_000,
                fairnessExchanges: Int = 1_000_000, fairnessHold: TimeAmount = .hours(10),
                idle: TimeAmount = .hours(10)) -> ConnectionPool.Limits {
    ConnectionPool.Limits(maxConnections: connections, maxTLSHandshakes: handshakes, connectTimeout: .seconds(10),
                          tlsHandshakeTimeout: .seconds(10), idleTimeout: idle, maxNewConnectionsPerSecond: perSecond,
                          fairnessExchanges: fairnessExchanges, fairnessHoldTime: fairnessHold, waitTimeout: .hours(10))
}

/// Drives a `ConnectionPoolStateMachine` the way the `ConnectionPool` actor does, keeping its
/// own record of what a driver would hold, and checks after every step that no action
/// breaks a cap or a rule: open connections, handshakes, one connection per key, one
/// request per connection, and the machine's counts agreeing with the record.
struct PoolHarness {
    struct HeldConnection {
        enum Phase { case connecting, awaitingHandshake, handshaking, open, closing }
        let key: String
        var phase = Phase.connecting
        var busyWith: RequestID?
        var established: Bool { phase == .open }
    }

    /// Whether a closed connection's socket is reported closed at once (a driver whose close
    /// completes immediately); when false, `socketClosed` reports it.

    var machine: PoolMachine
    let limits: ConnectionPool.Limits
    var now = ms(0)
    var timer: NIODeadline?
    var connections: [ConnectionID: HeldConnection] = [:]
    var executing: [RequestID: ConnectionID] = [:]
    var failures: [RequestID: PoolMachine.Failure] = [:]
    var created: [(id: ConnectionID, key: String, at: NIODeadline)] = []
    var executed: [(request: RequestID, connection: ConnectionID, at: NIODeadline)] = []
    var closed: [ConnectionID] = []
    var closesAtOnce = true
    var steps = 0

    init(_ limits: ConnectionPool.Limits, ranker: HostRanker = HostRanker()) {
        self.limits = limits
        self.machine = PoolMachine(limits: limits, ranker: ranker)
    }

    var createdKeys: [String] { created.map(\.key) }
    var executedRequests: [Int] { executed.map(\.request.value) }

    /// The connection held for `key` that is not closing.
    func connection(of key: String) -> ConnectionID? {
        connections.first { $0.value.key == key && $0.value.phase != .closing }?.key
    }

    @discardableResult
    mutating func request(_ number: Int, _ key: String, _ requestClass: RequestClass = .pduTransaction,
                          waiting: TimeAmount = .hours(5), reusingIdle: Bool = true) -> [PoolAction] {
        apply(machine.request(RequestID(number), key: key, class: requestClass, deadline: now + waiting,
                              reusingIdle: reusingIdle, now: now))
    }

    /// Completes the TCP connect and, when the pool starts the handshake at once, the handshake.
    @discardableResult
    mutating func establish(_ key: String, sourceLocation: SourceLocation = #_sourceLocation) -> [PoolAction] {
        guard let id = connection(of: key), let phase = connections[id]?.phase, phase != .open else {
            Issue.record("no connection being opened for \(key)", sourceLocation: sourceLocation)
            return []
        }
        var actions: [PoolAction] = []
        if phase == .connecting { actions += tcpConnect(key, sourceLocation: sourceLocation) }
        guard connections[id]?.phase == .handshaking else {
            Issue.record("\(key) got no handshake slot", sourceLocation: sourceLocation)
            return actions
        }
        return actions + completeHandshake(key, sourceLocation: sourceLocation)
    }

    @discardableResult
    mutating func tcpConnect(_ key: String, sourceLocation: SourceLocation = #_sourceLocation) -> [PoolAction] {
        guard let id = connection(of: key), connections[id]?.phase == .connecting else {
            Issue.record("no TCP connect in progress for \(key)", sourceLocation: sourceLocation)
            return []
        }
        connections[id]?.phase = .awaitingHandshake
        return apply(machine.connectionTCPConnected(id, now: now))
    }

    @discardableResult
    mutating func completeHandshake(_ key: String, sourceLocation: SourceLocation = #_sourceLocation) -> [PoolAction] {
        guard let id = connection(of: key), connections[id]?.phase == .handshaking else {
            Issue.record("no handshake running for \(key)", sourceLocation: sourceLocation)
            return []
        }
        connections[id]?.phase = .open
        return apply(machine.connectionEstablished(id, now: now))
    }

    /// The server of `key`'s handshake sent its first bytes.
    @discardableResult
    mutating func serverAnswered(_ key: String, sourceLocation: SourceLocation = #_sourceLocation) -> [PoolAction] {
        guard let id = connection(of: key), connections[id]?.phase == .handshaking else {
            Issue.record("no handshake running for \(key)", sourceLocation: sourceLocation)
            return []
        }
        return apply(machine.handshakeProgressed(id, now: now))
    }

    /// The connect or handshake in progress for `key` fails.
    @discardableResult
    mutating func fail(_ key: String, timedOut: Bool = false, sourceLocation: SourceLocation = #_sourceLocation) -> [PoolAction] {
        guard let id = connection(of: key), let phase = connections[id]?.phase, phase == .connecting || phase == .handshaking else {
            Issue.record("no connection being opened for \(key)", sourceLocation: sourceLocation)
            return []
        }
        connections[id] = nil
        return apply(machine.connectionFailed(id, timedOut: timedOut, now: now))
    }

    /// The driver reports the socket of a connection it was told to close as closed.
    @discardableResult
    mutating func socketClosed(_ id: ConnectionID, sourceLocation: SourceLocation = #_sourceLocation) -> [PoolAction] {
        guard connections[id]?.phase == .closing else {
            Issue.record("\(id) is not closing", sourceLocation: sourceLocation)
            return []
        }
        connections[id] = nil
        return apply(machine.connectionClosed(id, now: now))
    }

    @discardableResult
    mutating func release(_ number: Int, reusable: Bool = true, outcome: HostRanker.Outcome? = nil,
                          sourceLocation: SourceLocation = #_sourceLocation) -> [PoolAction] {
        guard let id = executing.removeValue(forKey: RequestID(number)) else {
            Issue.record("request \(number) holds no connection", sourceLocation: sourceLocation)
            return []
        }
        connections[id]?.busyWith = nil
        return apply(machine.connectionReleased(id, reusable: reusable, outcome: outcome, now: now))
    }

    @discardableResult
    mutating func peerClosed(_ key: String) -> [PoolAction] {
        guard let id = connection(of: key) else { return [] }
        connections[id] = nil
        return apply(machine.connectionClosed(id, now: now))
    }

    @discardableResult
    mutating func cancel(_ number: Int) -> [PoolAction] {
        apply(machine.cancel(RequestID(number), now: now))
    }

    @discardableResult
    mutating func closeIdle(since cutoff: NIODeadline) -> [PoolAction] {
        apply(machine.closeIdleConnections(idleSince: cutoff, now: now))
    }

    /// Moves the clock to `deadline`, firing the timer on the way each time it is due.
    @discardableResult
    mutating func advance(to deadline: NIODeadline) -> [PoolAction] {
        var actions: [PoolAction] = []
        while let due = timer, due <= deadline {
            actions += fireTimer()
        }
        now = max(now, deadline)
        return actions
    }

    @discardableResult
    mutating func advance(by amount: TimeAmount) -> [PoolAction] {
        advance(to: now + amount)
    }

    mutating func fireTimer() -> [PoolAction] {
        guard let due = timer else { return [] }
        timer = nil
        now = max(now, due)
        return apply(machine.timerFired(now: now))
    }

    @discardableResult
    mutating func apply(_ actions: [PoolAction], sourceLocation: SourceLocation = #_sourceLocation) -> [PoolAction] {
        steps += 1
        var closedAtOnce: [ConnectionID] = []
        for action in actions {
            switch action {
            case .createConnection(let id, let key):
                #expect(connections[id] == nil, "\(id) created twice", sourceLocation: sourceLocation)
                #expect(connection(of: key) == nil, "a second connection for \(key)", sourceLocation: sourceLocation)
                connections[id] = HeldConnection(key: key)
                created.append((id, key, now))
            case .startHandshake(let id):
                #expect(connections[id]?.phase == .awaitingHandshake, "\(id) handshake started out of turn",
                        sourceLocation: sourceLocation)
                connections[id]?.phase = .handshaking
            case .executeOnConnection(let request, let id):
                guard let held = connections[id] else {
                    Issue.record("\(request) handed unknown \(id)", sourceLocation: sourceLocation)
                    continue
                }
                #expect(held.established, "\(request) handed \(id) before it was open", sourceLocation: sourceLocation)
                #expect(held.busyWith == nil, "\(id) pipelined \(request) behind \(String(describing: held.busyWith))",
                        sourceLocation: sourceLocation)
                #expect(executing[request] == nil && failures[request] == nil, sourceLocation: sourceLocation)
                connections[id]?.busyWith = request
                executing[request] = id
                executed.append((request, id, now))
            case .closeConnection(let id):
                #expect(connections[id]?.busyWith == nil, "\(id) closed under a request", sourceLocation: sourceLocation)
                #expect(connections[id] != nil && connections[id]?.phase != .closing, "\(id) closed twice",
                        sourceLocation: sourceLocation)
                connections[id]?.phase = .closing
                closed.append(id)
                if closesAtOnce { closedAtOnce.append(id) }
            case .failRequest(let request, let failure):
                #expect(failures[request] == nil && executing[request] == nil, sourceLocation: sourceLocation)
                failures[request] = failure
            case .scheduleTimer(let deadline):
                timer = deadline
            }
        }
        checkCaps(sourceLocation: sourceLocation)
        var followUps: [PoolAction] = []
        for id in closedAtOnce {
            connections[id] = nil
            followUps += apply(machine.connectionClosed(id, now: now), sourceLocation: sourceLocation)
        }
        return actions + followUps
    }

    func checkCaps(sourceLocation: SourceLocation = #_sourceLocation) {
        let handshaking = connections.values.filter { $0.phase == .handshaking }.count
        let idle = connections.values.filter { $0.established && $0.busyWith == nil }.count
        #expect(connections.count <= limits.maxConnections, "max_connections exceeded", sourceLocation: sourceLocation)
        #expect(handshaking <= limits.maxTLSHandshakes, "max_tls_handshakes exceeded", sourceLocation: sourceLocation)
        let counts = machine.counts(at: now)
        #expect(counts.open == connections.count, sourceLocation: sourceLocation)
        #expect(counts.handshaking == handshaking, sourceLocation: sourceLocation)
        #expect(counts.connecting == connections.values.filter { $0.phase == .connecting }.count, sourceLocation: sourceLocation)
        #expect(counts.closing == connections.values.filter { $0.phase == .closing }.count, sourceLocation: sourceLocation)
        #expect(counts.idle == idle, sourceLocation: sourceLocation)
        #expect(counts.peakOpen <= limits.maxConnections, sourceLocation: sourceLocation)
        #expect(counts.peakHandshaking <= limits.maxTLSHandshakes, sourceLocation: sourceLocation)
    }
}
