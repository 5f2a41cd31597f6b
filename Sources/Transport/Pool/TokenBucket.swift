import NIOCore

/// The limit on new connections per second: a token bucket holding one second's worth of
/// tokens (at least one), refilled continuously at `ratePerSecond`.
///
/// Kept as the equivalent "generic cell rate" form, a single theoretical arrival time in
/// whole nanoseconds, so that a test with an injected clock sees exact refill times.
struct TokenBucket: Sendable, Equatable {
    let ratePerSecond: Int
    let capacity: Int
    private let interval: Int64
    /// When the bucket would be full again if nothing more were taken.
    private var theoreticalArrival: Int64 = 0

    init(ratePerSecond: Int) {
        precondition(ratePerSecond > 0, "a connection rate must be positive")
        self.ratePerSecond = ratePerSecond
        self.capacity = ratePerSecond
        self.interval = max(1, 1_000_000_000 / Int64(ratePerSecond))
    }

    /// The earliest time `count` tokens (at most `capacity`) are available together.
    func nextTokens(_ count: Int) -> NIODeadline {
        let count = min(max(count, 1), capacity)
        return .uptimeNanoseconds(UInt64(max(0, theoreticalArrival - Int64(capacity - count) * interval)))
    }

    func hasToken(at now: NIODeadline) -> Bool {
        now >= nextTokens(1)
    }

    /// How many tokens could be taken at `now`, one after the other.
    func tokens(at now: NIODeadline) -> Int {
        let full = theoreticalArrival - Int64(capacity) * interval
        let elapsed = Int64(now.uptimeNanoseconds) - full
        return max(0, min(capacity, Int(elapsed / interval)))
    }

    /// Takes one token; the caller checked `hasToken(at:)`.
    mutating func take(at now: NIODeadline) {
        theoreticalArrival = max(theoreticalArrival, Int64(now.uptimeNanoseconds)) + interval
    }
}
