/// How long a destination is left alone after a failed transaction.
///
/// Synapse's schedule by default: the first failure waits `initialIntervalMS` exactly,
/// each later one multiplies the previous interval by `multiplier` and a random factor in
/// 0.8–1.4, capped at `maxIntervalMS`. Pure: the caller supplies the randomness.
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
        guard previousIntervalMS > 0 else { return min(initialIntervalMS, maxIntervalMS) }
        let grown = Double(previousIntervalMS) * Double(multiplier) * Double.random(in: Self.jitter, using: &random)
        return min(Int64(min(grown, Double(Int64.max / 2))), maxIntervalMS)
    }
}
