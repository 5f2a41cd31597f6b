import NIOCore
import Testing
@testable import Transport

/// A discrete-event run of the pool state machine against simulated destinations, on the
/// injected clock: connects and exchanges finish when their destination's behaviour says,
/// and each destination sends its next request as soon as the previous one ended (the
/// worst case: no backoff). Every step goes through `PoolHarness`, which checks the caps.
struct PoolSimulation {
    /// How a simulated destination answers.
    enum Behaviour {
        /// Connects after `handshake`, answers every exchange after `exchange`.
        case live(handshake: TimeAmount, exchange: TimeAmount)
        /// Refuses the connection after `after`.
        case refusing(after: TimeAmount)
        /// Never finishes connecting (a blackholed address: the TCP connect gets no answer).
        case neverConnects
        /// Completes TCP, then never answers the TLS handshake.
        case silentAfterTCP
        /// Connects, then every exchange times out after `timeout`.
        case hangingExchanges(handshake: TimeAmount, timeout: TimeAmount)
    }

    /// One request's wait from asking for a connection to being handed one.
    struct Wait {
        let key: String
        let requested: NIODeadline
        let waited: TimeAmount
    }

    private enum Event {
        case tcpConnected(ConnectionID)
        case connected(ConnectionID, succeeded: Bool)
        case exchangeDone(RequestID)
        case request(String)
    }

    var harness: PoolHarness
    let behaviour: (String) -> Behaviour
    var requestClass: (String) -> RequestClass = { _ in .pduTransaction }
    var waitTimeout: TimeAmount = .hours(5)
    /// How many more requests each destination sends after the one in progress.
    var requestsLeft: [String: Int] = [:]
    private(set) var waits: [Wait] = []
    private(set) var delivered: [String: Int] = [:]
    private(set) var failed: [String: Int] = [:]
    private(set) var failures: [String: [PoolMachine.Failure]] = [:]
    /// When set, each new connection records the other destinations then waiting for one.
    var recordsCompetitors = false
    private(set) var creations: [(key: String, at: NIODeadline, competitors: Set<String>)] = []
    private var requests: [RequestID: (key: String, at: NIODeadline)] = [:]
    private var unserved: Set<RequestID> = []
    private var pending: [(at: NIODeadline, order: Int, event: Event)] = []
    private var order = 0
    private var nextRequest = 0

    init(_ limits: ConnectionPool.Limits, behaviour: @escaping (String) -> Behaviour) {
        self.harness = PoolHarness(limits)
        self.behaviour = behaviour
    }

    var now: NIODeadline { harness.now }

    /// Destinations with a request that got neither a connection nor a failure.
    var outstanding: Int { requests.count }

    mutating func send(_ key: String) {
        let id = RequestID(nextRequest)
        nextRequest += 1
        requests[id] = (key, now)
        unserved.insert(id)
        react(harness.request(id.value, key, requestClass(key), waiting: waitTimeout))
    }

    /// Runs events and timers in time order until nothing is left before `end`, yielding
    /// now and then so that a long run does not hold a cooperative thread other tests need.
    mutating func run(until end: NIODeadline) async {
        var events = 0
        while true {
            events += 1
            if events % 64 == 0 { await Task.yield() }
            let next = pending.indices.min { (pending[$0].at, pending[$0].order) < (pending[$1].at, pending[$1].order) }
            if let due = harness.timer, due <= end, next.map({ due <= pending[$0].at }) ?? true {
                react(harness.fireTimer())
                continue
            }
            guard let next, pending[next].at <= end else { break }
            let (at, _, event) = pending.remove(at: next)
            harness.now = max(harness.now, at)
            handle(event)
        }
        harness.now = max(harness.now, end)
    }

    private mutating func handle(_ event: Event) {
        switch event {
        case .request(let key):
            send(key)
        case .tcpConnected(let id):
            // The driver abandoned this attempt (closeConnection) before it finished.
            guard let held = harness.connections[id], held.phase == .connecting else { return }
            react(harness.tcpConnect(held.key))
        case .connected(let id, let succeeded):
            guard let held = harness.connections[id], held.phase == .connecting || held.phase == .handshaking else { return }
            react(succeeded ? harness.completeHandshake(held.key) : harness.fail(held.key))
        case .exchangeDone(let id):
            guard let key = requests.removeValue(forKey: id)?.key else { return }
            switch behaviour(key) {
            case .live(_, let exchange):
                delivered[key, default: 0] += 1
                react(harness.release(id.value, outcome: .success(latency: exchange)))
            default:
                failed[key, default: 0] += 1
                react(harness.release(id.value, reusable: false, outcome: .timeout))
            }
            sendNext(key)
        }
    }

    private mutating func react(_ actions: [PoolAction]) {
        for action in actions {
            switch action {
            case .createConnection(let id, let key):
                if recordsCompetitors {
                    let connected = Set(harness.connections.values.map(\.key))
                    let competitors = unserved.compactMap { requests[$0]?.key }.filter { !connected.contains($0) }
                    creations.append((key, now, Set(competitors)))
                }
                // TCP takes a quarter of the time to connect, the handshake the rest.
                switch behaviour(key) {
                case .live(let handshake, _), .hangingExchanges(let handshake, _):
                    schedule(.tcpConnected(id), after: .nanoseconds(handshake.nanoseconds / 4))
                case .refusing(let after):
                    schedule(.connected(id, succeeded: false), after: after)
                case .silentAfterTCP:
                    schedule(.tcpConnected(id), after: .milliseconds(1))
                case .neverConnects:
                    break
                }
            case .startHandshake(let id):
                guard let key = harness.connections[id]?.key else { continue }
                switch behaviour(key) {
                case .live(let handshake, _), .hangingExchanges(let handshake, _):
                    schedule(.connected(id, succeeded: true), after: handshake - .nanoseconds(handshake.nanoseconds / 4))
                default:
                    break
                }
            case .executeOnConnection(let id, _):
                guard let request = requests[id] else { continue }
                unserved.remove(id)
                waits.append(Wait(key: request.key, requested: request.at, waited: now - request.at))
                switch behaviour(request.key) {
                case .live(_, let exchange): schedule(.exchangeDone(id), after: exchange)
                case .hangingExchanges(_, let timeout): schedule(.exchangeDone(id), after: timeout)
                case .refusing, .neverConnects, .silentAfterTCP: Issue.record("\(request.key) cannot carry a request")
                }
            case .failRequest(let id, let failure):
                guard let key = requests.removeValue(forKey: id)?.key else { continue }
                unserved.remove(id)
                failed[key, default: 0] += 1
                failures[key, default: []].append(failure)
                sendNext(key)
            case .closeConnection, .scheduleTimer:
                break
            }
        }
    }

    private mutating func sendNext(_ key: String) {
        guard let left = requestsLeft[key], left > 0 else { return }
        requestsLeft[key] = left - 1
        schedule(.request(key), after: .zero)
    }

    private mutating func schedule(_ event: Event, after delay: TimeAmount) {
        pending.append((now + delay, order, event))
        order += 1
    }
}
