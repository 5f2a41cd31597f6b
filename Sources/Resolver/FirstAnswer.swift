import NIOConcurrencyHelpers
import NIOCore

/// The value of `operation`, or nil when it takes longer than `timeout`.
///
/// The operation runs in its own task, so the answer is on time even when the operation
/// ignores cancellation (a connection-pool queue, a wedged event loop); it is cancelled,
/// and left behind, on timeout. Used wherever a caller must answer in bounded time: the
/// `.well-known` fetch and the watchdog's health probe.
public func withDeadline<Value: Sendable>(
    _ timeout: TimeAmount, _ operation: @escaping @Sendable () async -> Value
) async -> Value? {
    await withDeadline(reachedBy: { try? await Task.sleep(nanoseconds: UInt64(max(0, timeout.nanoseconds))) }, operation)
}

/// The value of `operation`, or nil when `deadline` returns first: for a deadline on the
/// caller's own clock (the sender's, which tests move by hand). `deadline` must return when
/// its task is cancelled.
public func withDeadline<Value: Sendable>(
    reachedBy deadline: @escaping @Sendable () async -> Void, _ operation: @escaping @Sendable () async -> Value
) async -> Value? {
    let race = FirstAnswer<Value>()
    return await withCheckedContinuation { continuation in
        race.start(continuation: continuation, deadline: deadline, operation: operation)
    }
}

/// Resumes one continuation with whichever comes first: an operation's value or nil at a timeout,
/// then cancels the loser.
final class FirstAnswer<Value: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<Value?, Never>?
        var tasks: [Task<Void, Never>] = []
    }

    private let state = NIOLockedValueBox(State())

    func start(continuation: CheckedContinuation<Value?, Never>, deadline: @escaping @Sendable () async -> Void,
               operation: @escaping @Sendable () async -> Value) {
        state.withLockedValue { $0.continuation = continuation }
        let work = Task { self.finish(await operation()) }
        let timer = Task {
            await deadline()
            self.finish(nil)
        }
        let alreadyFinished = state.withLockedValue { state in
            state.tasks = [work, timer]
            return state.continuation == nil
        }
        if alreadyFinished {
            work.cancel()
            timer.cancel()
        }
    }

    private func finish(_ value: Value?) {
        let (continuation, tasks) = state.withLockedValue { state in
            defer { state.continuation = nil }
            return (state.continuation, state.tasks)
        }
        guard let continuation else { return }
        continuation.resume(returning: value)
        for task in tasks { task.cancel() }
    }
}
