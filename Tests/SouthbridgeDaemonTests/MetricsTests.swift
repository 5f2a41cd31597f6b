import SouthbridgeSwarm
import SouthbridgeTestSupport
import Testing

/// What `/metrics` tells an operator about the outbox, the resolver and the process, read from
/// the real binary after it delivered.
@Suite("metrics an operator reads")
struct MetricsTests {
    @Test("/metrics shows the outbox file and rows, the resolver's caches and the process's memory, files and CPU")
    func outboxResolverAndProcess() async throws {
        let fixture = try await DaemonProcess(destinations: 2)
        try await fixture.withTearDown {
            try await fixture.start()
            let client = try await fixture.client()
            _ = try await client.send(txnID: "1", body: DaemonProcess.ingestBody(0..<3, destinations: fixture.swarm.serverNames))
            #expect(await DaemonProcess.eventually(timeout: .seconds(20)) {
                fixture.swarm.servers.allSatisfy { Set(pduNumbers($0)) == Set(0..<3) }
            })
            let answer = try await client.request(method: .GET, target: "/metrics")
            await client.close()
            let text = String(decoding: answer.body, as: UTF8.self)
            var values: [String: Double] = [:]
            for line in text.split(separator: "\n") where !line.hasPrefix("#") {
                let fields = line.split(separator: " ")
                if fields.count == 2, let value = Double(fields[1]) { values[String(fields[0])] = value }
            }
            #expect(values["southbridge_outbox_file_bytes"] ?? 0 > 0, "\(text)")
            #expect(values["southbridge_outbox_rows{table=\"destinations\"}"] == 2, "\(text)")
            #expect(values["southbridge_outbox_rows{table=\"ingest_transactions\"}"] == 1, "\(text)")
            // A container's overlay file system may account no block-device writes; the counter is there all the same.
            #expect(values["southbridge_outbox_bytes_written_total"] != nil, "\(text)")
            // The swarm's servers are IP literals, which need no lookup; the counters themselves are
            // DNSResolver's and WellKnownResolver's statistics, tested in ResolverTests.
            for name in ["dns_cache_hits_total", "dns_cache_misses_total", "dns_queries_in_flight",
                         "well_known_cache_hits_total", "well_known_fetches_in_flight"] {
                #expect(values["southbridge_" + name] == 0, "\(name): \(text)")
            }
            #expect(values["southbridge_process_resident_memory_bytes"] ?? 0 > 4 * 1_048_576, "\(text)")
            #expect(values["southbridge_process_open_fds"] ?? 0 > 3, "\(text)")
            #expect(values["southbridge_process_cpu_seconds_total"] ?? 0 > 0, "\(text)")
        }
    }

    @Test("/metrics shows the most connections open and TLS handshakes in progress at once, within the limits")
    func poolPeaks() async throws {
        // Six new destinations at once, paced by nothing but the two handshake turns.
        let fixture = try await DaemonProcess(destinations: 6) { configuration in
            configuration.limits.maxTLSHandshakes = 2
            configuration.limits.maxNewConnectionsPerSecond = 10_000
        }
        try await fixture.withTearDown {
            try await fixture.start()
            let client = try await fixture.client()
            _ = try await client.send(txnID: "1", body: DaemonProcess.ingestBody(0..<1, destinations: fixture.swarm.serverNames))
            #expect(await DaemonProcess.eventually(timeout: .seconds(20)) {
                fixture.swarm.servers.allSatisfy { pduNumbers($0) == [0] }
            })
            let answer = try await client.request(method: .GET, target: "/metrics")
            await client.close()
            let text = String(decoding: answer.body, as: UTF8.self)
            var values: [String: Int] = [:]
            for line in text.split(separator: "\n") where !line.hasPrefix("#") {
                let fields = line.split(separator: " ")
                if fields.count == 2, let value = Int(fields[1]) { values[String(fields[0])] = value }
            }
            #expect(text.contains("# TYPE southbridge_tls_handshakes_peak_in_progress gauge\n"), "\(text)")
            #expect((1...2).contains(values["southbridge_tls_handshakes_peak_in_progress"] ?? 0), "\(text)")
            #expect(values["southbridge_tls_handshakes_in_progress"] == 0, "\(text)")
            // One connection per destination, each kept open and idle.
            #expect(values["southbridge_connections_peak_open"] == 6, "\(text)")
            // The swarm saw the connections from its end, none of them closed yet. Its handshakes end
            // only once it has read the client's Finished, so a busy machine can show it one more
            // than the daemon ever had: it is only checked to have counted them.
            #expect(fixture.swarm.load.current.peakOpen == 6)
            #expect(fixture.swarm.load.current.peakHandshaking >= 1)
        }
    }
}
