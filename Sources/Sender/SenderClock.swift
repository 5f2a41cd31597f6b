/// Time as the sender sees it: wall-clock milliseconds, the unit of every stored timestamp,
/// and a way to sleep until one. Injected so backoff, catch-up and expiry are tested by
/// moving a clock, not by waiting.
public protocol SenderClock: Sendable {
    func nowMS() -> Int64
    /// Returns at `deadlineMS` or later; throws `CancellationError` when the task is cancelled.
    func sleep(untilMS deadlineMS: Int64) async throws
}

/// The system's real-time clock.
public struct SystemSenderClock: SenderClock {
    public init() {}

    public func nowMS() -> Int64 { WallClock.nowMS() }

    public func sleep(untilMS deadlineMS: Int64) async throws {
        // The wall clock may be stepped (NTP on a Pi without a clock battery): re-check after waking.
        while true {
            let remaining = deadlineMS - WallClock.nowMS()
            if remaining <= 0 { return }
            try await Task.sleep(for: .milliseconds(remaining))
        }
    }
}
