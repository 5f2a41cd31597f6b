import Federation
import Outbox

/// Validates the body of `PUT /_southbridge/v1/send/{txnId}` and turns it into an
/// `IngestBatch` of canonical PDUs, or an `IngestError` naming the first wrong field.
///
/// Each PDU is canonicalised here, once; the Outbox stores those bytes and every
/// transaction to every destination reuses them.
public struct SendRequestParser: Sendable {
    /// Synapse's `MAX_PDU_SIZE`: receivers reject larger events.
    static let maxPDUBytes = 65536
    /// The most PDUs one ingest request may carry; the homeserver splits larger batches.
    public static let maxPDUsPerRequest = 1000

    let ownServerName: String

    func parse(txnID: String, body: [UInt8]) throws(IngestError) -> IngestBatch {
        let root: JSONValue
        do {
            root = try JSONValue.parse(body)
        } catch {
            throw .notJSON("request body: \(error)")
        }
        guard case .object(let fields) = root else { throw .badJSON("request body: must be a JSON object") }
        for key in fields.keys where key != "pdus" && key != "edus" {
            throw .badJSON("\(key): unknown field (expected \"pdus\" and \"edus\")")
        }
        if let edus = fields["edus"] {
            guard case .array(let list) = edus else { throw .badJSON("edus: must be an array") }
            if !list.isEmpty {
                throw IngestError(status: 400, errcode: "M_UNRECOGNIZED", "edus: EDUs are not accepted by this version of southbridge; send PDUs only")
            }
        }
        var pdus: [IncomingPDU] = []
        if let value = fields["pdus"] {
            guard case .array(let list) = value else { throw .badJSON("pdus: must be an array") }
            guard list.count <= Self.maxPDUsPerRequest else {
                throw IngestError(status: 413, errcode: "M_TOO_LARGE",
                                  "pdus: \(list.count) PDUs is over the limit of \(Self.maxPDUsPerRequest) per request; split the batch")
            }
            pdus.reserveCapacity(list.count)
            for (index, item) in list.enumerated() {
                pdus.append(try parsePDU(item, path: "pdus[\(index)]"))
            }
        }
        return IngestBatch(txnID: txnID, pdus: pdus)
    }

    private func parsePDU(_ item: JSONValue, path: String) throws(IngestError) -> IncomingPDU {
        guard case .object(let fields) = item else { throw .badJSON("\(path): must be an object with \"pdu\" and \"destinations\"") }
        for key in fields.keys where !["pdu", "destinations", "event_id"].contains(key) {
            throw .badJSON("\(path).\(key): unknown field (expected \"pdu\", \"destinations\" and an optional \"event_id\")")
        }
        guard let pdu = fields["pdu"] else { throw .badJSON("\(path).pdu: required field is missing") }
        guard case .object(let event) = pdu else { throw .badJSON("\(path).pdu: must be a JSON object") }
        guard case .string(let roomID)? = event["room_id"], !roomID.isEmpty else {
            throw .badJSON("\(path).pdu.room_id: required string is missing")
        }
        var eventID: String?
        if let value = fields["event_id"] {
            guard case .string(let text) = value else { throw .badJSON("\(path).event_id: must be a string") }
            eventID = text
        } else if case .string(let text)? = event["event_id"] {
            eventID = text
        }
        guard let destinationsValue = fields["destinations"] else {
            throw .badJSON("\(path).destinations: required field is missing")
        }
        guard case .array(let list) = destinationsValue else { throw .badJSON("\(path).destinations: must be an array of server names") }
        var destinations: [String] = []
        var seen = Set<String>()
        for (index, entry) in list.enumerated() {
            guard case .string(let name) = entry else {
                throw .badJSON("\(path).destinations[\(index)]: must be a string")
            }
            do {
                _ = try ServerName(name)
            } catch {
                throw .badJSON("\(path).destinations[\(index)]: \(error)")
            }
            // A homeserver lists every server in the room, itself included; it never needs a copy.
            if name != ownServerName, seen.insert(name).inserted {
                destinations.append(name)
            }
        }
        let canonical = CanonicalJSON.encode(pdu)
        if canonical.count > Self.maxPDUBytes {
            throw IngestError(status: 413, errcode: "M_TOO_LARGE",
                              "\(path).pdu: \(canonical.count) bytes of canonical JSON is over the \(Self.maxPDUBytes)-byte PDU limit")
        }
        return IncomingPDU(roomID: roomID, eventID: eventID, canonicalJSON: canonical, destinations: destinations)
    }
}
