/// How many rows each Outbox table holds, for metrics, the admin API and tests.
public struct OutboxRowCounts: Sendable, Equatable {
    public var pdus: Int
    public var pduDestinations: Int
    public var destinationRooms: Int
    public var destinations: Int
    public var ingestTransactions: Int
    public var edus: Int
    public var eduDestinations: Int

    public init(
        pdus: Int,
        pduDestinations: Int,
        destinationRooms: Int,
        destinations: Int,
        ingestTransactions: Int,
        edus: Int = 0,
        eduDestinations: Int = 0
    ) {
        self.pdus = pdus
        self.pduDestinations = pduDestinations
        self.destinationRooms = destinationRooms
        self.destinations = destinations
        self.ingestTransactions = ingestTransactions
        self.edus = edus
        self.eduDestinations = eduDestinations
    }
}
