import Outbox
import Replication
import Sender
import Transport

/// The numbers an admin looks at, as Prometheus text for `/metrics` and one line for `STATUS=`.
enum MetricsText {
    static func render(sender: FederationSender, pool: ConnectionPool, outbox: Outbox,
                       replication: ReplicationServer? = nil) async -> String {
        let metrics = await sender.currentMetrics
        let counts = await pool.counts
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
            ("southbridge_connection_evictions_total", "counter", counts.evictions),
            ("southbridge_connection_waiters", "gauge", counts.waiting),
            ("southbridge_tls_handshakes_total", "counter", counts.handshakesCompleted),
            ("southbridge_outbox_used_bytes", "gauge", Int(outbox.usedBytes)),
            ("southbridge_outbox_pdus_dropped_total", "counter", outbox.droppedPDUCount),
            ("southbridge_outbox_edu_copies_dropped_total", "counter", outbox.droppedEDUCopyCount),
        ]
        let waitingByClass = RequestClass.allCases.map {
            "southbridge_connection_waiters_by_class{class=\"\($0.label)\"} \(counts.waitingByClass[$0] ?? 0)\n"
        }
        return rows.map { "# TYPE \($0.0) \($0.1)\n\($0.0) \($0.2)\n" }.joined()
            + "# TYPE southbridge_connection_waiters_by_class gauge\n" + waitingByClass.joined()
            + "# TYPE southbridge_tls_handshakes_per_second gauge\n"
            + "southbridge_tls_handshakes_per_second \(counts.handshakesPerSecond)\n"
            + (replication.map { render($0.metrics) } ?? "")
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

    static func statusLine(sender: FederationSender, pool: ConnectionPool) async -> String {
        let metrics = await sender.currentMetrics
        let counts = await pool.counts
        return "\(metrics.pdusDelivered) PDUs delivered; \(metrics.activeDestinations) destinations sending, "
            + "\(metrics.destinationsInBackoff) backing off; \(counts.open) connections open"
    }
}
