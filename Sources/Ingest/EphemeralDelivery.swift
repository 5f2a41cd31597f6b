import Federation

/// An event the homeserver just handed over, as the read-receipt rules need it.
public struct AcceptedEvent: Sendable, Equatable {
    public var eventID: String
    /// The server part of the event's `sender`.
    public var senderServer: String

    public init(eventID: String, senderServer: String) {
        self.eventID = eventID
        self.senderServer = senderServer
    }
}

/// A typing, presence or receipt EDU and the servers it goes to.
public struct AddressedEphemeralEDU: Sendable, Equatable {
    public var edu: EphemeralEDU
    public var destinations: [String]

    public init(edu: EphemeralEDU, destinations: [String]) {
        self.edu = edu
        self.destinations = destinations
    }
}

/// What the ingest API hands to the sender beside what the Outbox stores: ephemeral EDUs,
/// which live in memory only, and the events just accepted. It must return at once (hand the
/// work on, never wait for it): an ingest request is answered as soon as its commit is
/// durable, never behind delivery work.
public protocol EphemeralDelivery: Sendable {
    func accepted(events: [AcceptedEvent], ephemeral: [AddressedEphemeralEDU])
}
