import NIOCore

/// A counting semaphore with a FIFO queue: at most `limit` queries outstanding at the
/// nameservers, the rest served in arrival order.
struct DNSQuerySlots<Waiter> {
    let limit: Int
    private(set) var inUse = 0
    private(set) var peakInUse = 0
    private var waiting = CircularBuffer<Waiter>()

    init(limit: Int) {
        self.limit = max(limit, 1)
    }

    var waitingCount: Int { waiting.count }

    /// Takes a slot if one is free; otherwise queues `waiter` and returns false, and the
    /// waiter is handed a slot by a later `release()`.
    mutating func acquire(waiter: Waiter) -> Bool {
        guard inUse < limit else {
            waiting.append(waiter)
            return false
        }
        inUse += 1
        peakInUse = max(peakInUse, inUse)
        return true
    }

    /// Gives a slot back: returns the waiter that now owns it, or nil when it became free.
    mutating func release() -> Waiter? {
        if let next = waiting.popFirst() { return next }
        inUse -= 1
        return nil
    }
}

extension DNSQuerySlots: Sendable where Waiter: Sendable {}
