import Federation
import Testing
@testable import SouthbridgeDaemon

/// A ranged integer key, the keys it must be consistent with, and where its value lands.
struct ConfigurationLimit: Sendable, CustomTestStringConvertible {
    let path: String
    let range: ClosedRange<Int>
    /// Settings that keep cross-key checks quiet for every value tried.
    let companions: [(path: String, literal: String)]
    let field: @Sendable (Configuration) -> Int

    init(_ path: String, _ range: ClosedRange<Int>, companions: [(path: String, literal: String)] = [],
         field: @escaping @Sendable (Configuration) -> Int) {
        self.path = path
        self.range = range
        self.companions = companions
        self.field = field
    }

    init(_ path: String, _ range: ClosedRange<Int>, companions: [(path: String, literal: String)] = [],
         duration: @escaping @Sendable (Configuration) -> Duration) {
        self.init(path, range, companions: companions) { Int(duration($0).milliseconds) }
    }

    var testDescription: String { "\(path) \(range)" }
}

struct ConfigurationLimitsTests {
    static let limits: [ConfigurationLimit] = [
        ConfigurationLimit("server.stop_timeout_ms", 0...600_000, duration: \.server.stopTimeout),
        ConfigurationLimit("storage.max_bytes", 1_048_576...1_099_511_627_776, field: \.storage.maxBytes),
        ConfigurationLimit("storage.max_age_ms", 60_000...31_536_000_000, duration: \.storage.maxAge),
        ConfigurationLimit("storage.commit_window_ms", 0...1_000, duration: \.storage.commitWindow),
        ConfigurationLimit("ingest.max_body_bytes", 1024...33_554_432, field: \.ingest.maxBodyBytes),
        ConfigurationLimit("ingest.idle_timeout_ms", 1000...3_600_000, duration: \.ingest.idleTimeout),
        ConfigurationLimit("ingest.request_timeout_ms", 100...600_000, duration: \.ingest.requestTimeout),
        ConfigurationLimit("replication.max_connections", 1...256, field: \.replication.maxConnections),
        ConfigurationLimit("replication.ping_interval_ms", 100...60_000, duration: \.replication.pingInterval),
        ConfigurationLimit("resolver.well_known_port", 1...65535, field: \.resolver.wellKnownPort),
        ConfigurationLimit("limits.max_connections", 1...65535,
                           companions: [("limits.max_tls_handshakes", "1")], field: \.limits.maxConnections),
        ConfigurationLimit("limits.max_tls_handshakes", 1...1024,
                           companions: [("limits.max_connections", "65535")], field: \.limits.maxTLSHandshakes),
        ConfigurationLimit("limits.max_new_connections_per_second", 1...10_000, field: \.limits.maxNewConnectionsPerSecond),
        ConfigurationLimit("limits.fairness_exchanges", 1...1_000_000, field: \.limits.fairnessExchanges),
        ConfigurationLimit("limits.fairness_hold_ms", 100...3_600_000, duration: \.limits.fairnessHoldTime),
        ConfigurationLimit("limits.max_pdus_per_transaction", 1...50, field: \.limits.maxPDUsPerTransaction),
        ConfigurationLimit("limits.max_pdus_in_memory_per_destination", 1...1_000_000,
                           field: \.limits.maxPDUsInMemoryPerDestination),
        ConfigurationLimit("limits.max_pdus_in_memory", 1...100_000_000, field: \.limits.maxPDUsInMemory),
        ConfigurationLimit("limits.max_ephemeral_edus_in_memory", 1...10_000_000, field: \.limits.maxEphemeralEDUsInMemory),
        ConfigurationLimit("transport.connect_timeout_ms", 100...600_000, duration: \.transport.connectTimeout),
        ConfigurationLimit("transport.tls_handshake_timeout_ms", 100...600_000, duration: \.transport.tlsHandshakeTimeout),
        ConfigurationLimit("transport.connection_wait_timeout_ms", 100...3_600_000, duration: \.transport.connectionWaitTimeout),
        ConfigurationLimit("transport.idle_timeout_ms", 1000...3_600_000, duration: \.transport.idleTimeout),
        ConfigurationLimit("transport.request_timeout_ms", 100...3_600_000, duration: \.transport.requestTimeout),
        ConfigurationLimit("transport.max_response_bytes", 1024...67_108_864, field: \.transport.maxResponseBytes),
        ConfigurationLimit("sender.retry_initial_ms", 1...86_400_000, duration: \.sender.retryInitialInterval),
        ConfigurationLimit("sender.retry_multiplier", 1...10, field: \.sender.retryMultiplier),
        ConfigurationLimit("sender.retry_max_ms", 1...31_536_000_000,
                           companions: [("sender.retry_initial_ms", "1")], duration: \.sender.retryMaxInterval),
        ConfigurationLimit("sender.catch_up_after_ms", 1...31_536_000_000, duration: \.sender.catchUpAfter),
        ConfigurationLimit("sender.rr_transactions_per_room_per_second", 1...10_000,
                           field: \.sender.rrTransactionsPerRoomPerSecond),
    ]

    @Test(arguments: limits)
    func acceptsBothBoundsAndRejectsBeyondThem(limit: ConfigurationLimit) throws {
        for value in [limit.range.lowerBound, limit.range.upperBound] {
            let (text, _) = configurationDocument(limit.companions + [(limit.path, String(value))])
            let configuration = try Configuration.parse(text, source: "test.toml")
            #expect(limit.field(configuration) == value)
        }
        for value in [limit.range.lowerBound - 1, limit.range.upperBound + 1] {
            let (text, lines) = configurationDocument(limit.companions + [(limit.path, String(value))])
            #expect(configurationProblems(text) == """
                line \(lines[limit.path]!): \(limit.path): must be between \(limit.range.lowerBound) and \
                \(limit.range.upperBound), got \(value)
                """)
        }
    }

    @Test func everyIntegerKeyHasARangeTest() {
        let tested = Set(Self.limits.map(\.path))
        let configuration = Configuration.withDefaults(serverName: "example.org")
        let integerKeys = ConfigurationKey.all.filter { Int($0.render(configuration)) != nil }.map(\.path)
        #expect(Set(integerKeys) == tested)
    }
}
