import Federation
import Resolver

extension ConfigurationKey {
    /// Every key of the configuration file, in the order `renderTOML()` writes them.
    /// Defaults are not here: they are the initial values of `Configuration`'s properties.
    static let all: [ConfigurationKey] = [
        ConfigurationKey(
            "server", "name", \.server.name, required: true,
            summary: "This homeserver's server name, the origin of every federation request.",
            decode: { (value, path) throws(KeyProblems) in
                let name = try string(value, path)
                do {
                    _ = try ServerName(name)
                } catch {
                    throw KeyProblems(line: value.line, path: path, message: "\(error)")
                }
                return name
            },
            encode: { Configuration.quoted($0) }),
        .absolutePath("server", "signing_key_path", \.server.signingKeyPath,
                      summary: "The Synapse-format Ed25519 signing key file that signs every request."),
        .milliseconds("server", "stop_timeout_ms", \.server.stopTimeout, 0...600_000,
                      summary: "How long a graceful stop waits for in-flight work, in milliseconds."),

        .absolutePath("storage", "path", \.storage.path,
                      summary: "The outbox SQLite database, which keeps every accepted unit until it is delivered; PDU bodies go to the directory of the same name with -log added."),
        .integer("storage", "max_bytes", \.storage.maxBytes, 1_048_576...1_099_511_627_776,
                 summary: "The most bytes the outbox may hold; past nine tenths of it the oldest units owed only to backing-off destinations are dropped, at it ingest answers 507."),
        .milliseconds("storage", "max_age_ms", \.storage.maxAge, 60_000...31_536_000_000,
                      summary: "Units older than this that only backing-off destinations still need are dropped and counted, in milliseconds."),
        .milliseconds("storage", "commit_window_ms", \.storage.commitWindow, 0...1_000,
                      summary: "How long an accepted request waits for others to share its fsync'd commit, in milliseconds; 0 commits each at once."),

        ConfigurationKey(
            "ingest", "listen", \.ingest.listen,
            summary: "Where the homeserver hands over work: \"host:port\", \"[ipv6]:port\" or \"unix:/absolute/path\".",
            decode: { (value, path) throws(KeyProblems) in
                let address = try listenAddress(value, path)
                // The API carries a bearer token over plain HTTP: it must not leave the machine.
                if case .tcp(let host, _) = address, !Configuration.isLoopbackHost(host) {
                    throw KeyProblems(line: value.line, path: path,
                                      message: "must be a loopback address (127.0.0.0/8, [::1], localhost) or unix:/path, got \(Configuration.quoted(address.description))")
                }
                return address
            },
            encode: { Configuration.quoted($0.description) }),
        .absolutePath("ingest", "token_file", \.ingest.tokenFile,
                      summary: "The file holding the bearer token the homeserver must present."),
        .integer("ingest", "max_body_bytes", \.ingest.maxBodyBytes, 1024...33_554_432,
                 summary: "The largest ingest request body accepted, in bytes."),
        .milliseconds("ingest", "idle_timeout_ms", \.ingest.idleTimeout, 1000...3_600_000,
                      summary: "How long an ingest connection may wait for its next request before it is closed, in milliseconds."),
        .milliseconds("ingest", "request_timeout_ms", \.ingest.requestTimeout, 100...600_000,
                      summary: "How long a request may take to arrive whole from its first byte, or it is answered 408, in milliseconds."),

        ConfigurationKey(
            "replication", "listen", \.replication.listen,
            summary: "Where followers and `southbridge tail` connect, in the form of ingest.listen; \"\" disables it. Beyond loopback it needs replication.secret_file.",
            decode: { (value, path) throws(KeyProblems) -> Configuration.ListenAddress? in
                if case .string("") = value.kind { return nil }
                return try listenAddress(value, path)
            },
            encode: { Configuration.quoted($0?.description ?? "") }),
        ConfigurationKey(
            "replication", "secret_file", \.replication.secretFile,
            summary: "A file holding the secret followers must send with AUTH first; \"\" lets any local process follow.",
            decode: { (value, path) throws(KeyProblems) -> String? in
                if case .string("") = value.kind { return nil }
                return try absolutePath(value, path)
            },
            encode: { Configuration.quoted($0 ?? "") }),
        .integer("replication", "max_connections", \.replication.maxConnections, 1...256,
                 summary: "The most followers connected at once; one more is told ERROR and closed."),
        .milliseconds("replication", "ping_interval_ms", \.replication.pingInterval, 100...60_000,
                      summary: "A PING goes to a follower when nothing was sent for this long; one that pinged and then stays silent five times as long is closed, in milliseconds."),

        ConfigurationKey(
            "tls", "ca_file", \.tls.caFile,
            summary: "A PEM file of CA certificates trusted for remote servers; \"\" uses the system trust store.",
            decode: { (value, path) throws(KeyProblems) -> String? in
                if case .string("") = value.kind { return nil }
                return try absolutePath(value, path)
            },
            encode: { Configuration.quoted($0 ?? "") }),

        ConfigurationKey(
            "network", "ip_range_allowlist", \.network.ipRangeAllowlist,
            summary: "CIDR ranges exempt from the built-in blocklist of private and reserved addresses.",
            decode: { (value, path) throws(KeyProblems) in
                try stringArray(value, path) { (text) throws(IPRangeError) in try IPRange(parsing: text) }
            },
            encode: { "[" + $0.map { Configuration.quoted($0.description) }.joined(separator: ", ") + "]" }),

        ConfigurationKey(
            "resolver", "nameservers", \.resolver.nameservers,
            summary: "DNS servers to ask, as \"ip:port\" or \"[ipv6]:port\"; [] uses those in /etc/resolv.conf.",
            decode: { (value, path) throws(KeyProblems) in
                try stringArray(value, path) { (text) throws(Configuration.ValueError) in
                    try Configuration.Nameserver(parsing: text)
                }
            },
            encode: { "[" + $0.map { Configuration.quoted($0.description) }.joined(separator: ", ") + "]" }),
        .integer("resolver", "well_known_port", \.resolver.wellKnownPort, 1...65535,
                 summary: "The port .well-known/matrix/server is fetched from: 443, as the spec says; change it only for tests."),

        .integer("limits", "max_connections", \.limits.maxConnections, 1...65535,
                 summary: "The most open connections to remote servers at once, connecting and closing ones included."),
        .integer("limits", "max_tls_handshakes", \.limits.maxTLSHandshakes, 1...1024,
                 summary: "The most TLS handshakes in progress at once (a TCP connect in progress holds none); at most limits.max_connections."),
        .integer("limits", "max_new_connections_per_second", \.limits.maxNewConnectionsPerSecond, 1...10_000,
                 summary: "The most new connections (TCP connect and TLS handshake) started per second, with a burst of one second's worth; past it, in rounds of one second's worth."),
        .integer("limits", "fairness_exchanges", \.limits.fairnessExchanges, 1...1_000_000,
                 summary: "After this many requests on one connection, a destination gives it back when another destination waits for a slot."),
        .milliseconds("limits", "fairness_hold_ms", \.limits.fairnessHoldTime, 100...3_600_000,
                      summary: "How long a destination may hold a connection, or keep opening one, while another waits, in milliseconds."),
        .integer("limits", "max_pdus_per_transaction", \.limits.maxPDUsPerTransaction, 1...50,
                 summary: "The most PDUs in one federation transaction; the spec allows 50."),
        .integer("limits", "max_pdus_in_memory_per_destination", \.limits.maxPDUsInMemoryPerDestination, 1...1_000_000,
                 summary: "The most PDUs a destination keeps queued in memory; beyond it the destination catches up from the outbox (newest PDU per room)."),
        .integer("limits", "max_pdus_in_memory", \.limits.maxPDUsInMemory, 1...100_000_000,
                 summary: "The most PDUs queued in memory across all destinations; beyond it the longest queue catches up from the outbox."),
        .integer("limits", "max_ephemeral_edus_in_memory", \.limits.maxEphemeralEDUsInMemory, 1...10_000_000,
                 summary: "The most typing, presence and receipt updates held in memory; beyond it the oldest are dropped."),

        .milliseconds("transport", "connect_timeout_ms", \.transport.connectTimeout, 100...600_000,
                      summary: "How long a TCP connect may take, in milliseconds."),
        .milliseconds("transport", "tls_handshake_timeout_ms", \.transport.tlsHandshakeTimeout, 100...600_000,
                      summary: "How long a TLS handshake may take, in milliseconds."),
        .milliseconds("transport", "connection_wait_timeout_ms", \.transport.connectionWaitTimeout, 100...3_600_000,
                      summary: "How long a request may wait for a connection from the pool, in milliseconds."),
        .milliseconds("transport", "idle_timeout_ms", \.transport.idleTimeout, 1000...3_600_000,
                      summary: "How long an unused keep-alive connection stays open, in milliseconds."),
        .milliseconds("transport", "request_timeout_ms", \.transport.requestTimeout, 100...3_600_000,
                      summary: "How long a request may wait for its whole response, in milliseconds."),
        .integer("transport", "max_response_bytes", \.transport.maxResponseBytes, 1024...67_108_864,
                 summary: "The largest response body read from a remote server, in bytes."),

        .milliseconds("sender", "retry_initial_ms", \.sender.retryInitialInterval, 1...86_400_000,
                      summary: "The first wait before retrying an unreachable destination, in milliseconds."),
        .integer("sender", "retry_multiplier", \.sender.retryMultiplier, 1...10,
                 summary: "The factor each further wait before a retry is multiplied by."),
        .milliseconds("sender", "retry_max_ms", \.sender.retryMaxInterval, 1...31_536_000_000,
                      summary: "The longest wait between retries, in milliseconds; at least sender.retry_initial_ms."),
        .milliseconds("sender", "catch_up_after_ms", \.sender.catchUpAfter, 1...31_536_000_000,
                      summary: "A destination whose backoff grows past this drops its queue and is later caught up with the newest PDU of each room, in milliseconds."),
        .integer("sender", "rr_transactions_per_room_per_second", \.sender.rrTransactionsPerRoomPerSecond, 1...10_000,
                 summary: "The pace of delayed wake-ups for read receipts, presence and device lists: one destination per 1/N s, all within 30 s."),

        ConfigurationKey(
            "log", "level", \.log.level,
            summary: "The least severe level logged: trace, debug, info, notice, warning, error or critical.",
            decode: { (value, path) throws(KeyProblems) in
                let level = try string(value, path)
                guard Configuration.LogSettings.levels.contains(level) else {
                    throw KeyProblems(line: value.line, path: path,
                                      message: "must be one of \(Configuration.LogSettings.levels.joined(separator: ", ")), got \(Configuration.quoted(level))")
                }
                return level
            },
            encode: { Configuration.quoted($0) }),
    ]

    private static func listenAddress(_ value: TOMLValue, _ path: String) throws(KeyProblems) -> Configuration.ListenAddress {
        let text = try string(value, path)
        do throws(Configuration.ValueError) {
            return try Configuration.ListenAddress(parsing: text)
        } catch {
            throw KeyProblems(line: value.line, path: path, message: "\(error)")
        }
    }
}
