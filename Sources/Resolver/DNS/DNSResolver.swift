import Logging
import NIOConcurrencyHelpers
import NIOCore

/// The DNS client of southbridge, and the only code in it that does DNS: AAAA/A and SRV
/// lookups over SwiftNIO's UDP and TCP, never blocking an event-loop thread.
///
/// Guarantees, whatever the callers do:
/// - at most `maxQueriesInFlight` queries are outstanding at the nameservers; the rest wait
///   in FIFO order;
/// - at most one query per (name, type) is in flight; concurrent askers share its result;
/// - answers are cached for their TTL, clamped to `[minimumTTL, maximumTTL]`, negative ones
///   (NXDOMAIN, NODATA) for the SOA's negative TTL clamped likewise, and a cached answer
///   costs no query until it expires; the cache holds at most `maxCacheEntries`;
/// - a truncated UDP answer is asked again over TCP; answers whose ID or question do not
///   match the query are ignored;
/// - the hosts file is honoured before the DNS for addresses.
///
/// Names are case-insensitive, a trailing dot is ignored, and IDNs must already be in
/// their ASCII (`xn--`) form.
public final class DNSResolver: Sendable {
    /// The longest CNAME chain followed.
    public static let maximumAliases = 8

    private typealias LookupWaiter = CheckedContinuation<Result<DNSAnswer, DNSError>?, Never>
    private typealias SlotWaiter = CheckedContinuation<Void, Never>

    public let configuration: Configuration
    /// The nameservers in use: the configured ones, or those of resolv.conf at start-up.
    public let nameservers: [SocketAddress]
    private let hostsFile: HostsFile
    private let transport: DNSTransport
    private let logger: Logger
    private let now: @Sendable () -> NIODeadline
    private let state: NIOLockedValueBox<DNSResolverState<LookupWaiter, SlotWaiter>>

    /// Reads the hosts file, and resolv.conf when no nameservers are configured, once, now.
    /// `now` is the clock of the cache, injectable so tests can expire answers without sleeping.
    public init(configuration: Configuration, group: any EventLoopGroup, logger: Logger,
                now: @escaping @Sendable () -> NIODeadline = { .now() }) {
        var configuration = configuration
        configuration.attempts = max(configuration.attempts, 1)
        var nameservers = configuration.nameservers
        if nameservers.isEmpty {
            nameservers = ResolvConf.nameservers(contents: SystemTextFile.contents(of: configuration.resolvConfPath) ?? "")
        }
        if nameservers.isEmpty {
            // A literal address always parses.
            nameservers = [try! SocketAddress(ipAddress: "127.0.0.1", port: 53)]
        }
        self.configuration = configuration
        self.nameservers = nameservers
        self.hostsFile = HostsFile(path: configuration.hostsFilePath)
        self.transport = DNSTransport(group: group, timeout: configuration.queryTimeout)
        self.logger = logger
        self.now = now
        self.state = NIOLockedValueBox(DNSResolverState(configuration: configuration))
        logger.debug("DNS resolver ready", metadata: [
            "nameservers": "\(nameservers.map { "\($0)" }.joined(separator: ", "))",
            "hosts_file": "\(configuration.hostsFilePath)",
        ])
    }

    /// A consistent snapshot of the counters.
    public var statistics: DNSStatistics {
        state.withLockedValue { $0.statistics }
    }

    /// The addresses of `hostname` as numeric text without brackets, IPv6 first, then IPv4.
    ///
    /// From the hosts file if it lists the name; otherwise AAAA and A are asked concurrently
    /// and CNAME chains are followed. One family failing does not hide the other's answer.
    /// An IP literal is returned as it is (in canonical form).
    public func addresses(for hostname: String) async throws(DNSError) -> [String] {
        try await addresses(for: hostname, followingAliases: true)
    }

    /// The addresses of an SRV record's target, as `addresses(for:)` gives them, except that
    /// a target that is an alias (CNAME) is the error `aliasNotAllowed`: RFC 2782 requires
    /// the target to own its address records, and the Matrix spec says to resolve targets
    /// with AAAA and A only.
    public func addresses(ofServiceTarget target: String) async throws(DNSError) -> [String] {
        try await addresses(for: target, followingAliases: false)
    }

    private func addresses(for hostname: String, followingAliases: Bool) async throws(DNSError) -> [String] {
        if let literal = IPRange.addressBytes(hostname) {
            return [IPRange.addressDescription(literal)]
        }
        let name = try DNSName.normalized(hostname)
        if let listed = hostsFile.addresses(for: name) {
            state.withLockedValue { $0.answeredFromHostsFile() }
            return listed
        }
        let now = self.now()
        let cached = state.withLockedValue {
            ($0.cachedResolution(of: name, type: .aaaa, now: now, followingAliases: followingAliases),
             $0.cachedResolution(of: name, type: .a, now: now, followingAliases: followingAliases))
        }
        if let ipv6 = cached.0, let ipv4 = cached.1 {
            return try Self.addresses(of: name, ipv6: ipv6, ipv4: ipv4)
        }
        async let ipv6 = resolve(name, type: .aaaa, followingAliases: followingAliases)
        async let ipv4 = resolve(name, type: .a, followingAliases: followingAliases)
        return try await Self.addresses(of: name, ipv6: ipv6, ipv4: ipv4)
    }

    /// The SRV records of a service name such as `_matrix-fed._tcp.example.org`, in the
    /// order the server gave them (see `orderForConnection(_:using:)`).
    ///
    /// No service is a normal answer in Matrix discovery, so NXDOMAIN, NODATA and a record
    /// whose target is "." (RFC 2782: "decidedly not available") all return `[]`; only
    /// failures to get an answer throw.
    public func serviceRecords(_ name: String) async throws(DNSError) -> [SRVRecord] {
        let name = try DNSName.normalized(name)
        let records: [DNSRecordData]
        switch await resolve(name, type: .srv) {
        case .success(let found): records = found
        case .failure(.noSuchName): return []
        case .failure(let error): throw error
        }
        return records.compactMap { data in
            guard case .srv(let record) = data, record.target != "." else { return nil }
            return record
        }
    }

    private static func addresses(of name: String, ipv6: Result<[DNSRecordData], DNSError>,
                                  ipv4: Result<[DNSRecordData], DNSError>) throws(DNSError) -> [String] {
        let addresses = ((try? ipv6.get()) ?? []) + ((try? ipv4.get()) ?? [])
        let text = addresses.compactMap { data -> String? in
            switch data {
            case .a(let bytes), .aaaa(let bytes): IPRange.addressDescription(bytes)
            default: nil
            }
        }
        if !text.isEmpty { return text }
        switch (ipv6, ipv4) {
        case (.failure(.noSuchName), .failure(.noSuchName)):
            throw .noSuchName(name: name)
        // Without an answer for one family, "no addresses" could be wrong: report why.
        case (.failure(let error), .failure(.noSuchName)), (.failure(.noSuchName), .failure(let error)),
             (.failure(let error), .success), (.success, .failure(let error)), (.failure(let error), .failure):
            throw error
        case (.success, .success):
            throw .noAddresses(name: name)
        }
    }

    /// The records of `type` at the end of `name`'s CNAME chain, or of `name` itself without
    /// `followingAliases`; [] for NODATA.
    private func resolve(_ name: String, type: DNSRecordType, followingAliases: Bool = true) async -> Result<[DNSRecordData], DNSError> {
        var current = name
        for _ in 0...Self.maximumAliases {
            let answer: DNSAnswer
            switch await lookUp(DNSCacheKey(name: current, type: type)) {
            case .success(let found): answer = found
            case .failure(let error): return .failure(error)
            }
            switch DNSResolverState<LookupWaiter, SlotWaiter>.step(answer, asked: name, type: type, followingAliases: followingAliases) {
            case .resolved(let result): return result
            case .follow(let target): current = target
            }
        }
        return .failure(.tooManyAliases(name: name, type: type, limit: Self.maximumAliases))
    }

    /// One (name, type) from the cache, from a query in flight, or from a new query.
    private func lookUp(_ key: DNSCacheKey) async -> Result<DNSAnswer, DNSError> {
        let now = self.now()
        if let answer = state.withLockedValue({ $0.cachedAnswer(for: key, now: now) }) {
            return .success(answer)
        }
        let shared: Result<DNSAnswer, DNSError>? = await withCheckedContinuation { (waiter: LookupWaiter) in
            switch state.withLockedValue({ $0.startLookup(key, now: now, waiter: waiter) }) {
            case .answer(let answer): waiter.resume(returning: .success(answer))
            case .joined: break
            case .query: waiter.resume(returning: nil)
            }
        }
        if let shared { return shared }
        let outcome = await query(key)
        let (result, waiters) = state.withLockedValue { $0.finishLookup(key, outcome: outcome, now: self.now()) }
        for waiter in waiters { waiter.resume(returning: result) }
        return result
    }

    /// Asks the nameservers in turn, `attempts` times in all, until one answers.
    private func query(_ key: DNSCacheKey) async -> Result<[DNSLearnedAnswer], DNSError> {
        var failure = DNSAttemptFailure.timeout
        for attempt in 0..<configuration.attempts {
            let server = nameservers[attempt % nameservers.count]
            switch await exchange(key, with: server) {
            case .success(let response) where response.responseCode.isAnswer:
                return .success(response.learnedAnswers(for: key.name, type: key.type))
            case .success(let response):
                failure = .responseCode(response.responseCode)
            case .failure(let attemptFailure):
                failure = attemptFailure
            }
            logger.debug("DNS query attempt failed", metadata: [
                "dns_name": "\(key.name)", "dns_type": "\(key.type)", "nameserver": "\(server)",
                "attempt": "\(attempt + 1)", "reason": "\(failure.error(for: key))",
            ])
        }
        return .failure(failure.error(for: key))
    }

    /// One attempt at one nameserver, holding a query slot: UDP, then TCP if truncated.
    private func exchange(_ key: DNSCacheKey, with server: SocketAddress) async -> Result<DNSResponse, DNSAttemptFailure> {
        await acquireQuerySlot()
        defer { releaseQuerySlot() }
        let query = DNSQuery(normalizedName: key.name, type: key.type, usesEDNS: configuration.usesEDNS)
        state.withLockedValue { $0.querySent(overTCP: false) }
        var outcome = await transport.exchangeOverUDP(query, with: server)
        if case .success(let response) = outcome, response.isTruncated {
            logger.debug("DNS answer truncated, asking again over TCP", metadata: [
                "dns_name": "\(key.name)", "dns_type": "\(key.type)", "nameserver": "\(server)",
            ])
            let retry = DNSQuery(normalizedName: key.name, type: key.type, usesEDNS: configuration.usesEDNS)
            state.withLockedValue { $0.querySent(overTCP: true) }
            outcome = await transport.exchangeOverTCP(retry, with: server)
            if case .success(let response) = outcome, response.isTruncated {
                outcome = .failure(.malformed("the answer over TCP is truncated too"))
            }
        }
        if case .failure(.timeout) = outcome {
            state.withLockedValue { $0.queryTimedOut() }
        }
        return outcome
    }

    private func acquireQuerySlot() async {
        await withCheckedContinuation { (waiter: SlotWaiter) in
            if state.withLockedValue({ $0.acquireQuerySlot(waiter: waiter) }) { waiter.resume() }
        }
    }

    private func releaseQuerySlot() {
        state.withLockedValue { $0.releaseQuerySlot() }?.resume()
    }
}
