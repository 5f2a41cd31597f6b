/// How long a destination is left alone after a failed transaction.
///
/// Synapse's schedule by default: the first failure waits `initialIntervalMS`, each later
/// one multiplies the previous interval by `multiplier`, capped at `maxIntervalMS`; every
/// interval, the first included, is multiplied by a random factor in 0.8–1.4. Synapse waits
/// exactly the initial interval after a first failure, so a home connection that drops for a
/// minute brings every destination back at the same instant; the jitter spreads them out.
/// Pure: the caller supplies the randomness.
public struct RetryPolicy: Sendable, Equatable {
    public var initialIntervalMS: Int64
    public var multiplier: Int64
    public var maxIntervalMS: Int64

    public static let jitter: ClosedRange<Double> = 0.8...1.4

    public init(initialIntervalMS: Int64, multiplier: Int64, maxIntervalMS: Int64) {
        self.initialIntervalMS = initialIntervalMS
        self.multiplier = multiplier
        self.maxIntervalMS = maxIntervalMS
    }

    /// The interval after one more failure, given the interval in force (0 = none yet).
    public func interval(after previousIntervalMS: Int64, using random: inout some RandomNumberGenerator) -> Int64 {
        let base = previousIntervalMS > 0 ? Double(previousIntervalMS) * Double(multiplier) : Double(initialIntervalMS)
        let jittered = base * Double.random(in: Self.jitter, using: &random)
        return max(1, min(Int64(min(jittered, Double(Int64.max / 2))), maxIntervalMS))
    }
}
