extension FederationResolver {
    /// The resolver's caches and queries at one moment, for `/metrics`.
    public struct Statistics: Sendable, Equatable {
        public var dns: DNSStatistics
        public var wellKnown: WellKnownResolver.Statistics
        public var wellKnownCachedNames: Int
        public var wellKnownFetchesInFlight: Int
    }

    public func statistics() async -> Statistics {
        Statistics(dns: dns.statistics, wellKnown: await wellKnown.statistics,
                   wellKnownCachedNames: await wellKnown.cachedNameCount,
                   wellKnownFetchesInFlight: await wellKnown.fetchesInFlight)
    }
}
