import Federation
import Logging
import NIOCore

/// Step 3 of server discovery: whether a host name delegates federation to another server
/// through `https://<hostname>/.well-known/matrix/server`, with the spec's caching.
///
/// Guarantees: an answer always comes back within `limits.timeout` of the fetch starting
/// (lookups, redirects and retries included) and is never an error; every address the fetch
/// connects to, redirect targets included, has passed the IP blocklist; at most one fetch per
/// host name is in flight, and concurrent askers share it; at most `limits.maxEntries` names
/// are cached. The cache clock (`now`) and the jitter (`randomUnit`) are injected; timeouts run
/// on the real clock.
public actor WellKnownResolver {
    /// Counters for metrics and tests.
    public struct Statistics: Sendable, Equatable {
        /// Lookups that went to the network (each may make several requests: redirects, retries).
        public var fetches = 0
        /// Lookups answered from the cache.
        public var cacheHits = 0
        /// Lookups that waited for a fetch another asker had started.
        public var sharedFetches = 0
        /// Refreshes that failed temporarily and kept the previous valid answer.
        public var previousAnswersKept = 0
    }

    private let fetcher: any WellKnownFetcher
    private let lookUpAddresses: @Sendable (String) async throws -> [String]
    private let ipRangeAllowlist: [IPRange]
    private let port: Int
    private let limits: Limits
    private let now: @Sendable () -> NIODeadline
    private let randomUnit: @Sendable () -> Double
    private let logger: Logger
    private var cache: WellKnownCache
    private var inFlight: [String: Task<WellKnownResult, Never>] = [:]
    /// Counters since the resolver was created.
    public private(set) var statistics = Statistics()

    /// - Parameters:
    ///   - fetcher: makes the HTTPS requests (`PoolWellKnownFetcher` in the daemon).
    ///   - lookUpAddresses: the A/AAAA addresses of a DNS name, as numeric text.
    ///   - ipRangeAllowlist: ranges exempt from the default blocklist (`network.ip_range_allowlist`).
    ///   - port: the HTTPS port; 443 except in tests.
    ///   - now: the clock the cache periods are measured on.
    ///   - randomUnit: a uniform random number in [0, 1), for the jitter.
    public init(
        fetcher: any WellKnownFetcher,
        lookUpAddresses: @escaping @Sendable (String) async throws -> [String],
        ipRangeAllowlist: [IPRange],
        port: Int = 443,
        limits: Limits = Limits(),
        now: @escaping @Sendable () -> NIODeadline = { .now() },
        randomUnit: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) },
        logger: Logger
    ) {
        self.fetcher = fetcher
        self.lookUpAddresses = lookUpAddresses
        self.ipRangeAllowlist = ipRangeAllowlist
        self.port = port
        self.limits = limits
        self.now = now
        self.randomUnit = randomUnit
        self.logger = logger
        self.cache = WellKnownCache(limits: limits)
    }

    /// How many names have a cached answer.
    public var cachedNameCount: Int { cache.count }

    /// Fetches running now, each shared by everyone asking for its name.
    public var fetchesInFlight: Int { inFlight.count }

    /// The delegated server name of `hostname` (a DNS name without a port), from the cache or fetched.
    public func delegatedServerName(for hostname: String) async -> WellKnownResult {
        guard let serverName = try? ServerName(hostname), case .dns = serverName.host, serverName.port == nil else {
            return .none(reason: WellKnownFailure(url: hostname, problem: .notADNSName))
        }
        let key = hostname.lowercased()
        var previous: ServerName?
        switch cache.lookup(key, now: now()) {
        case .fresh(let result):
            statistics.cacheHits += 1
            return result
        case .refresh(let answer):
            previous = answer
        case .miss:
            break
        }
        if let running = inFlight[key] {
            statistics.sharedFetches += 1
            return await running.value
        }
        let task = Task { await self.fetch(key: key, host: serverName.host, previous: previous) }
        inFlight[key] = task
        return await task.value
    }

    private func fetch(key: String, host: ServerName.Host, previous: ServerName?) async -> WellKnownResult {
        defer { inFlight[key] = nil }
        statistics.fetches += 1
        let hadValid = cache.hadRecentValidAnswer(key, now: now())
        let attempts = hadValid ? max(1, limits.retryAttempts) : 1
        let start = WellKnownURL(wellKnownOf: host, port: port)
        let timeout = limits.timeout
        let outcome = await withDeadline(timeout) { [self] in
            await self.discover(start: start, attempts: attempts, deadline: .now() + timeout)
        } ?? .invalid(WellKnownFailure(url: start.description, problem: .timedOut(
            reason: "no valid answer within \(Self.describe(timeout))")))
        let logger = self.logger.with(destination: key)
        let now = now()
        switch outcome {
        case .valid(let serverName, let lifetime):
            let period = cache.storeValid(key, serverName: serverName, lifetime: lifetime, now: now, randomUnit: randomUnit())
            logger.debug("well-known delegation found", metadata: [
                "delegated_server": "\(serverName)", "cache_seconds": "\(period.nanoseconds / 1_000_000_000)",
            ])
            return .delegated(serverName)
        case .invalid(let failure):
            if let previous, failure.isTemporary {
                cache.keepPrevious(key, now: now, randomUnit: randomUnit())
                statistics.previousAnswersKept += 1
                logger.info("well-known refresh failed, keeping the previous delegation", metadata: [
                    "delegated_server": "\(previous)", "error": "\(failure)",
                ])
                return .delegated(previous)
            }
            let period = cache.storeFailure(key, failure: failure, now: now, randomUnit: randomUnit())
            let level: Logger.Level = if case .allAddressesBlocked = failure.problem { .info } else { .debug }
            logger.log(level: level, "no well-known delegation", metadata: [
                "error": "\(failure)", "cache_seconds": "\(period.nanoseconds / 1_000_000_000)",
            ])
            return .none(reason: failure)
        }
    }

    /// The whole lookup, attempted again after `retryDelay` on a retryable failure while attempts and time remain.
    private nonisolated func discover(start: WellKnownURL, attempts: Int, deadline: NIODeadline) async -> WellKnownDiscovery.Outcome {
        var attempt = 1
        while true {
            let outcome = await discoverOnce(start: start, deadline: deadline)
            guard case .invalid(let failure) = outcome, failure.isRetryable, attempt < attempts,
                  NIODeadline.now() + limits.retryDelay < deadline
            else { return outcome }
            attempt += 1
            try? await Task.sleep(nanoseconds: UInt64(max(0, limits.retryDelay.nanoseconds)))
            if Task.isCancelled { return outcome }
        }
    }

    private nonisolated func discoverOnce(start: WellKnownURL, deadline: NIODeadline) async -> WellKnownDiscovery.Outcome {
        var discovery = WellKnownDiscovery(start: start, maxRedirects: limits.maxRedirects, maxBodyBytes: limits.maxBodyBytes)
        var action = discovery.firstAction
        while true {
            switch action {
            case .finish(let outcome):
                return outcome
            case .fetch(let url):
                let endpoints: [ResolvedFederationAddress.Endpoint]
                switch await self.endpoints(of: url) {
                case .success(let allowed): endpoints = allowed
                case .failure(let failure): return .invalid(failure)
                }
                let remaining = deadline - .now()
                guard remaining > .zero else {
                    return .invalid(WellKnownFailure(url: url.description, problem: .timedOut(
                        reason: "no valid answer within \(Self.describe(limits.timeout))")))
                }
                let request = WellKnownFetchRequest(host: url.host, port: url.port, target: url.target,
                                                    endpoints: endpoints, maxBodyBytes: limits.maxBodyBytes,
                                                    timeout: remaining)
                do {
                    action = discovery.received(try await fetcher.get(request))
                } catch {
                    action = discovery.failed(error)
                }
            }
        }
    }

    /// The addresses of the URL's host that pass the blocklist, in the order they came.
    private nonisolated func endpoints(of url: WellKnownURL) async -> Result<[ResolvedFederationAddress.Endpoint], WellKnownFailure> {
        func failure(_ problem: WellKnownFailure.Problem) -> Result<[ResolvedFederationAddress.Endpoint], WellKnownFailure> {
            .failure(WellKnownFailure(url: url.description, problem: problem))
        }
        let hostname: String
        let addresses: [String]
        switch url.host {
        case .ipv4(let address), .ipv6(let address):
            hostname = address
            addresses = [address]
        case .dns(let name):
            hostname = name
            do {
                addresses = try await lookUpAddresses(name)
            } catch {
                return failure(.noAddresses(host: name, reason: "\(error)"))
            }
        }
        var firstBlocked: (address: String, range: IPRange)?
        var endpoints: [ResolvedFederationAddress.Endpoint] = []
        for address in addresses {
            guard let bytes = IPRange.addressBytes(address) else { continue }
            if let range = IPRange.blockingRange(for: bytes, allowlist: ipRangeAllowlist) {
                if firstBlocked == nil { firstBlocked = (address, range) }
            } else {
                endpoints.append(.init(ipAddress: address, port: url.port))
            }
        }
        if endpoints.isEmpty {
            if let blocked = firstBlocked {
                return failure(.allAddressesBlocked(host: hostname, address: blocked.address, range: blocked.range.description))
            }
            return failure(.noAddresses(host: hostname, reason: "no A or AAAA records"))
        }
        return .success(endpoints)
    }

    static func describe(_ amount: TimeAmount) -> String {
        let nanoseconds = amount.nanoseconds
        if nanoseconds % 1_000_000_000 == 0 { return "\(nanoseconds / 1_000_000_000) s" }
        return "\(nanoseconds / 1_000_000) ms"
    }
}

extension Logger {
    fileprivate func with(destination: String) -> Logger {
        var logger = self
        logger[metadataKey: "destination"] = "\(destination)"
        return logger
    }
}
