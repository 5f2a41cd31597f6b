/// When the most recent PDUs were received and which server sent each, for
/// `ReadReceiptPacer`: holds at most `capacity` events and forgets the longest-recorded first.
///
/// The caller records each PDU at ingest. An event stays known past the 60 s in which it
/// counts as recent, as long as capacity allows, because its sender's server is still the
/// one destination that gets a receipt for it at once. Pure: the caller passes the time in.
public struct RecentEvents: Sendable {
    /// What is known about one event.
    public struct Event: Sendable, Equatable {
        public var receivedMS: Int64
        /// The server name of the event's `sender`.
        public var senderServer: String

        public init(receivedMS: Int64, senderServer: String) {
            self.receivedMS = receivedMS
            self.senderServer = senderServer
        }
    }

    public let capacity: Int
    private var events: [String: Stamped] = [:]
    /// Recording order, for forgetting; slots of re-recorded events stay behind and are skipped.
    private var order = FrontConsumedQueue<(eventID: String, sequence: UInt64)>()
    private var nextSequence: UInt64 = 0

    private struct Stamped: Sendable {
        var event: Event
        var sequence: UInt64
    }

    /// - Parameter capacity: how many events to remember; at least 1.
    public init(capacity: Int) {
        precondition(capacity > 0, "RecentEvents capacity must be at least 1, got \(capacity)")
        self.capacity = capacity
    }

    /// Events remembered.
    public var count: Int { events.count }

    /// Remembers that `eventID`, sent by a user of `senderServer`, was received at `receivedMS`.
    public mutating func record(eventID: String, senderServer: String, receivedMS: Int64) {
        let sequence = nextSequence
        nextSequence += 1
        let previous = events.updateValue(
            Stamped(event: Event(receivedMS: receivedMS, senderServer: senderServer), sequence: sequence),
            forKey: eventID)
        order.append((eventID, sequence))
        if previous == nil, events.count > capacity { forgetOldest() }
        if order.count > 2 * events.count + 1024 {
            order.keepOnly { events[$0.eventID]?.sequence == $0.sequence }
        }
    }

    /// What is known about `eventID`, or nil if it was never recorded or has been forgotten.
    public func event(_ eventID: String) -> Event? {
        events[eventID]?.event
    }

    private mutating func forgetOldest() {
        while let slot = order.popFirst() {
            if events[slot.eventID]?.sequence == slot.sequence {
                events[slot.eventID] = nil
                return
            }
        }
    }
}
