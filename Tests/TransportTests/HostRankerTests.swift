import NIOCore
import Testing
@testable import Transport

@Suite("HostRanker")
struct HostRankerTests {
    private let halfLife = HostRanker.Parameters().halfLife

    private func isClose(_ value: Double, _ expected: Double) -> Bool {
        abs(value - expected) < 1e-9
    }

    @Test("a host never seen scores the neutral 500 ms")
    func neutral() {
        #expect(HostRanker().score(of: "example.org", at: ms(0)) == 0.5)
    }

    struct ScoreCase: Sendable, CustomTestStringConvertible {
        let name: String
        let outcomes: [HostRanker.Outcome]
        let score: Double
        var testDescription: String { name }
    }

    static let scoreCases: [ScoreCase] = [
        ScoreCase(name: "one 100 ms success: (0.1 + 0.5) / 2", outcomes: [.success(latency: .milliseconds(100))], score: 0.3),
        ScoreCase(name: "one failure: 0.5 / (1 / 2)", outcomes: [.failure], score: 1.0),
        ScoreCase(name: "one timeout counts twice: 0.5 / (1 / 3)", outcomes: [.timeout], score: 1.5),
        ScoreCase(name: "nine successes outweigh a failure", outcomes:
                    Array(repeating: .success(latency: .milliseconds(100)), count: 9) + [.failure],
                  score: (0.9 + 0.5) / 10 / (10.0 / 11)),
        ScoreCase(name: "a slow host: two 3 s successes", outcomes: Array(repeating: .success(latency: .seconds(3)), count: 2),
                  score: 6.5 / 3),
        ScoreCase(name: "a dead host: four failures", outcomes: Array(repeating: .failure, count: 4), score: 2.5),
    ]

    @Test("score = latency ÷ success ratio", arguments: scoreCases)
    func score(testCase: ScoreCase) {
        var ranker = HostRanker()
        for outcome in testCase.outcomes { ranker.record(outcome, for: "h", at: ms(0)) }
        #expect(isClose(ranker.score(of: "h", at: ms(0)), testCase.score), "got \(ranker.score(of: "h", at: ms(0)))")
    }

    @Test("a fast healthy host ranks before a new one, which ranks before slow, failing and timing-out hosts")
    func order() {
        var ranker = HostRanker()
        for _ in 0..<3 {
            ranker.record(.success(latency: .milliseconds(40)), for: "fast", at: ms(0))
            ranker.record(.success(latency: .seconds(2)), for: "slow", at: ms(0))
            ranker.record(.failure, for: "failing", at: ms(0))
            ranker.record(.timeout, for: "blackholed", at: ms(0))
        }
        let ranked = ["blackholed", "failing", "slow", "new", "fast"].sorted {
            ranker.score(of: $0, at: ms(1000)) < ranker.score(of: $1, at: ms(1000))
        }
        #expect(ranked == ["fast", "new", "slow", "failing", "blackholed"])
    }

    @Test("outcomes fade with the half-life, back to the neutral score")
    func decay() {
        var ranker = HostRanker()
        ranker.record(.failure, for: "h", at: ms(0))
        #expect(isClose(ranker.score(of: "h", at: ms(0)), 1.0))
        let oneHalfLife = ms(0) + halfLife
        #expect(isClose(ranker.score(of: "h", at: oneHalfLife), 0.75))
        let twoHalfLives = oneHalfLife + halfLife
        #expect(isClose(ranker.score(of: "h", at: twoHalfLives), 0.625))
        #expect(abs(ranker.score(of: "h", at: ms(0) + .hours(24)) - 0.5) < 1e-6)
    }

    @Test("latency is a moving average weighted towards recent exchanges")
    func movingAverage() {
        var ranker = HostRanker()
        ranker.record(.success(latency: .seconds(1)), for: "h", at: ms(0))
        ranker.record(.success(latency: .milliseconds(100)), for: "h", at: ms(0) + halfLife)
        // Weights 0.5 (1 s, one half-life old) and 1 (100 ms): (0.5 + 0.1 + 0.5) / 2.5.
        #expect(isClose(ranker.score(of: "h", at: ms(0) + halfLife), 1.1 / 2.5))
    }

    @Test("a recovering host climbs back as successes arrive")
    func recovery() {
        var ranker = HostRanker()
        for _ in 0..<5 { ranker.record(.timeout, for: "h", at: ms(0)) }
        var previous = ranker.score(of: "h", at: ms(0))
        for second in 1...10 {
            ranker.record(.success(latency: .milliseconds(80)), for: "h", at: ms(Int64(second) * 1000))
            let score = ranker.score(of: "h", at: ms(Int64(second) * 1000))
            #expect(score < previous)
            previous = score
        }
    }

    @Test("hosts whose outcomes have faded are forgotten")
    func pruning() {
        var ranker = HostRanker()
        ranker.record(.failure, for: "old", at: ms(0))
        ranker.record(.failure, for: "recent", at: ms(0) + halfLife * 5)
        #expect(ranker.trackedHosts == 2)
        ranker.record(.failure, for: "recent", at: ms(0) + halfLife * 7)
        #expect(ranker.trackedHosts == 1)
        #expect(ranker.score(of: "old", at: ms(0) + halfLife * 7) == 0.5)
    }

    @Test func pastItsBoundTheHostsUpdatedLongestAgoAreForgotten() {
        var ranker = HostRanker(parameters: HostRanker.Parameters(maxHosts: 8))
        for index in 0..<9 { ranker.record(.success(latency: .milliseconds(10)), for: "h\(index)", at: ms(Int64(index))) }
        // Nine is one too many: the three updated longest ago go, leaving three quarters of the bound.
        #expect(ranker.trackedHosts == 6)
        #expect(ranker.score(of: "h0", at: ms(9)) == 0.5)
        #expect(ranker.score(of: "h8", at: ms(9)) < 0.5)
        for index in 9..<1_000 { ranker.record(.failure, for: "h\(index)", at: ms(Int64(index))) }
        #expect(ranker.trackedHosts <= 8)
    }

    static let errorOutcomes: [(HTTPClientError, HostRanker.Outcome?)] = [
        (.connectTimeout(address: "192.0.2.1:8448", timeout: .seconds(10)), .timeout),
        (.tlsHandshakeTimeout(address: "192.0.2.1:8448", timeout: .seconds(10)), .timeout),
        (.requestTimeout(method: "PUT", target: "/_matrix/federation/v1/send/1", timeout: .seconds(60)), .timeout),
        (.connectionRefused(address: "192.0.2.1:8448"), .failure),
        (.connectionReset(address: "192.0.2.1:8448"), .failure),
        (.tls(.certificateVerificationFailed(peer: "example.org", reason: "expired")), .failure),
        (.responseTooLarge(limit: 1024), .failure),
        (.malformedResponse(address: "192.0.2.1:8448", reason: "bad status line"), .failure),
        (.cancelled, nil),
        (.invalidRequest(reason: "bad header"), nil),
        (.connectionNotReusable(address: "192.0.2.1:8448"), nil),
    ]

    @Test("exchange errors map to failures, timeouts, or nothing when the host is not to blame", arguments: errorOutcomes)
    func errorOutcome(error: HTTPClientError, outcome: HostRanker.Outcome?) {
        #expect(HostRanker.Outcome(error) == outcome)
    }

    @Test("a 5xx answer is a failure, any other answer a success", arguments: [
        (200, true), (401, true), (404, true), (429, true), (500, false), (502, false), (503, false),
    ])
    func statusOutcome(status: Int, succeeded: Bool) {
        let outcome = HostRanker.Outcome(statusCode: status, latency: .milliseconds(30))
        #expect(outcome == (succeeded ? .success(latency: .milliseconds(30)) : .failure))
    }
}
