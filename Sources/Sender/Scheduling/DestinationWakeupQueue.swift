/// Wakes a crowd of destinations a few at a time instead of all at once.
///
/// After a restart thousands of destinations may owe PDUs; waking them together would
/// read a transaction for each into memory and queue them all at the connection pool.
/// This queue releases them at one per `interval`, the pace of the new-connection budget
/// (`limits.max_new_connections_per_second`), so 10,000 destinations at 20 per second
/// are all started within nine minutes, not in one burst and not over hours (Synapse's
/// 5 s gap would take 14 h). Pure: the caller passes the time in, as the sender's monotonic
/// time (`SenderClock.monotonicMS`) expressed as a `Duration` since that clock's origin.
///
/// With `maxTimeInQueue` (Synapse's `_DestinationWakeupQueue`, 30 s, for delayed receipts,
/// presence and device-list updates) the gap shrinks to `maxTimeInQueue / queued` when
/// that is shorter than `interval`, and never grows back while the queue is non-empty, so
/// a destination is woken at most `maxTimeInQueue` after it was queued, provided the caller
/// asks at each `nextAt` and again after `enqueue`. The gap returns to `interval` once the
/// queue is empty.
public struct DestinationWakeupQueue: Sendable {
    public let interval: Duration
    /// The longest a destination may wait, or nil for a fixed pace of one per `interval`.
    public let maxTimeInQueue: Duration?
    private var order = FrontConsumedQueue<String>()
    private var members: Set<String> = []
    private var lastWake: Duration?
    /// The current gap between wake-ups: `interval`, or shorter to honour `maxTimeInQueue`.
    private var gap: Duration

    public init(interval: Duration, maxTimeInQueue: Duration? = nil) {
        self.interval = interval
        self.maxTimeInQueue = maxTimeInQueue
        self.gap = interval
    }

    private var burst: Int { max(1, Int(Duration.seconds(1) / gap)) }

    /// Destinations still waiting for their turn.
    public var count: Int { members.count }

    public func contains(_ name: String) -> Bool { members.contains(name) }

    /// Queues `name` unless it is already queued.
    public mutating func enqueue(_ name: String) {
        guard members.insert(name).inserted else { return }
        order.append(name)
    }

    /// Drops `name` from the queue: it was woken for another reason (new PDUs, an admin).
    public mutating func remove(_ name: String) {
        members.remove(name)
        if members.isEmpty { gap = interval }
    }

    /// The destinations whose turn has come at `now`, and when to ask again (nil once the
    /// queue is empty). A late caller gets the turns it missed, up to one second's worth,
    /// as the connection budget's token bucket allows a one-second burst.
    public mutating func due(at now: Duration) -> (names: [String], nextAt: Duration?) {
        if let maxTimeInQueue, !members.isEmpty {
            gap = max(.nanoseconds(1), min(gap, maxTimeInQueue / members.count))
        }
        var turns = 1
        if let lastWake {
            guard now >= lastWake + gap else { return ([], members.isEmpty ? nil : lastWake + gap) }
            turns = max(1, min(Int((now - lastWake) / gap), burst))
        }
        var names: [String] = []
        while names.count < turns, let name = order.popFirst() {
            if members.remove(name) != nil { names.append(name) }
        }
        if !names.isEmpty {
            // Advance by whole gaps; after a burst the next turn is a full gap away.
            let advanced = (lastWake ?? now) + gap * (names.count - 1) + (lastWake == nil ? .zero : gap)
            lastWake = advanced < now - gap ? now : advanced
        }
        if members.isEmpty { gap = interval }
        return (names, members.isEmpty ? nil : (lastWake ?? now) + gap)
    }
}
