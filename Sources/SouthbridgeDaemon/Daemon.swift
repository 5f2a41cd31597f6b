import Federation
import Ingest
import Logging
import NIOCore
import NIOPosix
import Outbox
import Replication
import Resolver
import Sender
import ServiceLifecycle
import Systemd
import Transport

/// Why the daemon could not start; each case names the setting or file at fault.
public struct DaemonStartError: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// A southbridge instance: storage open, listeners bound, sender wired.
///
/// `start` does everything that can fail on bad configuration before systemd is told
/// `READY=1`; `run` then serves until SIGTERM/SIGINT or `stop()`, and shuts down in order:
/// watchdog, ingest listener, sender (in-flight transactions finish), outbox.
public final class Daemon: Sendable {
    public let configuration: Configuration
    /// Where the ingest API listens (with the real port when the config asked for port 0).
    public let ingestEndpoint: Configuration.ListenAddress
    /// Where the replication endpoint listens, when `replication.listen` is set (with the real port for port 0).
    public let replicationEndpoint: Configuration.ListenAddress?
    public let sender: FederationSender
    public let pool: ConnectionPool

    private let group: MultiThreadedEventLoopGroup
    private let outbox: Outbox
    private let serviceGroup: ServiceGroup
    private let notifier: SystemdNotifier
    private let logger: Logger

    private init(configuration: Configuration, ingestEndpoint: Configuration.ListenAddress,
                 replicationEndpoint: Configuration.ListenAddress?, sender: FederationSender,
                 pool: ConnectionPool, group: MultiThreadedEventLoopGroup,
                 outbox: Outbox, serviceGroup: ServiceGroup, notifier: SystemdNotifier, logger: Logger) {
        self.configuration = configuration
        self.ingestEndpoint = ingestEndpoint
        self.replicationEndpoint = replicationEndpoint
        self.sender = sender
        self.pool = pool
        self.group = group
        self.outbox = outbox
        self.serviceGroup = serviceGroup
        self.notifier = notifier
        self.logger = logger
    }

    public static func start(configuration: Configuration, logger: Logger,
                             handleSignals: Bool = true) async throws -> Daemon {
        let signingKey: SigningKey
        do {
            signingKey = try SigningKeyFile.read(path: configuration.server.signingKeyPath)
        } catch {
            throw DaemonStartError("server.signing_key_path: \(error)")
        }
        let token = try IngestToken.read(path: configuration.ingest.tokenFile)
        try FileDescriptorLimit.ensure(forConnections: configuration.limits.maxConnections)
        let tlsContext: TLSContext
        do {
            tlsContext = try TLSContext.client(caFile: configuration.tls.caFile)
        } catch {
            throw DaemonStartError("tls.ca_file: \(error)")
        }
        let outbox: Outbox
        do {
            // Canonical JSON can be longer than what was sent (1e10 becomes 10000000000).
            var limits = OutboxLimits()
            limits.maxBatchBytes = max(limits.maxBatchBytes, 2 * configuration.ingest.maxBodyBytes)
            limits.maxPDUsPerBatch = SendRequestParser.maxPDUsPerRequest
            limits.maxQueuedBytes = max(limits.maxQueuedBytes, 2 * limits.maxBatchBytes)
            limits.maxBytes = Int64(configuration.storage.maxBytes)
            limits.commitWindowMS = Int(configuration.storage.commitWindow.milliseconds)
            outbox = try Outbox(path: configuration.storage.path, logger: logger, limits: limits)
        } catch {
            throw DaemonStartError("storage.path: \(error)")
        }

        // Two event loops are plenty on a Pi; TLS and HTTP work is small per connection.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: min(2, System.coreCount))

        let stack: FederationStack
        do {
            stack = try FederationStack(configuration: configuration, signingKey: signingKey, tlsContext: tlsContext,
                                        outbox: outbox, group: group, logger: logger)
        } catch {
            outbox.close()
            try? await group.shutdownGracefully()
            throw DaemonStartError("resolver.nameservers: \(error)")
        }
        let (pool, resolver, client, sender) = (stack.pool, stack.resolver, stack.client, stack.sender)
        // The sender, its pool and their connections share one loop (see `FederationStack`); with
        // two, ingest and replication answer on the other, so an acknowledgement never waits
        // behind a fan-out's handshakes.
        let answeringLoop = group.makeIterator().first { $0 !== stack.taskExecutor.eventLoop } ?? stack.taskExecutor.eventLoop

        var replication: ReplicationServer?
        var replicationEndpoint: Configuration.ListenAddress?
        if let listen = configuration.replication.listen {
            do {
                (replication, replicationEndpoint) = try await bindReplication(
                    listen, configuration: configuration, outbox: outbox, sender: sender, group: answeringLoop, logger: logger)
            } catch {
                outbox.close()
                try? await group.shutdownGracefully()
                throw error
            }
        }

        let api = IngestAPI(
            outbox: outbox, bearerToken: token, ownServerName: configuration.server.name, logger: logger,
            administration: DestinationAdmin(outbox: outbox, sender: sender, resolver: resolver),
            queries: QueryForwarder(querier: FederationQuerier(client: client, sender: sender, logger: logger)),
            ephemeralDelivery: SenderEphemeralDelivery(sender: sender),
            metricsText: { [replication] in
                await MetricsText.render(sender: sender, pool: pool, outbox: outbox, resolver: resolver, replication: replication)
            })
        let server: IngestServer
        let ingestEndpoint: Configuration.ListenAddress
        do {
            switch configuration.ingest.listen {
            case .tcp(let host, let port):
                server = try await IngestServer.bind(host: host, port: port, api: api,
                                                     maxBodyBytes: configuration.ingest.maxBodyBytes,
                                                     idleTimeout: TimeAmount(configuration.ingest.idleTimeout),
                                                     requestTimeout: TimeAmount(configuration.ingest.requestTimeout), group: answeringLoop)
                ingestEndpoint = .tcp(host: host, port: server.boundPort ?? port)
            case .unix(let path):
                server = try await IngestServer.bind(unixPath: path, api: api,
                                                     maxBodyBytes: configuration.ingest.maxBodyBytes,
                                                     idleTimeout: TimeAmount(configuration.ingest.idleTimeout),
                                                     requestTimeout: TimeAmount(configuration.ingest.requestTimeout), group: answeringLoop)
                ingestEndpoint = .unix(path: path)
            }
        } catch {
            await replication?.stop()
            outbox.close()
            try? await group.shutdownGracefully()
            throw DaemonStartError("ingest.listen: cannot listen on \(configuration.ingest.listen): \(error)")
        }

        let notifier = SystemdNotifier()
        let probe = HealthProbe.daemon(group: group, outbox: outbox, sender: sender)
        let maxConnections = configuration.limits.maxConnections
        let statusLine: @Sendable () async -> String = {
            await MetricsText.statusLine(sender: sender, pool: pool, maxConnections: maxConnections)
        }
        var groupConfiguration = ServiceGroupConfiguration(
            services: [
                .init(service: OutboxService(
                    outbox: outbox,
                    retention: RetentionPolicy(catchUpAfterMS: configuration.sender.catchUpAfter.milliseconds,
                                               maxAgeMS: configuration.storage.maxAge.milliseconds),
                    logger: logger),
                      serviceName: "outbox"),
                .init(service: ConnectionPoolService(pool: pool), serviceName: "connection pool"),
                .init(service: SenderService(stack: stack, stopTimeout: configuration.server.stopTimeout, logger: logger),
                      serviceName: "sender"),
                .init(service: IngestService(server: server), serviceName: "ingest"),
            ] + (replication.map { [.init(service: ReplicationService(server: $0), serviceName: "replication")] } ?? []) + [
                .init(service: WatchdogService(notifier: notifier, probe: probe, statusLine: statusLine, logger: logger),
                      serviceName: "watchdog"),
            ],
            gracefulShutdownSignals: handleSignals ? [.sigterm, .sigint] : [],
            logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = configuration.server.stopTimeout + .seconds(5)
        let daemon = Daemon(
            configuration: configuration, ingestEndpoint: ingestEndpoint, replicationEndpoint: replicationEndpoint,
            sender: sender, pool: pool,
            group: group, outbox: outbox,
            serviceGroup: ServiceGroup(configuration: groupConfiguration), notifier: notifier, logger: logger)
        logger.info("southbridge started", metadata: [
            "server_name": "\(configuration.server.name)", "ingest": "\(ingestEndpoint)",
            "storage": "\(configuration.storage.path)", "replication": "\(replicationEndpoint.map { "\($0)" } ?? "off")",
        ])
        return daemon
    }

    private static func bindReplication(
        _ listen: Configuration.ListenAddress, configuration: Configuration, outbox: Outbox, sender: FederationSender,
        group: any EventLoopGroup, logger: Logger
    ) async throws -> (ReplicationServer, Configuration.ListenAddress) {
        let secret = try configuration.replication.secretFile.map { try ReplicationSecret.read(path: $0) }
        let settings = ReplicationServer.Settings(
            serverName: configuration.server.name, secret: secret,
            maxConnections: configuration.replication.maxConnections,
            pingIntervalMS: configuration.replication.pingInterval.milliseconds)
        // REMOTE_SERVER_UP: the homeserver heard from the server; the sender's one way to try it now.
        let wake: @Sendable (String) async -> Void = { name in _ = try? await sender.resetBackoffAndWake(name) }
        do {
            switch listen {
            case .tcp(let host, let port):
                let server = try await ReplicationServer.bind(host: host, port: port, settings: settings, outbox: outbox,
                                                              wake: wake, group: group, logger: logger)
                return (server, .tcp(host: host, port: server.boundPort ?? port))
            case .unix(let path):
                let server = try await ReplicationServer.bind(unixPath: path, settings: settings, outbox: outbox,
                                                              wake: wake, group: group, logger: logger)
                return (server, listen)
            }
        } catch {
            throw DaemonStartError("replication.listen: cannot listen on \(listen): \(error)")
        }
    }

    /// Serves until a stop signal or `stop()`; returns after an orderly shutdown.
    public func run() async throws {
        notifier.ready(status: "listening on \(ingestEndpoint)" + (replicationEndpoint.map { "; replication on \($0)" } ?? ""))
        defer { logger.info("southbridge stopped") }
        try await serviceGroup.run()
        try? await group.shutdownGracefully()
    }

    /// Begins the same orderly shutdown as SIGTERM.
    public func stop() async {
        await serviceGroup.triggerGracefulShutdown()
    }
}
