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
}
