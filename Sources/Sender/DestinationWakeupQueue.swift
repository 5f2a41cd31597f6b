/// Wakes a crowd of destinations a few at a time instead of all at once.
///
/// After a restart thousands of destinations may owe PDUs; waking them together would
/// read a transaction for each into memory and queue them all at the connection pool.
/// This queue releases them at one per `interval`, the pace of the new-connection budget
/// (`limits.max_new_connections_per_second`), so 10,000 destinations at 20 per second
/// are all started within nine minutes, not in one burst and not over hours (Synapse's
/// 5 s gap would take 14 h). Pure: the caller passes the time in.
public struct DestinationWakeupQueue: Sendable {
    public let interval: Duration
    private var order: [String] = []
    private var head = 0
    private var members: Set<String> = []
    private var lastWake: ContinuousClock.Instant?

    public init(interval: Duration) {
        self.interval = interval
    }

    private var burst: Int { max(1, Int(Duration.seconds(1) / interval)) }

    /// Destinations still waiting for their turn.
    public var count: Int { members.count }

    /// Queues `name` unless it is already queued.
    public mutating func enqueue(_ name: String) {
        guard members.insert(name).inserted else { return }
        order.append(name)
    }

    /// Drops `name` from the queue: it was woken for another reason (new PDUs, an admin).
    public mutating func remove(_ name: String) {
        members.remove(name)
    }

    /// The destinations whose turn has come at `now`, and when to ask again (nil once the
    /// queue is empty). A late caller gets the turns it missed, up to one second's worth,
    /// as the connection budget's token bucket allows a one-second burst.
    public mutating func due(at now: ContinuousClock.Instant) -> (names: [String], nextAt: ContinuousClock.Instant?) {
        var turns = 1
        if let lastWake {
            guard now >= lastWake + interval else { return ([], members.isEmpty ? nil : lastWake + interval) }
            turns = max(1, min(Int((now - lastWake) / interval), burst))
        }
        var names: [String] = []
        while names.count < turns, head < order.count {
            let name = order[head]
            head += 1
            if members.remove(name) != nil { names.append(name) }
        }
        if head > 1024, head * 2 > order.count {
            order.removeFirst(head)
            head = 0
        }
        if !names.isEmpty {
            // Advance by whole intervals; after a burst the next turn is a full interval away.
            let advanced = (lastWake ?? now) + interval * (names.count - 1) + (lastWake == nil ? .zero : interval)
            lastWake = advanced < now - interval ? now : advanced
        }
        return (names, members.isEmpty ? nil : (lastWake ?? now) + interval)
    }
}
