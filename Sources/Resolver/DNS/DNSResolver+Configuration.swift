import NIOCore

extension DNSResolver {
    /// Every knob of the DNS client, with its default. Counts below 1 are treated as 1.
    public struct Configuration: Sendable {
        /// The servers to ask, in order. Empty: the `nameserver` lines of `resolvConfPath`,
        /// read once at start-up, and 127.0.0.1:53 if it has none.
        public var nameservers: [SocketAddress]
        public var resolvConfPath = "/etc/resolv.conf"
        /// Read once at start-up and consulted before the DNS for addresses; a missing file
        /// is an empty one.
        public var hostsFilePath: String
        /// A hard cap on queries outstanding at the nameservers; further ones wait in FIFO order.
        public var maxQueriesInFlight = 32
        /// How long one attempt waits for an answer (the TCP retry of a truncated answer
        /// gets as long again).
        public var queryTimeout: TimeAmount = .seconds(2)
        /// Attempts per query; attempt n goes to nameserver n modulo their number.
        public var attempts = 2
        /// Positive answers are cached for their TTL clamped to these bounds.
        public var minimumTTL: TimeAmount = .seconds(30)
        public var maximumTTL: TimeAmount = .hours(1)
        /// Negative answers (NXDOMAIN, NODATA) are cached for min(SOA TTL, SOA MINIMUM)
        /// clamped to these bounds, or for `defaultNegativeTTL` when the answer has no SOA.
        public var minimumNegativeTTL: TimeAmount = .seconds(30)
        public var maximumNegativeTTL: TimeAmount = .minutes(15)
        public var defaultNegativeTTL: TimeAmount = .seconds(60)
        /// The cache's size bound; when full, the oldest entry goes.
        public var maxCacheEntries = 10_000
        /// Send an EDNS0 OPT record offering 1232-byte UDP answers. Without it answers over
        /// 512 bytes come truncated and are asked again over TCP.
        public var usesEDNS = true

        public init(nameservers: [SocketAddress] = [], hostsFilePath: String = "/etc/hosts") {
            self.nameservers = nameservers
            self.hostsFilePath = hostsFilePath
        }

        /// How long an answer with the server's `ttl` stays cached.
        func cacheLifetime(of answer: DNSAnswer, ttl: UInt32?) -> TimeAmount {
            if answer.isNegative {
                guard let ttl else { return defaultNegativeTTL }
                return Self.clamp(.seconds(Int64(ttl)), minimumNegativeTTL, maximumNegativeTTL)
            }
            return Self.clamp(.seconds(Int64(ttl ?? 0)), minimumTTL, maximumTTL)
        }

        private static func clamp(_ value: TimeAmount, _ lower: TimeAmount, _ upper: TimeAmount) -> TimeAmount {
            max(lower, min(value, upper))
        }
    }
}
