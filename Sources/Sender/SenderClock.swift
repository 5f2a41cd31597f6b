import Federation
import Glibc

/// Time as the sender sees it, injected so backoff, catch-up and expiry are tested by moving
/// a clock, not by waiting. Two clocks: the wall clock for what is stored or sent (a failure's
/// `retry_last_ts`, `origin_server_ts`, txn ids) and a monotonic one for every deadline kept
/// in memory, so a wall clock stepped by hours (NTP on a Pi without a clock battery) neither
/// brings every backoff due at once nor holds a retry back.
public protocol SenderClock: Sendable {
    /// Milliseconds since the Unix epoch.
    func nowMS() -> Int64
    /// Milliseconds from an arbitrary origin that only moves forward, at the pace of time.
    func monotonicMS() -> Int64
    /// Returns once `monotonicMS()` reaches `deadlineMS`; throws `CancellationError` when the
    /// task is cancelled.
    func sleep(untilMonotonicMS deadlineMS: Int64) async throws
}

/// The system's clocks: `CLOCK_REALTIME` and `CLOCK_MONOTONIC`.
public struct SystemSenderClock: SenderClock {
    public init() {}

    public func nowMS() -> Int64 { WallClock.nowMS() }

    public func monotonicMS() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
    }

    public func sleep(untilMonotonicMS deadlineMS: Int64) async throws {
        while true {
            let remaining = deadlineMS - monotonicMS()
            if remaining <= 0 { return }
            try await Task.sleep(for: .milliseconds(remaining))
        }
    }
}

/// When an event happened, as the `SenderScheduler` is told: monotonic for every deadline it
/// keeps, wall for what it stores or sends (a transaction's `origin_server_ts`).
public struct SenderTime: Sendable, Equatable {
    public var monotonicMS: Int64
    public var wallMS: Int64

    public init(monotonicMS: Int64, wallMS: Int64) {
        self.monotonicMS = monotonicMS
        self.wallMS = wallMS
    }
}

extension SenderClock {
    /// Both clocks read now.
    public func now() -> SenderTime {
        SenderTime(monotonicMS: monotonicMS(), wallMS: nowMS())
    }
}
