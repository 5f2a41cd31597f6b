import Sender
import Testing

@Suite("RetryPolicy: Synapse's backoff schedule")
struct RetryPolicyTests {
    let synapse = RetryPolicy(initialIntervalMS: 600_000, multiplier: 2, maxIntervalMS: 604_800_000)

    @Test func firstFailureWaitsTheInitialIntervalWithTheSameJitter() {
        var random = SystemRandomNumberGenerator()
        var seen = Set<Int64>()
        for _ in 0..<1000 {
            let first = synapse.interval(after: 0, using: &random)
            #expect((480_000...840_000).contains(first))
            seen.insert(first)
        }
        // Destinations that fail together do not all come back at the same instant.
        #expect(seen.count > 900)
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
