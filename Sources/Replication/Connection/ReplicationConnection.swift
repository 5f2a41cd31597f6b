import NIOConcurrencyHelpers
import NIOCore

/// What the hub and the history readers hand one follower: its bounded queue of lines waiting to be written,
/// filled from any thread, emptied by its channel handler on the channel's event loop.
///
/// Live lines (rows as they are committed, `REMOTE_SERVER_UP`, `PING`) never wait: when they would take the queue
/// past `limits`, the queue is dropped and the follower gets `ERROR Failed to keep up`. History is paced instead:
/// a reader waits for room (`waitForRoom`) before it reads its next page, so a follower reading a million rows
/// holds at most a page or two in memory.
final class ReplicationConnection: @unchecked Sendable {
    struct Limits: Sendable {
        var maxCommands: Int
        var maxBytes: Int
        /// History pages are added only while fewer lines than this wait.
        var historyRoom: Int { max(1, maxCommands / 4) }
    }

    let id: Int
    let eventLoop: any EventLoop
    let limits: Limits

    private let lock = NIOLock()
    // Guarded by `lock`.
    private var lines = CircularBuffer<[UInt8]>()
    private var queuedBytes = 0
    private var drainScheduled = false
    private var overflowed = false
    private var closed = false
    private var roomWaiters: [CheckedContinuation<Void, Never>] = []
    private var hooks: Hooks?
    private var clientName = "anonymous"

    init(id: Int, eventLoop: any EventLoop, limits: Limits) {
        self.id = id
        self.eventLoop = eventLoop
        self.limits = limits
    }

    /// What the channel handler does on its event loop for the others: write what is queued (called whenever
    /// lines were added to an empty queue), and close with an `ERROR`.
    struct Hooks: Sendable {
        var drain: @Sendable () -> Void
        var closeWithError: @Sendable (_ text: String, _ reason: String) -> Void
    }

    func setHooks(_ hooks: Hooks?) {
        lock.withLock { self.hooks = hooks }
    }

    /// Closes the connection after `ERROR <text>`, from any thread.
    func close(withError text: String, reason: String) {
        guard let hooks = lock.withLock({ hooks }) else { return }
        eventLoop.execute { hooks.closeWithError(text, reason) }
    }

    var name: String {
        get { lock.withLock { clientName } }
        set { lock.withLock { clientName = newValue } }
    }

    var isClosed: Bool { lock.withLock { closed } }

    /// Whether live lines overflowed the queue: the follower is to be cut off, writable or not.
    var hasOverflowed: Bool { lock.withLock { overflowed } }

    var queuedCount: Int { lock.withLock { lines.count } }

    /// Adds lines that must not wait; returns false when they would overflow the queue, which is then dropped
    /// for `ERROR Failed to keep up`.
    @discardableResult
    func enqueueLive(_ commands: [ServerCommand]) -> Bool {
        enqueueLive(lines: commands.map(\.line))
    }

    /// `enqueueLive` for lines already encoded, once for every follower.
    @discardableResult
    func enqueueLive(lines encoded: [[UInt8]]) -> Bool {
        let bytes = encoded.reduce(0) { $0 + $1.count }
        return lock.withLock { () -> Bool in
            guard !closed, !overflowed else { return false }
            guard lines.count + encoded.count <= limits.maxCommands, queuedBytes + bytes <= limits.maxBytes else {
                overflowed = true
                lines.removeAll()
                queuedBytes = 0
                // At once, even when a drain waits for the channel to become writable: it may never.
                if let drain = hooks?.drain {
                    drainScheduled = true
                    eventLoop.execute { drain() }
                }
                return false
            }
            append(encoded, bytes: bytes)
            return true
        }
    }

    /// Adds a page of history (or a `POSITION`), which `waitForRoom` has already paced.
    func enqueueHistory(_ commands: [ServerCommand]) {
        let encoded = commands.map(\.line)
        let bytes = encoded.reduce(0) { $0 + $1.count }
        lock.withLock {
            guard !closed, !overflowed else { return }
            append(encoded, bytes: bytes)
        }
    }

    private func append(_ encoded: [[UInt8]], bytes: Int) {
        lines.append(contentsOf: encoded)
        queuedBytes += bytes
        scheduleDrainLocked()
    }

    private func scheduleDrainLocked() {
        guard !drainScheduled, let drain = hooks?.drain else { return }
        drainScheduled = true
        eventLoop.execute { drain() }
    }

    /// Returns once fewer than `limits.historyRoom` lines wait, or the connection is closed.
    func waitForRoom() async {
        await withCheckedContinuation { continuation in
            let ready = lock.withLock { () -> Bool in
                if closed || overflowed || lines.count < limits.historyRoom { return true }
                roomWaiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }

    /// What the handler writes next: up to `max` lines, or that the queue overflowed. With nothing left the
    /// next enqueue schedules a drain again.
    enum Take {
        case lines([[UInt8]])
        case overflowed
    }

    func take(max: Int) -> Take {
        let (taken, waiters) = lock.withLock { () -> (Take, [CheckedContinuation<Void, Never>]) in
            if overflowed {
                drainScheduled = false
                return (.overflowed, [])
            }
            var batch: [[UInt8]] = []
            batch.reserveCapacity(min(max, lines.count))
            while batch.count < max, let line = lines.popFirst() {
                queuedBytes -= line.count
                batch.append(line)
            }
            if lines.isEmpty { drainScheduled = false }
            var released: [CheckedContinuation<Void, Never>] = []
            if lines.count < limits.historyRoom {
                released = roomWaiters
                roomWaiters.removeAll()
            }
            return (.lines(batch), released)
        }
        for waiter in waiters { waiter.resume() }
        return taken
    }

    /// No more lines are taken; history readers waiting for room go on and find the connection closed.
    func markClosed() {
        let waiters = lock.withLock { () -> [CheckedContinuation<Void, Never>] in
            closed = true
            lines.removeAll()
            queuedBytes = 0
            hooks = nil
            let waiters = roomWaiters
            roomWaiters.removeAll()
            return waiters
        }
        for waiter in waiters { waiter.resume() }
    }
}
