import Federation
import Ingest
import Outbox
import Resolver
import Sender

/// The destinations admin API's answers, from the Outbox (persisted state) and the sender
/// (what is in flight), in the spirit of Synapse's federation destinations admin API.
struct DestinationAdmin: DestinationAdministration {
    let outbox: Outbox
    let sender: FederationSender
    let resolver: FederationResolver

    func list(filter: DestinationListFilter, from: String, limit: Int) async throws -> JSONValue {
        let records = try await outbox.destinations(after: from, limit: limit, backingOffOnly: filter == .backoff)
        var body: [String: JSONValue] = ["destinations": .array(records.map { .object(fields(of: $0)) })]
        if records.count == limit, let last = records.last { body["next_token"] = .string(last.name) }
        return .object(body)
    }

    func detail(of name: String) async throws -> JSONValue? {
        guard let record = try await outbox.destination(name) else { return nil }
        var body = fields(of: record)
        body["pending_pdus"] = .integer(Int64(try await outbox.pendingPDUCount(for: name)))
        let status = await sender.status(of: name)
        body["pending_edus"] = .integer(Int64(try await outbox.pendingEDUCount(for: name)))
        body["sending"] = .bool(status?.isSending ?? false)
        body["catch_up"] = .string(status?.phase.rawValue ?? PerDestinationQueue.Phase.unloaded.rawValue)
        body["queued_pdus_in_memory"] = .integer(Int64(status?.queuedPDUs ?? 0))
        body["ephemeral_edus_queued"] = .bool(status?.queuedEphemeralEDUs ?? false)
        if let txnID = status?.transactionInFlight {
            body["transaction_in_flight"] = .object([
                "txn_id": .string(txnID), "pdus": .integer(Int64(status?.pdusInFlight ?? 0)),
                "edus": .integer(Int64(status?.edusInFlight ?? 0)),
            ])
        }
        do {
            let address = try await resolver.resolve(try ServerName(name))
            body["resolved"] = .object([
                "endpoints": .array(address.endpoints.map { .string($0.description) }),
                "host_header": .string(address.hostHeader),
                "certificate_name": .string(address.certificateName.description),
            ])
        } catch {
            body["resolution_error"] = .string("\(error)")
        }
        return .object(body)
    }

    func resetBackoffAndWake(_ name: String) async throws -> Bool {
        try await sender.resetBackoffAndWake(name)
    }

    private func fields(of record: DestinationRecord) -> [String: JSONValue] {
        [
            "destination": .string(record.name),
            "last_successful_stream_ordering": .integer(record.lastSuccessfulStreamOrdering),
            "retry_last_ts": record.retryLastTS.map { .integer($0) } ?? .null,
            "retry_interval_ms": .integer(record.retryIntervalMS),
            "failure_count": .integer(record.failureCount),
        ]
    }
}

/// Hands the ingest API's typing, presence and receipt EDUs, and its accepted events, to the sender.
struct SenderEphemeralDelivery: EphemeralDelivery {
    let sender: FederationSender

    func accepted(events: [AcceptedEvent], ephemeral: [AddressedEphemeralEDU]) {
        if !events.isEmpty {
            sender.hand(.recentEvents(events.map { (eventID: $0.eventID, senderServer: $0.senderServer) }))
        }
        for item in ephemeral {
            sender.hand(.ephemeral(item.edu, destinations: item.destinations))
        }
    }
}
