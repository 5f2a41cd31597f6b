/// Counters of a `DNSResolver` since it was created, for metrics and tests.
///
/// A snapshot: every field is read under the same lock, so the numbers agree with each other.
public struct DNSStatistics: Sendable, Hashable {
    /// Queries sent to nameservers, over UDP and TCP, retries included.
    public var queriesSent = 0
    /// Of `queriesSent`, the ones sent over TCP after a truncated UDP answer.
    public var tcpQueriesSent = 0
    /// Attempts that got no answer within the query timeout.
    public var timeouts = 0
    /// (name, type) lookups answered from the cache.
    public var cacheHits = 0
    /// (name, type) lookups that were not in the cache and started a query.
    public var cacheMisses = 0
    /// (name, type) lookups that joined a query another caller had in flight.
    public var sharedLookups = 0
    /// Address lookups answered from the hosts file.
    public var hostsFileAnswers = 0
    /// Entries in the cache now.
    public var cacheEntries = 0
    /// Queries outstanding at the nameservers now.
    public var queriesInFlight = 0
    /// The most queries ever outstanding at once; never above `maxQueriesInFlight`.
    public var peakQueriesInFlight = 0
    /// Queries waiting for one of the `maxQueriesInFlight` slots now.
    public var queriesWaiting = 0

    public init() {}
}
