extension IngestBatch {
    /// Checks the structural rules the Outbox relies on, before anything reaches the writer.
    ///
    /// Field paths match the ingest API's JSON (`pdus[3].destinations[0]`), so the error can go back to the
    /// homeserver as it is.
    func validate(limits: OutboxLimits) throws(OutboxError) {
        try checkIdentifier(txnID, field: "txn_id", limits: limits)
        guard pdus.count <= limits.maxPDUsPerBatch else {
            throw invalid("pdus", "\(pdus.count) PDUs, more than the limit of \(limits.maxPDUsPerBatch)")
        }
        var totalBytes = 0
        for (index, pdu) in pdus.enumerated() {
            let field = "pdus[\(index)]"
            try checkIdentifier(pdu.roomID, field: "\(field).room_id", limits: limits)
            if let eventID = pdu.eventID {
                try checkIdentifier(eventID, field: "\(field).event_id", limits: limits)
            }
            guard !pdu.canonicalJSON.isEmpty else {
                throw invalid("\(field).canonical_json", "must not be empty")
            }
            guard pdu.canonicalJSON.count <= limits.maxPDUBytes else {
                throw invalid(
                    "\(field).canonical_json",
                    "\(pdu.canonicalJSON.count) bytes, more than the limit of \(limits.maxPDUBytes)")
            }
            for (destinationIndex, destination) in pdu.destinations.enumerated() {
                try checkIdentifier(destination, field: "\(field).destinations[\(destinationIndex)]", limits: limits)
            }
            totalBytes += pdu.canonicalJSON.count
        }
        guard totalBytes <= limits.maxBatchBytes else {
            throw invalid("pdus", "\(totalBytes) bytes of canonical JSON, more than the limit of \(limits.maxBatchBytes)")
        }
        for (index, edu) in edus.enumerated() {
            let field = "edus[\(index)]"
            try checkIdentifier(edu.eduType, field: "\(field).edu_type", limits: limits)
            guard !edu.canonicalJSON.isEmpty else {
                throw invalid("\(field).canonical_json", "must not be empty")
            }
            guard edu.canonicalJSON.count <= limits.maxPDUBytes else {
                throw invalid(
                    "\(field).canonical_json",
                    "\(edu.canonicalJSON.count) bytes, more than the limit of \(limits.maxPDUBytes)")
            }
            for (destinationIndex, destination) in edu.destinations.enumerated() {
                try checkIdentifier(destination, field: "\(field).destinations[\(destinationIndex)]", limits: limits)
            }
            totalBytes += edu.canonicalJSON.count
        }
        // PDUs alone were within the bound above, so it is the EDUs that took the batch over it.
        guard totalBytes <= limits.maxBatchBytes else {
            throw invalid(
                "edus",
                "\(totalBytes) bytes of canonical JSON counting the PDUs, more than the limit of \(limits.maxBatchBytes)")
        }
    }

    /// `field` is built only for an error: a PDU to a room of thousands of servers is checked here once per server.
    private func checkIdentifier(_ value: String, field: @autoclosure () -> String, limits: OutboxLimits) throws(OutboxError) {
        guard !value.isEmpty else {
            throw invalid(field(), "must not be empty")
        }
        guard value.utf8.count <= limits.maxIdentifierBytes else {
            throw invalid(field(), "\(value.utf8.count) bytes, more than the limit of \(limits.maxIdentifierBytes)")
        }
    }

    private func invalid(_ field: String, _ rule: String) -> OutboxError {
        .invalidBatch(txnID: txnID, field: field, rule: rule)
    }
}
