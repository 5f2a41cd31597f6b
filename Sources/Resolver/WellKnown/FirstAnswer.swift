import NIOConcurrencyHelpers
import NIOCore

/// Resumes one continuation with whichever comes first: an operation's value or nil at a timeout,
/// then cancels the loser.
final class FirstAnswer<Value: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<Value?, Never>?
        var tasks: [Task<Void, Never>] = []
    }

    private let state = NIOLockedValueBox(State())

    func start(continuation: CheckedContinuation<Value?, Never>, timeout: TimeAmount,
               operation: @escaping @Sendable () async -> Value) {
        state.withLockedValue { $0.continuation = continuation }
        let work = Task { self.finish(await operation()) }
        let timer = Task {
            try? await Task.sleep(nanoseconds: UInt64(max(0, timeout.nanoseconds)))
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
