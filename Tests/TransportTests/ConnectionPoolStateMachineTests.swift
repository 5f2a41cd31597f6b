import NIOCore
import Testing
@testable import Transport

@Suite("ConnectionPoolStateMachine: caps")
struct ConnectionPoolCapTests {
    @Test("max_connections: a request beyond the cap waits for a slot")
    func maxConnections() {
        var pool = PoolHarness(poolLimits(connections: 2))
        pool.request(0, "a")
        pool.request(1, "b")
        pool.request(2, "c")
        #expect(pool.createdKeys == ["a", "b"])
        // A request whose connection is still being opened is waiting too.
        #expect(pool.machine.counts(at: pool.now).waiting == 3)
        pool.establish("a")
        pool.establish("b")
        #expect(pool.machine.counts(at: pool.now).waiting == 1)
        pool.release(0, reusable: false)
        #expect(pool.createdKeys == ["a", "b", "c"])
        #expect(pool.machine.counts(at: pool.now).peakOpen == 2)
    }

    @Test("max_connections counts connections being opened and idle ones")
    func maxConnectionsCountsEveryState() {
        var pool = PoolHarness(poolLimits(connections: 2, handshakes: 1))
        pool.request(0, "a")
        pool.request(1, "b")
        pool.request(2, "c")
        // a and b hold both sockets while they connect: c waits.
        #expect(pool.createdKeys == ["a", "b"])
        pool.establish("a")
        pool.release(0)
        // a went idle, so c takes its socket: a is closed first.
        #expect(pool.closed == [pool.created[0].id])
        #expect(pool.createdKeys == ["a", "b", "c"])
    }

    @Test("a connection closed to make room holds its socket until it is closed")
    func closingConnectionCountsUntilClosed() {
        var pool = PoolHarness(poolLimits(connections: 2))
        pool.closesAtOnce = false
        pool.request(0, "a")
        pool.establish("a")
        pool.release(0)
        pool.request(1, "b")
        pool.establish("b")
        pool.release(1)
        pool.request(2, "c")
        pool.request(3, "d")
        // Two idle connections are closed for the two waiters; neither opens before a socket is free.
        #expect(pool.closed == [pool.created[0].id, pool.created[1].id])
        #expect(pool.createdKeys == ["a", "b"])
        #expect(pool.machine.counts(at: pool.now).closing == 2)
        pool.socketClosed(pool.created[0].id)
        #expect(pool.createdKeys == ["a", "b", "c"])
        pool.socketClosed(pool.created[1].id)
        #expect(pool.createdKeys == ["a", "b", "c", "d"])
        #expect(pool.machine.counts(at: pool.now).peakOpen == 2)
    }

    @Test("max_tls_handshakes: one handshake at a time, after the TCP connects")
    func maxTLSHandshakes() {
        var pool = PoolHarness(poolLimits(handshakes: 1))
        pool.request(0, "a")
        pool.request(1, "b")
        pool.request(2, "c")
        // TCP connects hold no handshake slot.
        #expect(pool.createdKeys == ["a", "b", "c"])
        pool.tcpConnect("a")
        pool.tcpConnect("b")
        pool.tcpConnect("c")
        #expect(pool.machine.counts(at: pool.now).handshaking == 1)
        #expect(pool.machine.counts(at: pool.now).awaitingHandshake == 2)
        pool.completeHandshake("a")
        pool.fail("b")
        pool.completeHandshake("c")
        #expect(pool.executedRequests == [0, 2])
        #expect(pool.machine.counts(at: pool.now).peakHandshaking == 1)
    }

    @Test("TCP connects run ahead of the handshakes by at most max_tls_handshakes connections")
    func connectsRunAheadByOneRound() {
        var pool = PoolHarness(poolLimits(handshakes: 2))
        for number in 0..<10 { pool.request(number, "d\(number)") }
        for number in 0..<10 { pool.tcpConnect("d\(number)") }
        // Two handshaking, two waiting for a slot: the other six connected, and no more were started.
        #expect(pool.machine.counts(at: pool.now).handshaking == 2)
        pool.request(10, "late")
        #expect(pool.machine.counts(at: pool.now).awaitingHandshake == 8)
        #expect(!pool.createdKeys.contains("late"))
        for number in 0..<9 { pool.completeHandshake("d\(number)") }
        #expect(pool.createdKeys.contains("late"))
    }

    @Test("max_new_connections_per_second: a burst of one second's worth, then rounds of as many",
          arguments: [1, 2, 5, 16, 20])
    func newConnectionRate(rate: Int) {
        var pool = PoolHarness(poolLimits(perSecond: rate))
        for number in 0..<(3 * rate) { pool.request(number, "d\(number)") }
        #expect(pool.created.count == rate)
        let interval = 1_000_000_000 / Int64(rate)
        let round = rate
        #expect(pool.timer.map { $0 <= ms(0) + .nanoseconds(Int64(round) * interval) } == true)
        pool.advance(to: ms(3000))
        let times = pool.created.map { Int64($0.at.uptimeNanoseconds) - Int64(ms(0).uptimeNanoseconds) }
        // Each round starts when its last token is there; the last round may be short.
        let paced = (1...(2 * rate)).map { (number: Int) -> Int64 in
            let roundEnd: Int = (number + round - 1) / round * round
            return Int64(min(roundEnd, 2 * rate)) * interval
        }
        #expect(times == Array(repeating: 0, count: rate) + paced)
        #expect(pool.createdKeys == (0..<(3 * rate)).map { "d\($0)" })
    }

    @Test("one connection per destination: its requests take turns, one at a time")
    func oneConnectionPerKey() {
        var pool = PoolHarness(poolLimits())
        pool.request(0, "a")
        pool.request(1, "a")
        pool.request(2, "a")
        #expect(pool.createdKeys == ["a"])
        pool.establish("a")
        #expect(pool.executedRequests == [0])
        pool.release(0)
        #expect(pool.executedRequests == [0, 1])
        pool.release(1)
        pool.release(2)
        #expect(pool.executedRequests == [0, 1, 2])
        #expect(Set(pool.executed.map(\.connection)).count == 1)
        #expect(pool.createdKeys == ["a"])
        #expect(pool.machine.counts(at: pool.now).idle == 1)
    }

    @Test("an idle connection is reused, or replaced when the caller asks for a fresh one")
    func reuseOrReplaceIdle() {
        var pool = PoolHarness(poolLimits())
        pool.request(0, "a")
        pool.establish("a")
        pool.release(0)
        let first = pool.created[0].id
        #expect(pool.request(1, "a") == [.executeOnConnection(RequestID(1), first)])
        pool.release(1)
        pool.request(2, "a", reusingIdle: false)
        #expect(pool.closed == [first])
        #expect(pool.createdKeys == ["a", "a"])
        pool.establish("a")
        #expect(pool.executed.last?.connection == pool.created[1].id)
    }

    @Test("a connection that is not reusable is closed and its slot goes to the next waiter")
    func unusableConnectionFreesSlot() {
        var pool = PoolHarness(poolLimits(connections: 1))
        pool.request(0, "a")
        pool.establish("a")
        pool.request(1, "a")
        pool.request(2, "b")
        pool.release(0, reusable: false)
        #expect(pool.closed == [pool.created[0].id])
        // a's second request and b compete on equal terms; a came first.
        #expect(pool.createdKeys == ["a", "a"])
    }

    @Test("a connection the peer closed frees its slot")
    func peerClosedFreesSlot() {
        var pool = PoolHarness(poolLimits(connections: 1))
        pool.request(0, "a")
        pool.establish("a")
        pool.release(0)
        pool.request(1, "b", waiting: .seconds(1))
        // b took a's slot by closing the idle connection at once.
        #expect(pool.createdKeys == ["a", "b"])
        pool.establish("b")
        pool.release(1)
        pool.peerClosed("b")
        pool.request(2, "c")
        #expect(pool.createdKeys == ["a", "b", "c"])
    }
}

@Suite("ConnectionPoolStateMachine: who is served first")
struct ConnectionPoolOrderingTests {
    @Test("waiters are served by class: interactive query, PDU, EDU-only, catch-up")
    func classOrder() {
        var pool = PoolHarness(poolLimits(connections: 1))
        pool.request(0, "busy")
        pool.establish("busy")
        pool.request(1, "d", .catchUp)
        pool.request(2, "c", .eduTransaction)
        pool.request(3, "b", .pduTransaction)
        pool.request(4, "a", .interactiveQuery)
        pool.release(0, reusable: false)
        for (number, key) in [(4, "a"), (3, "b"), (2, "c"), (1, "d")] {
            #expect(pool.createdKeys.last == key)
            pool.establish(key)
            pool.release(number, reusable: false)
        }
        #expect(pool.createdKeys == ["busy", "a", "b", "c", "d"])
    }

    static func rankedHosts() -> HostRanker {
        var ranker = HostRanker()
        for second in 0..<5 {
            ranker.record(.success(latency: .milliseconds(50)), for: "fast", at: ms(Int64(second) * 1000))
            ranker.record(.success(latency: .seconds(2)), for: "slow", at: ms(Int64(second) * 1000))
        }
        for second in 0..<3 { ranker.record(.failure, for: "dead", at: ms(Int64(second) * 1000)) }
        for second in 0..<2 { ranker.record(.timeout, for: "lost", at: ms(Int64(second) * 1000)) }
        return ranker
    }

    @Test("within a class, destinations are served by HostRanker score, whatever their arrival order")
    func rankOrder() {
        var pool = PoolHarness(poolLimits(connections: 1), ranker: Self.rankedHosts())
        pool.advance(to: ms(5000))
        pool.request(0, "busy")
        pool.establish("busy")
        for (number, key) in ["dead", "lost", "slow", "new", "fast"].enumerated() {
            pool.request(number + 1, key)
        }
        pool.release(0, reusable: false)
        for _ in 0..<5 {
            let key = pool.createdKeys.last!
            pool.establish(key)
            pool.release(pool.executed.last!.request.value, reusable: false)
        }
        #expect(pool.createdKeys == ["busy", "fast", "new", "slow", "dead", "lost"])
    }

    @Test("class comes before rank: a failing host's query goes before a healthy host's catch-up")
    func classBeforeRank() {
        var pool = PoolHarness(poolLimits(connections: 1), ranker: Self.rankedHosts())
        pool.advance(to: ms(5000))
        pool.request(0, "busy")
        pool.establish("busy")
        pool.request(1, "fast", .catchUp)
        pool.request(2, "lost", .interactiveQuery)
        pool.release(0, reusable: false)
        #expect(pool.createdKeys == ["busy", "lost"])
    }

    @Test("equal rank keeps arrival order", arguments: [2, 5, 20])
    func fifoWithinEqualRank(count: Int) {
        var pool = PoolHarness(poolLimits(handshakes: 1))
        for number in 0..<count { pool.request(number, "d\(number)") }
        for number in 0..<count { pool.establish("d\(number)") }
        #expect(pool.createdKeys == (0..<count).map { "d\($0)" })
        #expect(pool.executedRequests == Array(0..<count))
    }

    @Test("a destination's own requests go by class, then arrival")
    func withinKeyOrder() {
        var pool = PoolHarness(poolLimits())
        pool.request(0, "a")
        pool.establish("a")
        pool.request(1, "a", .catchUp)
        pool.request(2, "a", .pduTransaction)
        pool.request(3, "a", .interactiveQuery)
        pool.request(4, "a", .pduTransaction)
        for number in [0, 3, 2, 4] { pool.release(number) }
        #expect(pool.executedRequests == [0, 3, 2, 4, 1])
    }

    @Test("a failed or timed-out connect lowers the destination's rank")
    func connectFailuresLowerRank() {
        var pool = PoolHarness(poolLimits(connections: 1))
        pool.request(0, "refused")
        pool.fail("refused")
        pool.request(1, "blackholed")
        pool.fail("blackholed", timedOut: true)
        pool.request(2, "busy")
        pool.establish("busy")
        pool.request(3, "blackholed")
        pool.request(4, "refused")
        pool.request(5, "new")
        pool.release(2, reusable: false)
        for _ in 0..<3 {
            pool.establish(pool.createdKeys.last!)
            pool.release(pool.executed.last!.request.value, reusable: false)
        }
        #expect(Array(pool.createdKeys.suffix(3)) == ["new", "refused", "blackholed"])
    }
}

@Suite("ConnectionPoolStateMachine: fairness deadlines")
struct ConnectionPoolFairnessTests {
    @Test("after limits.fairness_exchanges exchanges a destination gives its connection to a waiting one")
    func fairnessExchanges() {
        var pool = PoolHarness(poolLimits(connections: 1, fairnessExchanges: 3))
        for number in 0..<6 { pool.request(number, "a") }
        pool.establish("a")
        pool.request(10, "b")
        pool.release(0)
        pool.release(1)
        #expect(pool.createdKeys == ["a"])
        pool.release(2)
        #expect(pool.closed == [pool.created[0].id])
        #expect(pool.createdKeys == ["a", "b"])
        pool.establish("b")
        pool.release(10)
        // b's connection goes idle and is closed at once for a's waiting requests.
        #expect(pool.createdKeys == ["a", "b", "a"])
        pool.establish("a")
        #expect(pool.executedRequests == [0, 1, 2, 10, 3])
    }

    @Test("after limits.fairness_hold_ms a destination gives its connection to a waiting one")
    func fairnessHoldTime() {
        var pool = PoolHarness(poolLimits(connections: 1, fairnessHold: .seconds(5)))
        for number in 0..<6 { pool.request(number, "a") }
        pool.establish("a")
        pool.request(10, "b")
        for number in 0..<2 {
            pool.advance(by: .seconds(2))
            pool.release(number)
        }
        #expect(pool.createdKeys == ["a"])
        pool.advance(by: .seconds(2))
        pool.release(2)
        #expect(pool.createdKeys == ["a", "b"])
        #expect(pool.created[1].at == ms(6000))
    }

    @Test("a waiter of a higher class takes the slot at the next release")
    func higherClassTakesSlot() {
        var pool = PoolHarness(poolLimits(connections: 1, fairnessExchanges: 100))
        for number in 0..<5 { pool.request(number, "a", .catchUp) }
        pool.establish("a")
        pool.request(10, "b", .interactiveQuery)
        pool.release(0)
        #expect(pool.createdKeys == ["a", "b"])
        #expect(pool.executedRequests == [0])
    }

    @Test("a destination busy with a higher class keeps its connection past its turn")
    func higherClassKeepsSlot() {
        var pool = PoolHarness(poolLimits(connections: 1, fairnessExchanges: 2))
        for number in 0..<5 { pool.request(number, "a", .interactiveQuery) }
        pool.establish("a")
        pool.request(10, "b", .catchUp)
        for number in 0..<5 { pool.release(number) }
        #expect(pool.executedRequests == [0, 1, 2, 3, 4])
        #expect(pool.createdKeys == ["a", "b"])
    }

    @Test("with nobody waiting, a destination keeps its connection past its turn")
    func keepsConnectionWhenNobodyWaits() {
        var pool = PoolHarness(poolLimits(connections: 1, fairnessExchanges: 2, fairnessHold: .seconds(1)))
        for number in 0..<5 { pool.request(number, "a") }
        pool.establish("a")
        for number in 0..<5 {
            pool.advance(by: .seconds(1))
            pool.release(number)
        }
        #expect(pool.executedRequests == [0, 1, 2, 3, 4])
        #expect(pool.createdKeys == ["a"])
        #expect(pool.closed.isEmpty)
    }

    @Test("a handshake whose server says nothing gives its slot up after handshakeSilence when another connection waits")
    func silentHandshakeAbandoned() {
        var pool = PoolHarness(poolLimits(handshakes: 1))
        pool.request(0, "silent")
        pool.tcpConnect("silent")
        pool.advance(to: ms(500))
        pool.request(1, "live")
        pool.tcpConnect("live")
        let silence = PoolMachine.handshakeSilence
        #expect(pool.timer == ms(0) + silence)
        pool.advance(to: ms(0) + silence)
        #expect(pool.failures[RequestID(0)] == .connectAbandoned(after: silence))
        pool.completeHandshake("live")
        #expect(pool.executedRequests == [1])
        #expect(pool.machine.ranker.score(of: "silent", at: pool.now) > pool.machine.ranker.score(of: "live", at: pool.now))
    }

    @Test("a handshake whose server answered keeps its slot until handshakeTurn")
    func answeringHandshakeKeepsItsTurn() {
        var pool = PoolHarness(poolLimits(handshakes: 1))
        pool.request(0, "slow")
        pool.tcpConnect("slow")
        pool.advance(to: ms(100))
        pool.serverAnswered("slow")
        pool.request(1, "other")
        pool.tcpConnect("other")
        pool.advance(to: ms(0) + PoolMachine.handshakeSilence + .milliseconds(500))
        #expect(pool.failures.isEmpty, "a handshake making progress lost its slot")
        let turn = PoolMachine.handshakeTurn
        pool.advance(to: ms(0) + turn)
        #expect(pool.failures[RequestID(0)] == .connectAbandoned(after: turn))
        pool.completeHandshake("other")
        #expect(pool.executedRequests == [1])
    }

    @Test("100 blackholed destinations delay a live one by at most one handshake deadline")
    func blackholesHoldNoHandshakeSlot() {
        var pool = PoolHarness(ConnectionPool.Limits(
            maxConnections: 1024, maxTLSHandshakes: 4, connectTimeout: .seconds(10), tlsHandshakeTimeout: .seconds(10)))
        for number in 0..<100 { pool.request(number, "blackholed\(number)", waiting: .seconds(120)) }
        pool.request(100, "live", waiting: .seconds(120))
        // The blackholes' TCP connects never complete; the live one's does as soon as it starts.
        while pool.connection(of: "live") == nil, pool.now < ms(20_000) { _ = pool.fireTimer() }
        pool.establish("live")
        #expect(pool.executedRequests == [100])
        #expect(pool.now - ms(0) <= pool.limits.tlsHandshakeTimeout,
                "the live destination got its connection after \(pool.now - ms(0))")
    }

    @Test("a slow TCP connect is abandoned when another destination waits for a socket")
    func slowConnectAbandoned() {
        var pool = PoolHarness(poolLimits(connections: 1, fairnessHold: .seconds(5)))
        pool.request(0, "blackholed")
        pool.advance(to: ms(1000))
        pool.request(1, "live")
        #expect(pool.timer == ms(5000))
        pool.advance(to: ms(5000))
        #expect(pool.failures[RequestID(0)] == .connectAbandoned(after: .seconds(5)))
        #expect(pool.createdKeys == ["blackholed", "live"])
        #expect(pool.machine.ranker.score(of: "blackholed", at: pool.now) > pool.machine.ranker.score(of: "live", at: pool.now))
    }

    @Test("a slow connect is left alone while nobody waits for a handshake turn")
    func slowConnectKeptWhenNobodyWaits() {
        var pool = PoolHarness(poolLimits(handshakes: 2, fairnessHold: .seconds(5)))
        pool.request(0, "slow")
        pool.request(1, "other")
        pool.advance(to: ms(60_000))
        #expect(pool.failures.isEmpty)
        pool.establish("slow")
        #expect(pool.executedRequests == [0])
    }
}

@Suite("ConnectionPoolStateMachine: idle connections")
struct ConnectionPoolIdleTests {
    @Test("an idle connection is closed after the idle timeout")
    func idleTimeout() {
        var pool = PoolHarness(poolLimits(idle: .seconds(60)))
        pool.request(0, "a")
        pool.establish("a")
        pool.advance(to: ms(1000))
        pool.release(0)
        #expect(pool.timer == ms(61_000))
        pool.advance(to: ms(60_999))
        #expect(pool.closed.isEmpty)
        pool.advance(to: ms(61_000))
        #expect(pool.closed == [pool.created[0].id])
        #expect(pool.machine.counts(at: pool.now).open == 0)
    }

    @Test("using an idle connection starts its idle time again")
    func reuseRestartsIdleTime() {
        var pool = PoolHarness(poolLimits(idle: .seconds(60)))
        pool.request(0, "a")
        pool.establish("a")
        pool.release(0)
        pool.advance(to: ms(30_000))
        pool.request(1, "a")
        pool.advance(to: ms(31_000))
        pool.release(1)
        pool.advance(to: ms(90_000))
        #expect(pool.closed.isEmpty)
        pool.advance(to: ms(91_000))
        #expect(pool.closed == [pool.created[0].id])
    }

    @Test("closeIdleConnections closes those idle since before the cutoff")
    func closeIdleBeforeCutoff() {
        var pool = PoolHarness(poolLimits())
        pool.request(0, "a")
        pool.request(1, "b")
        pool.establish("a")
        pool.establish("b")
        pool.release(0)
        pool.advance(to: ms(5000))
        pool.release(1)
        pool.closeIdle(since: ms(3000))
        #expect(pool.closed == [pool.created[0].id])
        #expect(pool.machine.counts(at: pool.now).idle == 1)
        pool.closeIdle(since: .distantFuture)
        #expect(pool.machine.counts(at: pool.now).open == 0)
    }

    @Test("the least recently used idle connection is closed when a waiter needs its slot")
    func leastRecentlyUsedEvicted() {
        var pool = PoolHarness(poolLimits(connections: 2))
        pool.request(0, "a")
        pool.request(1, "b")
        pool.establish("a")
        pool.establish("b")
        let (a, b) = (pool.created[0].id, pool.created[1].id)
        pool.advance(to: ms(1000))
        pool.release(0)
        pool.advance(to: ms(2000))
        pool.release(1)
        pool.advance(to: ms(3000))
        pool.request(2, "c")
        #expect(pool.closed == [a])
        pool.establish("c")
        pool.advance(to: ms(4000))
        pool.release(2)
        pool.request(3, "a")
        #expect(pool.closed == [a, b])
        #expect(pool.createdKeys == ["a", "b", "c", "a"])
    }
}

@Suite("ConnectionPoolStateMachine: deadlines, failures, cancellation")
struct ConnectionPoolWaitTests {
    struct Scenario: Sendable, CustomTestStringConvertible {
        let name: String
        let limits: ConnectionPool.Limits
        let setUp: @Sendable (inout PoolHarness) -> Void
        let reason: ConnectionPoolError.WaitReason
        var testDescription: String { name }
    }

    static let scenarios: [Scenario] = [
        Scenario(name: "destination busy", limits: poolLimits(), setUp: { pool in
            pool.request(0, "a")
            pool.establish("a")
        }, reason: .destinationBusy),
        Scenario(name: "connection in progress", limits: poolLimits(), setUp: { pool in
            pool.request(0, "a")
        }, reason: .connectionInProgress),
        Scenario(name: "max_connections", limits: poolLimits(connections: 1), setUp: { pool in
            pool.request(0, "b")
            pool.establish("b")
        }, reason: .maxConnections(1)),
        Scenario(name: "max_tls_handshakes", limits: poolLimits(handshakes: 1), setUp: { pool in
            pool.request(0, "b")
            pool.tcpConnect("b")
            pool.request(1, "c")
            pool.tcpConnect("c")
        }, reason: .maxTLSHandshakes(1)),
        Scenario(name: "max_new_connections_per_second", limits: poolLimits(perSecond: 1), setUp: { pool in
            pool.request(0, "b")
        }, reason: .maxNewConnectionsPerSecond(1)),
    ]

    @Test("a request still waiting at its deadline fails with what held it back", arguments: scenarios)
    func waitDeadline(scenario: Scenario) {
        var pool = PoolHarness(scenario.limits)
        scenario.setUp(&pool)
        pool.request(7, "a", waiting: .milliseconds(700))
        pool.advance(to: ms(699))
        #expect(pool.failures.isEmpty)
        pool.advance(to: ms(700))
        #expect(pool.failures == [RequestID(7): .waitTimedOut(waited: .milliseconds(700), reason: scenario.reason)])
        #expect(!pool.machine.isWaiting(RequestID(7)))
    }

    @Test("the wait error names the destination, the class and the cap")
    func waitErrorDescription() {
        let error = ConnectionPoolError.waitTimeout(destination: "example.org", requestClass: .catchUp,
                                                    waited: .seconds(120), reason: .maxConnections(16))
        #expect(error.description == "example.org: no connection for a catch-up transaction within 120000 ms: "
                + "all 16 connections (limits.max_connections) were in use")
    }

    @Test("a failed connect fails every request waiting for that destination, and only those")
    func connectFailureFailsKeyWaiters() {
        var pool = PoolHarness(poolLimits())
        pool.request(0, "a")
        pool.request(1, "a", .interactiveQuery)
        pool.request(2, "b")
        let a = pool.created[0].id
        pool.fail("a")
        #expect(pool.failures == [RequestID(0): .connectFailed(a), RequestID(1): .connectFailed(a)])
        pool.establish("b")
        #expect(pool.executedRequests == [2])
    }

    @Test("a cancelled waiter leaves the line and is failed once")
    func cancelWaiting() {
        var pool = PoolHarness(poolLimits(connections: 1))
        pool.request(0, "a")
        pool.establish("a")
        pool.request(1, "b", .catchUp)
        #expect(pool.machine.counts(at: pool.now).waitingByClass[.catchUp] == 1)
        #expect(pool.cancel(1) == [.failRequest(RequestID(1), .cancelled)])
        #expect(pool.cancel(1).isEmpty)
        #expect(pool.machine.counts(at: pool.now).waitingByClass[.catchUp] == 0)
        pool.release(0)
        #expect(pool.createdKeys == ["a"])
        #expect(pool.machine.counts(at: pool.now).idle == 1)
    }

    @Test("cancelling a request already handed a connection changes nothing")
    func cancelServed() {
        var pool = PoolHarness(poolLimits())
        pool.request(0, "a")
        pool.establish("a")
        #expect(pool.cancel(0).isEmpty)
        pool.release(0)
        #expect(pool.machine.counts(at: pool.now).idle == 1)
    }

    @Test("a connection whose waiters all left is kept idle once open")
    func cancelWhileConnecting() {
        var pool = PoolHarness(poolLimits())
        pool.request(0, "a")
        pool.cancel(0)
        pool.establish("a")
        #expect(pool.executed.isEmpty)
        #expect(pool.machine.counts(at: pool.now).idle == 1)
        pool.request(1, "a")
        #expect(pool.executedRequests == [1])
    }

    @Test("counts report waiting per class and handshakes per second over ten seconds")
    func counts() {
        var pool = PoolHarness(poolLimits(connections: 5))
        for number in 0..<5 { pool.request(number, "d\(number)") }
        for number in 0..<5 { pool.establish("d\(number)") }
        pool.request(10, "q", .interactiveQuery)
        pool.request(11, "e", .eduTransaction)
        pool.request(12, "f", .eduTransaction)
        let counts = pool.machine.counts(at: pool.now)
        #expect(counts.waitingByClass == [.interactiveQuery: 1, .pduTransaction: 0, .eduTransaction: 2, .catchUp: 0])
        #expect(counts.waiting == 3)
        #expect(counts.handshakesCompleted == 5)
        #expect(counts.handshakesPerSecond == 0.5)
        pool.advance(to: ms(10_000))
        #expect(pool.machine.counts(at: pool.now).handshakesPerSecond == 0)
    }
}

@Suite("ConnectionPoolStateMachine: many destinations")
struct ConnectionPoolScaleTests {
    @Test("1,000 destinations with max_connections = 16 and max_tls_handshakes = 2 never exceed either cap")
    func thousandDestinations() async {
        let limits = poolLimits(connections: 16, handshakes: 2, perSecond: 50, fairnessExchanges: 4,
                                fairnessHold: .seconds(10), idle: .seconds(60))
        // Most destinations answer in 20 to 200 ms; every 25th refuses, every 100th never connects.
        var simulation = PoolSimulation(limits) { key in
            let index = Int(key.dropFirst())!
            if index % 100 == 99 { return .neverConnects }
            if index % 25 == 24 { return .refusing(after: .milliseconds(5)) }
            return .live(handshake: .milliseconds(Int64(20 + index % 7 * 10)),
                         exchange: .milliseconds(Int64(20 + index % 10 * 20)))
        }
        simulation.waitTimeout = .seconds(600)
        simulation.requestClass = { key in RequestClass.allCases[Int(key.dropFirst())! % 4] }
        let keys = (0..<1000).map { "d\($0)" }
        for key in keys {
            simulation.requestsLeft[key] = 2
            simulation.send(key)
        }
        await simulation.run(until: ms(3_600_000))

        let counts = simulation.harness.machine.counts(at: simulation.now)
        #expect(counts.peakOpen == 16)
        #expect(counts.peakHandshaking == 2)
        #expect(counts.waiting == 0)
        #expect(simulation.outstanding == 0)
        for (index, key) in keys.enumerated() {
            if index % 100 == 99 || index % 25 == 24 {
                #expect(simulation.delivered[key] == nil)
            } else {
                #expect(simulation.delivered[key] == 3, "\(key) delivered \(simulation.delivered[key] ?? 0) of 3")
            }
        }
        // The token bucket held too: never more than 50 connections started in any second after the first burst.
        let starts = simulation.harness.created.map(\.at)
        for (index, start) in starts.enumerated() {
            let inSecond = starts[index...].prefix { $0 < start + .seconds(1) }.count
            #expect(inSecond <= 100)
        }
        #expect(simulation.harness.steps > 4000)
    }

    /// Live destinations send back to back; the two `blackholed` ones (none when nil) were
    /// asked first, so they got slots or handshake turns before anyone could know they are dead.
    private func blackholeRun(limits: ConnectionPool.Limits, blackholed: PoolSimulation.Behaviour?,
                              live: Int, lateLive: Int = 0) async -> PoolSimulation {
        var simulation = PoolSimulation(limits) { key in
            key.hasPrefix("blackholed") ? blackholed! : .live(handshake: .milliseconds(50), exchange: .milliseconds(100))
        }
        simulation.waitTimeout = .seconds(60)
        simulation.recordsCompetitors = true
        let keys = (blackholed == nil ? [] : ["blackholed0", "blackholed1"]) + (0..<live).map { "live\($0)" }
        for key in keys {
            simulation.requestsLeft[key] = .max
            simulation.send(key)
        }
        for late in 0..<lateLive {
            await simulation.run(until: ms(Int64(late + 1) * 15_000))
            simulation.requestsLeft["late\(late)"] = 20
            simulation.send("late\(late)")
        }
        await simulation.run(until: ms(120_000))
        return simulation
    }

    private func longestLiveWait(_ simulation: PoolSimulation) -> TimeAmount {
        simulation.waits.filter { !$0.key.hasPrefix("blackholed") }.map(\.waited).max() ?? .zero
    }

    /// After the start, a blackholed destination got a new connection only when no live one waited for one.
    private func blackholedNeverTookALiveSlot(_ simulation: PoolSimulation, sourceLocation: SourceLocation = #_sourceLocation) {
        for creation in simulation.creations where creation.key.hasPrefix("blackholed") && creation.at > ms(0) {
            let live = creation.competitors.filter { !$0.hasPrefix("blackholed") }
            #expect(live.isEmpty, "\(creation.key) opened at \(creation.at) while \(live) waited",
                    sourceLocation: sourceLocation)
        }
    }

    @Test("destinations whose connects never complete cost live ones nothing")
    func blackholedConnects() async {
        let fairness = TimeAmount.seconds(2)
        let limits = poolLimits(connections: 16, handshakes: 2, perSecond: 100, fairnessExchanges: 5,
                                fairnessHold: fairness, idle: .seconds(60))
        let baseline = await blackholeRun(limits: limits, blackholed: nil, live: 6, lateLive: 6)
        let simulation = await blackholeRun(limits: limits, blackholed: .neverConnects, live: 6, lateLive: 6)
        #expect(simulation.waits.count > 1000)
        #expect(longestLiveWait(simulation) <= longestLiveWait(baseline) + .milliseconds(50),
                "a live request waited \(longestLiveWait(simulation)), \(longestLiveWait(baseline)) without blackholes")
        for late in 0..<6 { #expect(simulation.delivered["late\(late)"] == 21) }
        blackholedNeverTookALiveSlot(simulation)
    }

    @Test("a destination that accepts TCP and never answers TLS delays live ones by at most handshakeSilence")
    func silentAfterTCP() async {
        let limits = poolLimits(connections: 16, handshakes: 2, perSecond: 100, fairnessExchanges: 5,
                                fairnessHold: .seconds(2), idle: .seconds(60))
        let baseline = await blackholeRun(limits: limits, blackholed: nil, live: 6, lateLive: 6)
        let simulation = await blackholeRun(limits: limits, blackholed: .silentAfterTCP, live: 6, lateLive: 6)
        #expect(longestLiveWait(simulation) <= longestLiveWait(baseline) + PoolMachine.handshakeSilence,
                "a live request waited \(longestLiveWait(simulation)), \(longestLiveWait(baseline)) without blackholes")
        for late in 0..<6 { #expect(simulation.delivered["late\(late)"] == 21) }
        let blackholedFailures = simulation.failures.filter { $0.key.hasPrefix("blackholed") }.values.joined()
        #expect(blackholedFailures.contains(.connectAbandoned(after: PoolMachine.handshakeSilence)))
    }

    @Test("a destination whose exchanges time out delays live ones by at most one fairness deadline")
    func blackholedExchanges() async {
        let fairness = TimeAmount.seconds(2)
        let limits = poolLimits(connections: 4, handshakes: 2, perSecond: 100, fairnessExchanges: 3,
                                fairnessHold: fairness, idle: .seconds(60))
        let baseline = await blackholeRun(limits: limits, blackholed: nil, live: 4)
        let simulation = await blackholeRun(
            limits: limits, blackholed: .hangingExchanges(handshake: .milliseconds(50), timeout: .seconds(30)), live: 4)
        #expect(simulation.waits.count > 1000)
        #expect(longestLiveWait(simulation) <= longestLiveWait(baseline) + fairness,
                "a live request waited \(longestLiveWait(simulation)), \(longestLiveWait(baseline)) without blackholes")
        #expect((simulation.failed["blackholed0"] ?? 0) >= 2)
        blackholedNeverTookALiveSlot(simulation)
    }
}
