import Sender
import Testing

@Suite("RetryPolicy: Synapse's backoff schedule")
struct RetryPolicyTests {
    let synapse = RetryPolicy(initialIntervalMS: 600_000, multiplier: 2, maxIntervalMS: 604_800_000)

    @Test func firstFailureWaitsExactlyTheInitialInterval() {
        var random = SystemRandomNumberGenerator()
        #expect(synapse.interval(after: 0, using: &random) == 600_000)
    }

    @Test func laterFailuresGrowByTheMultiplierWithinTheJitter() {
        var random = SystemRandomNumberGenerator()
        for _ in 0..<1000 {
            let next = synapse.interval(after: 600_000, using: &random)
            #expect((960_000...1_680_000).contains(next))
        }
    }

    @Test func growthStopsAtTheCap() {
        var random = SystemRandomNumberGenerator()
        var interval: Int64 = 0
        for _ in 0..<40 { interval = synapse.interval(after: interval, using: &random) }
        #expect(interval == 604_800_000)
    }

    @Test func aCapBelowTheInitialIntervalWins() {
        var random = SystemRandomNumberGenerator()
        let policy = RetryPolicy(initialIntervalMS: 5000, multiplier: 2, maxIntervalMS: 1000)
        #expect(policy.interval(after: 0, using: &random) == 1000)
    }
}
