import Federation
import Logging
import NIOCore
import Outbox
import Resolver
import Sender
import Transport

/// The outbound half wired from a configuration: the connection pool, the resolver, the
/// signing client and the sender over one Outbox. The daemon builds its own from here;
/// tests and benchmarks build one in-process with their own clock.
public struct FederationStack: Sendable {
    public let pool: ConnectionPool
    public let resolver: FederationResolver
    public let client: FederationClient
    public let sender: FederationSender

    public init(configuration: Configuration, signingKey: SigningKey, tlsContext: TLSContext, outbox: Outbox,
                group: any EventLoopGroup, clock: any SenderClock = SystemSenderClock(), logger: Logger) throws {
        let pool = ConnectionPool(
            limits: .init(
                maxConnections: configuration.limits.maxConnections,
                maxTLSHandshakes: configuration.limits.maxTLSHandshakes,
                connectTimeout: TimeAmount(configuration.transport.connectTimeout),
                tlsHandshakeTimeout: TimeAmount(configuration.transport.tlsHandshakeTimeout),
                idleTimeout: TimeAmount(configuration.transport.idleTimeout),
                maxNewConnectionsPerSecond: configuration.limits.maxNewConnectionsPerSecond,
                fairnessExchanges: configuration.limits.fairnessExchanges,
                fairnessHoldTime: TimeAmount(configuration.limits.fairnessHoldTime),
                waitTimeout: TimeAmount(configuration.transport.connectionWaitTimeout)),
            tlsContext: tlsContext, group: group, logger: logger)
        let dns = DNSResolver(
            configuration: DNSResolver.Configuration(nameservers: try configuration.resolver.nameservers.map { try $0.socketAddress() }),
            group: group, logger: logger)
        let wellKnown = WellKnownResolver(
            fetcher: PoolWellKnownFetcher(pool: pool), lookUpAddresses: { try await dns.addresses(for: $0) },
            ipRangeAllowlist: configuration.network.ipRangeAllowlist, port: configuration.resolver.wellKnownPort, logger: logger)
        let resolver = FederationResolver(dns: dns, wellKnown: wellKnown,
                                          ipRangeAllowlist: configuration.network.ipRangeAllowlist, logger: logger)
        let client = FederationClient(
            origin: configuration.server.name, signingKey: signingKey, resolver: resolver, pool: pool,
            requestTimeout: TimeAmount(configuration.transport.requestTimeout),
            maxResponseBytes: configuration.transport.maxResponseBytes)
        var settings = FederationSender.Settings()
        settings.maxPDUsPerTransaction = configuration.limits.maxPDUsPerTransaction
        settings.maxPDUsInMemoryPerDestination = configuration.limits.maxPDUsInMemoryPerDestination
        settings.maxPDUsInMemory = configuration.limits.maxPDUsInMemory
        settings.maxEphemeralEDUs = configuration.limits.maxEphemeralEDUsInMemory
        settings.catchUpAfterMS = configuration.sender.catchUpAfter.milliseconds
        settings.readReceiptTransactionsPerRoomPerSecond = configuration.sender.rrTransactionsPerRoomPerSecond
        settings.startupWakeupInterval = .seconds(1) / configuration.limits.maxNewConnectionsPerSecond
        // Enough to keep every connection busy, plus a few rounds of handshake candidates for the
        // pool to choose from; each destination sending holds a task, so not more.
        settings.maxDestinationsSending = configuration.limits.maxConnections + 4 * configuration.limits.maxTLSHandshakes
        settings.maxQuietDestinations = 4 * configuration.limits.maxConnections
        let sender = FederationSender(
            origin: configuration.server.name, outbox: outbox, client: client,
            retryPolicy: RetryPolicy(
                initialIntervalMS: configuration.sender.retryInitialInterval.milliseconds,
                multiplier: Int64(configuration.sender.retryMultiplier),
                maxIntervalMS: configuration.sender.retryMaxInterval.milliseconds),
            settings: settings, clock: clock, logger: logger)
        self.pool = pool
        self.resolver = resolver
        self.client = client
        self.sender = sender
    }
}
