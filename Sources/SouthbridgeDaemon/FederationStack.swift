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
    /// The event loop the sender and the pool run their tasks on, and so the loop every
    /// federation connection opens on: a send awaiting its connection, a handshake or an
    /// answer resumes on the thread that did the I/O instead of waking another. That costs a
    /// multi-core machine the parallel handshakes of a fan-out with pacing lifted, and saves
    /// about 5 % of the CPU of each new destination (BENCHMARKS.md, "Proof at scale").
    /// Another task that calls into the sender or the pool may go on running on this loop
    /// afterwards, so nothing the daemon runs in a task may block its thread.
    public let taskExecutor: EventLoopTaskExecutor

    /// Destinations that may prepare or send a transaction at once, beyond one per connection,
    /// for each TLS handshake slot: every connection stays busy and the pool still has a few
    /// rounds of handshake candidates to choose the healthiest from. Each one sending holds a
    /// task and a transaction's PDU references, so not more.
    public static let sendingDestinationsPerHandshake = 4

    /// Quiet destinations whose state is kept, per connection allowed: every warm connection's
    /// destination and more stay loaded, so a busy room's servers are not read back from the
    /// outbox on every PDU, while memory stays bounded by configuration.
    public static let quietDestinationsPerConnection = 4

    public init(configuration: Configuration, signingKey: SigningKey, tlsContext: TLSContext, outbox: Outbox,
                group: any EventLoopGroup, clock: any SenderClock = SystemSenderClock(), logger: Logger) throws {
        let taskExecutor = EventLoopTaskExecutor(group.next())
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
            tlsContext: tlsContext, group: group, taskExecutor: taskExecutor, logger: logger)
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
        settings.maxDestinationsSending = configuration.limits.maxConnections
            + Self.sendingDestinationsPerHandshake * configuration.limits.maxTLSHandshakes
        settings.maxQuietDestinations = Self.quietDestinationsPerConnection * configuration.limits.maxConnections
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
        self.taskExecutor = taskExecutor
    }

    /// Runs the sender on `taskExecutor`'s loop until it is cancelled: the daemon and the
    /// tests that drive a stack in-process run it the same way.
    public func runSender() async throws {
        try await withTaskExecutorPreference(taskExecutor) { try await sender.run() }
    }
}
