import Resolver

/// Every setting an operator can change, read from one TOML file
/// (`/etc/southbridge/southbridge.toml`), one nested value per `[table]`.
///
/// The default of each setting is the initial value of its property below and is written
/// nowhere else; `parse(_:source:)` and `load(path:)` start from these defaults, replace what
/// the file sets, and return only a configuration whose every value passed its checks.
public struct Configuration: Sendable, Equatable {
    /// `[server]`: who this server is and how it stops.
    public var server: ServerSettings
    /// `[storage]`: where accepted units are kept.
    public var storage = StorageSettings()
    /// `[ingest]`: the loopback API the homeserver hands work to.
    public var ingest = IngestSettings()
    /// `[replication]`: the line-protocol endpoint followers and `southbridge tail` read.
    public var replication = ReplicationSettings()
    /// `[tls]`: which certificate authorities vouch for remote servers.
    public var tls = TLSSettings()
    /// `[network]`: which addresses may be connected to.
    public var network = NetworkSettings()
    /// `[resolver]`: which DNS servers answer.
    public var resolver = ResolverSettings()
    /// `[limits]`: hard caps that keep a small machine responsive.
    public var limits = LimitsSettings()
    /// `[transport]`: timeouts and sizes of single requests.
    public var transport = TransportSettings()
    /// `[sender]`: backoff for unreachable destinations.
    public var sender = SenderSettings()
    /// `[log]`: how much is logged.
    public var log = LogSettings()

    private init(server: ServerSettings) {
        self.server = server
    }

    /// The `server.name` the shipped `/etc/southbridge/southbridge.toml` carries until the
    /// operator sets it; `check-config` and `run` refuse it.
    public static let placeholderServerName = "example.org"

    /// The configuration with every default and the given server name, which is not checked.
    public static func withDefaults(serverName: String) -> Configuration {
        Configuration(server: ServerSettings(name: serverName))
    }
}

extension Configuration {
    /// `[server]`: who this server is and how it stops.
    public struct ServerSettings: Sendable, Equatable {
        /// `server.name` (required): this homeserver's server name, the origin of every request.
        public var name: String
        /// `server.signing_key_path`: the Synapse-format Ed25519 signing key file.
        public var signingKeyPath = "/etc/southbridge/signing.key"
        /// `server.stop_timeout_ms`: how long a graceful stop waits for in-flight work.
        public var stopTimeout: Duration = .milliseconds(10_000)

        public init(name: String) {
            self.name = name
        }
    }

    /// `[storage]`: where accepted units are kept.
    public struct StorageSettings: Sendable, Equatable {
        /// `storage.path`: the outbox SQLite database file.
        public var path = "/var/lib/southbridge/outbox.sqlite3"
        /// `storage.max_bytes`: the most the outbox's pages may hold. Past nine tenths of it, the oldest units
        /// only backing-off destinations still need are dropped; at it, ingest is refused with 507.
        public var maxBytes = 1_073_741_824
        /// `storage.max_age_ms`: units older than this (30 days) that only backing-off destinations still need
        /// are dropped; those destinations then catch up with what is left.
        public var maxAge: Duration = .milliseconds(2_592_000_000)
        /// `storage.commit_window_ms`: how long a request waits for others to share its commit when the writer is
        /// idle. 0 (the default) answers each as soon as its own commit is on disk; a window trades that much
        /// acknowledgement latency for fewer, larger writes when many clients send one unit each.
        public var commitWindow: Duration = .zero

        public init() {}
    }

    /// `[ingest]`: the loopback API the homeserver hands work to.
    public struct IngestSettings: Sendable, Equatable {
        /// `ingest.listen`: where the ingest API accepts connections.
        public var listen = ListenAddress.tcp(host: "127.0.0.1", port: 8009)
        /// `ingest.token_file`: the file holding the bearer token the homeserver presents.
        public var tokenFile = "/etc/southbridge/ingest.token"
        /// `ingest.max_body_bytes`: the largest request body the ingest API accepts.
        public var maxBodyBytes = 16_777_216
        /// `ingest.idle_timeout_ms`: how long a connection may wait for its next request's first
        /// byte before it is closed; longer than a homeserver keeps an unused connection, so that
        /// the homeserver closes it first.
        public var idleTimeout: Duration = .milliseconds(300_000)
        /// `ingest.request_timeout_ms`: how long a request may take to arrive whole, from its first
        /// byte; then it is answered 408 and its connection closed.
        public var requestTimeout: Duration = .milliseconds(30_000)

        public init() {}
    }

    /// `[replication]`: the line-protocol endpoint followers and `southbridge tail` read.
    public struct ReplicationSettings: Sendable, Equatable {
        /// `replication.listen`: where the endpoint accepts connections; nil (`""`, the default) disables it.
        public var listen: ListenAddress? = nil
        /// `replication.secret_file`: the secret followers send with `AUTH`; nil (`""`) asks for none, which only
        /// a loopback or unix socket `listen` allows.
        public var secretFile: String? = nil
        /// `replication.max_connections`: followers connected at once.
        public var maxConnections = 8
        /// `replication.ping_interval_ms`: the seeds' 5 s; the ping timeout is five times it (25 s).
        public var pingInterval: Duration = .milliseconds(5_000)

        public init() {}
    }

    /// `[tls]`: which certificate authorities vouch for remote servers.
    public struct TLSSettings: Sendable, Equatable {
        /// `tls.ca_file`: a PEM file of trusted CA certificates; nil (`""`) uses the system trust store.
        public var caFile: String? = nil

        public init() {}
    }

    /// `[network]`: which addresses may be connected to.
    public struct NetworkSettings: Sendable, Equatable {
        /// `network.ip_range_allowlist`: ranges exempt from `IPRange.defaultBlocklist`.
        public var ipRangeAllowlist: [IPRange] = []

        public init() {}
    }

    /// `[resolver]`: which DNS servers answer.
    public struct ResolverSettings: Sendable, Equatable {
        /// `resolver.nameservers`: DNS servers to ask; empty means those in /etc/resolv.conf.
        public var nameservers: [Nameserver] = []
        /// `resolver.well_known_port`: where `.well-known/matrix/server` is fetched; 443 outside tests.
        public var wellKnownPort = 443

        public init() {}
    }

    /// `[limits]`: hard caps that keep a small machine responsive.
    public struct LimitsSettings: Sendable, Equatable {
        /// `limits.max_connections`: the most open connections to remote servers at once. An
        /// idle connection costs about 50 KiB of RSS with its destination's state (BENCHMARKS.md),
        /// so 1,024 keep a 1,000-server room warm on a 4 GB Raspberry Pi for about 55 MiB.
        public var maxConnections = 1024
        /// `limits.max_tls_handshakes`: the most TLS handshakes in progress at once; at most `maxConnections`.
        public var maxTLSHandshakes = 4
        /// `limits.max_new_connections_per_second`: new connections started per second (token bucket).
        public var maxNewConnectionsPerSecond = 20
        /// `limits.fairness_exchanges`: requests after which a connection is given back to waiters.
        public var fairnessExchanges = 20
        /// `limits.fairness_hold_ms`: how long a connection may be held, or opened, while others wait.
        public var fairnessHoldTime: Duration = .milliseconds(10_000)
        /// `limits.max_pdus_per_transaction`: the most PDUs in one transaction; the spec allows 50.
        public var maxPDUsPerTransaction = 50
        /// `limits.max_pdus_in_memory_per_destination`: PDUs a destination queues in memory before it catches up instead.
        public var maxPDUsInMemoryPerDestination = 500
        /// `limits.max_pdus_in_memory`: PDUs queued in memory across all destinations.
        public var maxPDUsInMemory = 100_000
        /// `limits.max_ephemeral_edus_in_memory`: typing, presence and receipt updates held in memory.
        public var maxEphemeralEDUsInMemory = 10_000

        public init() {}
    }

    /// `[transport]`: timeouts and sizes of single requests.
    public struct TransportSettings: Sendable, Equatable {
        /// `transport.connect_timeout_ms`: how long a TCP connect may take.
        public var connectTimeout: Duration = .milliseconds(10_000)
        /// `transport.tls_handshake_timeout_ms`: how long a TLS handshake may take.
        public var tlsHandshakeTimeout: Duration = .milliseconds(10_000)
        /// `transport.connection_wait_timeout_ms`: how long a request may wait for a pooled connection.
        public var connectionWaitTimeout: Duration = .milliseconds(120_000)
        /// `transport.idle_timeout_ms`: how long an unused keep-alive connection stays open
        /// (Synapse keeps them 2 minutes).
        public var idleTimeout: Duration = .milliseconds(120_000)
        /// `transport.request_timeout_ms`: how long a request may wait for its whole response.
        public var requestTimeout: Duration = .milliseconds(60_000)
        /// `transport.max_response_bytes`: the largest response body read from a remote server.
        public var maxResponseBytes = 1_048_576

        public init() {}
    }

    /// `[sender]`: backoff for unreachable destinations.
    public struct SenderSettings: Sendable, Equatable {
        /// `sender.retry_initial_ms`: the first wait before retrying a failed destination
        /// (Synapse's `destination_min_retry_interval`, 10 minutes).
        public var retryInitialInterval: Duration = .milliseconds(600_000)
        /// `sender.retry_multiplier`: the factor each further wait is multiplied by.
        public var retryMultiplier = 2
        /// `sender.retry_max_ms`: the longest wait between retries (7 days); at least `retryInitialInterval`.
        public var retryMaxInterval: Duration = .milliseconds(604_800_000)
        /// `sender.catch_up_after_ms`: a backoff longer than this (Synapse's 1 h) sends the destination to catch-up.
        public var catchUpAfter: Duration = .milliseconds(3_600_000)
        /// `sender.rr_transactions_per_room_per_second`: Synapse's `federation_rr_transactions_per_room_per_second`.
        public var rrTransactionsPerRoomPerSecond = 50

        public init() {}
    }

    /// `[log]`: how much is logged.
    public struct LogSettings: Sendable, Equatable {
        /// The accepted values of `level`, least severe first (swift-log's levels).
        public static let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

        /// `log.level`: the least severe level that is logged, one of `levels`.
        public var level = "info"

        public init() {}
    }
}
