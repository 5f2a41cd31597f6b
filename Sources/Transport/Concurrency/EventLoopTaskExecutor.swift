import NIOCore

/// A Swift `TaskExecutor` that runs jobs on one NIO `EventLoop`'s thread.
///
/// A task that prefers it (`withTaskExecutorPreference(_:operation:)`,
/// `Task(executorPreference:)`) runs its nonisolated code, and the default actors it calls,
/// on the event loop. Opening connections on that loop (`HTTPClientConnection.connect`
/// picks the calling loop when it belongs to the group) then lets the caller and its
/// connections share one thread: awaiting a handshake or a response suspends the task
/// without waking a second thread, and resuming it is a job appended to the loop's queue.
/// Work done on the executor delays that loop's I/O, so keep heavy computation off it.
public final class EventLoopTaskExecutor: TaskExecutor {
    /// The loop every job runs on.
    public let eventLoop: any EventLoop

    public init(_ eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}
