import Sender
import Synchronization

/// A `SenderClock` that only moves when a test says so: days of backoff pass in a call.
///
/// Sleepers whose deadline is reached are resumed by `advance`, in deadline order. The wall
/// clock is the monotonic one plus an offset `stepWallClock` changes, as NTP steps a real one.
public final class ManualSenderClock: SenderClock {
    private struct Sleeper {
        var id: Int
        var deadlineMS: Int64
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        /// Monotonic milliseconds.
        var nowMS: Int64
        /// What the wall clock is ahead of the monotonic one.
        var wallOffsetMS: Int64 = 0
        var nextID = 0
        var sleepers: [Sleeper] = []
    }

    private let state: Mutex<State>

    public init(startMS: Int64) {
        state = Mutex(State(nowMS: startMS))
    }

    public func nowMS() -> Int64 {
        state.withLock { $0.nowMS + $0.wallOffsetMS }
    }

    public func monotonicMS() -> Int64 {
        state.withLock { $0.nowMS }
    }

    /// Steps the wall clock by `milliseconds` (either way) without time passing: what NTP does
    /// to a machine that booted with a stale clock.
    public func stepWallClock(byMS milliseconds: Int64) {
        state.withLock { $0.wallOffsetMS += milliseconds }
    }

    /// Tasks sleeping on this clock now.
    public var sleeperCount: Int {
        state.withLock { $0.sleepers.count }
    }

    /// The earliest deadline anyone sleeps until, if any.
    public var nextDeadlineMS: Int64? {
        state.withLock { $0.sleepers.map(\.deadlineMS).min() }
    }

    public func sleep(untilMonotonicMS deadlineMS: Int64) async throws {
        let id = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let resumeNow = state.withLock { state in
                    if deadlineMS <= state.nowMS || Task.isCancelled { return true }
                    state.sleepers.append(Sleeper(id: id, deadlineMS: deadlineMS, continuation: continuation))
                    return false
                }
                if resumeNow {
                    if Task.isCancelled {
                        continuation.resume(throwing: CancellationError())
                    } else {
                        continuation.resume()
                    }
                }
            }
        } onCancel: {
            let cancelled = state.withLock { state -> Sleeper? in
                guard let index = state.sleepers.firstIndex(where: { $0.id == id }) else { return nil }
                return state.sleepers.remove(at: index)
            }
            cancelled?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Moves the clock forward and wakes every sleeper whose deadline has come.
    public func advance(byMS milliseconds: Int64) {
        let due = state.withLock { state -> [Sleeper] in
            state.nowMS += milliseconds
            let now = state.nowMS
            let due = state.sleepers.filter { $0.deadlineMS <= now }.sorted { $0.deadlineMS < $1.deadlineMS }
            state.sleepers.removeAll { $0.deadlineMS <= now }
            return due
        }
        for sleeper in due { sleeper.continuation.resume() }
    }
}
