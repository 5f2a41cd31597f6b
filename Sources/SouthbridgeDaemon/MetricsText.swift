import Outbox
import Replication
import Resolver
import Sender
import Transport

/// The numbers an admin looks at, as Prometheus text for `/metrics` and one line for `STATUS=`.
enum MetricsText {
    static func render(sender: FederationSender, pool: ConnectionPool, outbox: Outbox, resolver: FederationResolver,
                       replication: ReplicationServer? = nil) async -> String {
        let metrics = await sender.currentMetrics
        let counts = await pool.counts
        let resolution = await resolver.statistics()
        let process = ProcessStatistics.current()
        let rows: [(String, String, Int)] = [
            ("southbridge_transactions_sent_total", "counter", metrics.transactionsSent),
            ("southbridge_transactions_failed_total", "counter", metrics.transactionsFailed),
            ("southbridge_transactions_deferred_total", "counter", metrics.transactionsDeferred),
            ("southbridge_pdus_delivered_total", "counter", metrics.pdusDelivered),
            ("southbridge_destinations_active", "gauge", metrics.activeDestinations),
            ("southbridge_destinations_in_backoff", "gauge", metrics.destinationsInBackoff),
            ("southbridge_destinations_awaiting_wakeup", "gauge", metrics.destinationsAwaitingWakeup),
            ("southbridge_destinations_catching_up", "gauge", metrics.destinationsCatchingUp),
            ("southbridge_destinations_reading_backlog", "gauge", metrics.destinationsReadingBacklog),
            ("southbridge_destinations_in_memory", "gauge", metrics.destinationsInMemory),
            ("southbridge_edus_delivered_total", "counter", metrics.edusDelivered),
            ("southbridge_units_rejected_total", "counter", metrics.unitsRejected),
            ("southbridge_pdus_in_memory", "gauge", metrics.pdusInMemory),
            ("southbridge_queue_spills_total", "counter", metrics.queueSpills),
            ("southbridge_ephemeral_edus_queued", "gauge", metrics.ephemeralEDUsQueued),
            ("southbridge_ephemeral_edus_dropped_expired_total", "counter", metrics.ephemeralEDUsDroppedExpired),
            ("southbridge_ephemeral_edus_dropped_for_memory_total", "counter", metrics.ephemeralEDUsDroppedForMemory),
            ("southbridge_connections_open", "gauge", counts.open),
            ("southbridge_connections_idle", "gauge", counts.idle),
            ("southbridge_tls_handshakes_in_progress", "gauge", counts.handshaking),
            ("southbridge_connections_connecting", "gauge", counts.connecting),
            ("southbridge_connections_awaiting_handshake", "gauge", counts.awaitingHandshake),
            ("southbridge_connections_closing", "gauge", counts.closing),
            ("southbridge_connections_peak_open", "gauge", counts.peakOpen),
            ("southbridge_tls_handshakes_peak_in_progress", "gauge", counts.peakHandshaking),
            ("southbridge_connection_evictions_total", "counter", counts.evictions),
            ("southbridge_connection_waiters", "gauge", counts.waiting),
            ("southbridge_tls_handshakes_total", "counter", counts.handshakesCompleted),
            ("southbridge_outbox_used_bytes", "gauge", Int(outbox.usedBytes)),
            ("southbridge_outbox_pdus_dropped_total", "counter", outbox.droppedPDUCount),
            ("southbridge_outbox_edu_copies_dropped_total", "counter", outbox.droppedEDUCopyCount),
            ("southbridge_outbox_file_bytes", "gauge", Int(outbox.fileBytes)),
            ("southbridge_outbox_bytes_written_total", "counter", process.diskBytesWritten),
            ("southbridge_dns_cache_hits_total", "counter", resolution.dns.cacheHits),
            ("southbridge_dns_cache_misses_total", "counter", resolution.dns.cacheMisses),
            ("southbridge_dns_shared_lookups_total", "counter", resolution.dns.sharedLookups),
            ("southbridge_dns_cache_entries", "gauge", resolution.dns.cacheEntries),
            ("southbridge_dns_queries_sent_total", "counter", resolution.dns.queriesSent),
            ("southbridge_dns_timeouts_total", "counter", resolution.dns.timeouts),
            ("southbridge_dns_queries_in_flight", "gauge", resolution.dns.queriesInFlight),
            ("southbridge_dns_queries_waiting", "gauge", resolution.dns.queriesWaiting),
            ("southbridge_well_known_cache_hits_total", "counter", resolution.wellKnown.cacheHits),
            ("southbridge_well_known_fetches_total", "counter", resolution.wellKnown.fetches),
            ("southbridge_well_known_cached_names", "gauge", resolution.wellKnownCachedNames),
            ("southbridge_well_known_fetches_in_flight", "gauge", resolution.wellKnownFetchesInFlight),
            ("southbridge_process_resident_memory_bytes", "gauge", process.residentBytes),
            ("southbridge_process_open_fds", "gauge", process.openFileDescriptors),
        ]
        // The row counts are read on the writer thread; a closed or failing outbox leaves them out.
        let rowCounts = try? await outbox.rowCounts()
        let tables: [(String, Int)] = rowCounts.map { rows in
            [("pdus", rows.pdus), ("destination_sets", rows.destinationSets),
             ("destination_set_members", rows.destinationSetMembers), ("destinations", rows.destinations),
             ("ingest_transactions", rows.ingestTransactions), ("edus", rows.edus),
             ("edu_destinations", rows.eduDestinations)]
        } ?? []
        var text = rows.map { "# TYPE \($0.0) \($0.1)\n\($0.0) \($0.2)\n" }.joined()
        text += "# TYPE southbridge_connection_waiters_by_class gauge\n"
        for requestClass in RequestClass.allCases {
            text += "southbridge_connection_waiters_by_class{class=\"\(requestClass.label)\"} \(counts.waitingByClass[requestClass] ?? 0)\n"
        }
        text += "# TYPE southbridge_tls_handshakes_per_second gauge\n"
        text += "southbridge_tls_handshakes_per_second \(counts.handshakesPerSecond)\n"
        text += "# TYPE southbridge_outbox_rows gauge\n"
        for (table, count) in tables {
            text += "southbridge_outbox_rows{table=\"\(table)\"} \(count)\n"
        }
        text += "# TYPE southbridge_process_cpu_seconds_total counter\n"
        text += "southbridge_process_cpu_seconds_total \(process.cpuSeconds)\n"
        if let replication { text += render(replication.metrics) }
        return text
    }

    /// The replication endpoint's lines, present only when it listens.
    static func render(_ metrics: ReplicationMetrics) -> String {
        func labelled(_ name: String, _ label: String, _ counts: [String: Int]) -> String {
            "# TYPE \(name) counter\n" + counts.sorted { $0.key < $1.key }.map { "\(name){\(label)=\"\($0.key)\"} \($0.value)\n" }.joined()
        }
        return "# TYPE southbridge_replication_clients_connected gauge\n"
            + "southbridge_replication_clients_connected \(metrics.clientsConnected)\n"
            + "# TYPE southbridge_replication_rows_buffered gauge\n"
            + "southbridge_replication_rows_buffered \(metrics.rowsBuffered)\n"
            + labelled("southbridge_replication_commands_in_total", "command", metrics.commandsIn)
            + labelled("southbridge_replication_commands_out_total", "command", metrics.commandsOut)
            + labelled("southbridge_replication_disconnects_total", "reason", metrics.disconnects)
    }

    /// What `systemctl status` shows, from numbers held in memory only, so that it never waits
    /// behind the outbox's writer: "312 destinations, 4 backing off, 12/1024 connections,
    /// 0 PDUs queued, 5120 delivered". Destinations are those the sender holds: every one owed
    /// something, and the most recently quiet.
    static func statusLine(sender: FederationSender, pool: ConnectionPool, maxConnections: Int) async -> String {
        let metrics = await sender.currentMetrics
        let counts = await pool.counts
        return "\(metrics.destinationsInMemory) destinations, \(metrics.destinationsInBackoff) backing off, "
            + "\(counts.open)/\(maxConnections) connections, \(metrics.pdusInMemory) PDUs queued, "
            + "\(metrics.pdusDelivered) delivered"
    }
}
