/// How many rows each Outbox table holds, for metrics, the admin API and tests.
public struct OutboxRowCounts: Sendable, Equatable {
    public var pdus: Int
    /// Sets of destinations PDUs refer to (a room's servers, stored once).
    public var destinationSets: Int
    /// Members of those sets, all sets together.
    public var destinationSetMembers: Int
    public var destinations: Int
    public var ingestTransactions: Int
    public var edus: Int
    public var eduDestinations: Int

    public init(
        pdus: Int,
        destinationSets: Int,
        destinationSetMembers: Int,
        destinations: Int,
        ingestTransactions: Int,
        edus: Int = 0,
        eduDestinations: Int = 0
    ) {
        self.pdus = pdus
        self.destinationSets = destinationSets
        self.destinationSetMembers = destinationSetMembers
        self.destinations = destinations
        self.ingestTransactions = ingestTransactions
        self.edus = edus
        self.eduDestinations = eduDestinations
    }
}
