/// Decides which destinations get a read receipt at once and which wait for the delayed-EDU
/// wake-up queue, as Synapse's `send_read_receipt` does, so a receipt in a big room does not
/// start a transaction to every server in it at the same moment.
///
/// A room with fewer than `smallRoomDestinationCount` destinations gets the receipt at once
/// everywhere; so does any room when the receipted event was received less than
/// `recentEventWindowMS` ago (a live conversation). Otherwise only the server of the
/// event's sender, whose users wait to see their message read, gets it at once; the rest are
/// woken by `delayedWakeupQueue` within 30 s. Pure: the caller passes the time in.
public struct ReadReceiptPacer: Sendable {
    /// Below this many destinations every destination gets the receipt at once.
    public static let smallRoomDestinationCount = 10
    /// An event received less than this long ago makes its receipts go out at once.
    public static let recentEventWindowMS: Int64 = 60_000
    /// Synapse's `_MAX_TIME_IN_QUEUE`: every delayed destination is woken within this.
    public static let maximumTimeInWakeupQueue: Duration = .seconds(30)
    /// How many received events the sender remembers for the receipt rules: a minute of a busy
    /// homeserver's events (over 150 a second), at about a hundred bytes each (1 MiB at most).
    /// An event forgotten early only means its receipt waits for the paced queue.
    public static let recentEventCapacity = 10_000

    /// The events received lately; feed it at PDU ingest with `eventReceived`.
    public private(set) var recentEvents: RecentEvents

    /// Where one receipt goes first; both lists keep the order of the destinations given.
    public struct Delivery: Sendable, Equatable {
        /// Destinations to queue the receipt for and wake now.
        public var immediate: [String]
        /// Destinations to queue the receipt for and hand to the delayed wake-up queue.
        public var delayed: [String]

        public init(immediate: [String], delayed: [String]) {
            self.immediate = immediate
            self.delayed = delayed
        }
    }

    /// - Parameter recentEventCapacity: how many received events to remember; at least 1.
    public init(recentEventCapacity: Int) {
        recentEvents = RecentEvents(capacity: recentEventCapacity)
    }

    /// Records a PDU as it is ingested.
    public mutating func eventReceived(eventID: String, senderServer: String, receivedMS: Int64) {
        recentEvents.record(eventID: eventID, senderServer: senderServer, receivedMS: receivedMS)
    }

    /// Splits `destinations` for a receipt EDU pointing at `eventIDs` (usually one; with
    /// several, any recent one makes the receipt go out at once everywhere and each known
    /// sender's server is immediate). An unknown event is treated as old with no known sender.
    public func schedule(receiptFor eventIDs: [String], to destinations: [String], nowMS: Int64) -> Delivery {
        guard destinations.count >= Self.smallRoomDestinationCount else {
            return Delivery(immediate: destinations, delayed: [])
        }
        var senderServers: Set<String> = []
        for eventID in eventIDs {
            guard let event = recentEvents.event(eventID) else { continue }
            if nowMS - event.receivedMS < Self.recentEventWindowMS {
                return Delivery(immediate: destinations, delayed: [])
            }
            senderServers.insert(event.senderServer)
        }
        var delivery = Delivery(immediate: [], delayed: [])
        for destination in destinations {
            if senderServers.contains(destination) {
                delivery.immediate.append(destination)
            } else {
                delivery.delayed.append(destination)
            }
        }
        return delivery
    }

    /// The queue for delayed destinations: one wake-up per
    /// `1 / transactionsPerRoomPerSecond` (Synapse's `federation_rr_transactions_per_room_per_second`,
    /// default 50, so 20 ms), faster when needed to wake each within `maximumTimeInWakeupQueue`.
    public static func delayedWakeupQueue(transactionsPerRoomPerSecond: Int = 50) -> DestinationWakeupQueue {
        precondition(transactionsPerRoomPerSecond > 0,
                     "transactionsPerRoomPerSecond must be at least 1, got \(transactionsPerRoomPerSecond)")
        return DestinationWakeupQueue(interval: .seconds(1) / transactionsPerRoomPerSecond,
                                      maxTimeInQueue: maximumTimeInWakeupQueue)
    }
}
