import NIOCore

extension WellKnownResolver {
    /// The constants of `.well-known` discovery and caching; the defaults are the spec's and
    /// Synapse's (`synapse/http/federation/well_known_resolver.py`).
    public struct Limits: Sendable, Equatable {
        /// How long a valid answer without caching headers is kept, before jitter (24 h).
        public var defaultCachePeriod: TimeAmount = .hours(24)
        /// Default and failure periods are multiplied by a uniform factor in [1 - jitter, 1 + jitter).
        public var cachePeriodJitter: Double = 0.1
        /// How long a failure is kept (1 h) when the name had no recent valid answer.
        public var invalidCachePeriod: TimeAmount = .hours(1)
        /// How long a failure is kept (2 min) when the name had a valid answer recently.
        public var downCachePeriod: TimeAmount = .minutes(2)
        /// A valid answer counts as recent until this long (2 h) after it expired.
        public var rememberHadValidPeriod: TimeAmount = .hours(2)
        /// The shortest time a valid answer is kept, whatever its headers say (5 min).
        public var minCachePeriod: TimeAmount = .minutes(5)
        /// The longest time a valid answer is kept, whatever its headers say (48 h).
        public var maxCachePeriod: TimeAmount = .hours(48)
        /// In the last fraction (20 %) of a valid answer's period it is fetched again; if that
        /// fails temporarily, the previous answer is kept.
        public var gracePeriodFactor: Double = 0.2
        /// The largest body accepted (50 KiB); a longer one is an invalid answer.
        public var maxBodyBytes: Int = 50 * 1024
        /// How many redirects are followed (5).
        public var maxRedirects: Int = 5
        /// The time allowed for the whole discovery of one name: lookups, redirects and retries (10 s).
        public var timeout: TimeAmount = .seconds(10)
        /// Attempts (3) when a connection fails or the server answers 5xx, for a name with a recent valid answer.
        public var retryAttempts: Int = 3
        /// The pause between those attempts (500 ms).
        public var retryDelay: TimeAmount = .milliseconds(500)
        /// The most names cached (10,000); the oldest entry is dropped first.
        public var maxEntries: Int = 10_000

        public init() {}
    }
}
