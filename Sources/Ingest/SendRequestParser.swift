import Federation
import Outbox

/// One parsed `PUT /_southbridge/v1/send/{txnId}`: what the Outbox stores (PDUs and
/// persistent EDUs) and what only the sender's memory holds (typing, presence, receipts).
struct ParsedSendRequest: Sendable {
    var batch: IngestBatch
    var ephemeral: [AddressedEphemeralEDU]
    var events: [AcceptedEvent]
}

/// Validates the body of `PUT /_southbridge/v1/send/{txnId}` and turns it into an
/// `IngestBatch` of canonical PDUs and EDUs, or an `IngestError` naming the first wrong field.
///
/// Each PDU and EDU is canonicalised here, once; the Outbox stores those bytes and every
/// transaction to every destination reuses them.
public struct SendRequestParser: Sendable {
    /// Synapse's `MAX_PDU_SIZE`: receivers reject larger events.
    static let maxPDUBytes = 65536
    /// Synapse's `SOFT_MAX_EDU_SIZE` and `MAX_TO_DEVICE_CONTENT_SIZE`.
    static let maxEDUBytes = 65536
    /// The most PDUs one ingest request may carry; the homeserver splits larger batches.
    public static let maxPDUsPerRequest = 1000
    /// The most EDUs one ingest request may carry.
    public static let maxEDUsPerRequest = 1000
    /// The spec's private read receipt: it must never leave the user's homeserver.
    static let privateReadReceiptType = "m.read.private"

    let ownServerName: String

    func parse(txnID: String, body: [UInt8]) throws(IngestError) -> ParsedSendRequest {
        let root: JSONValue
        do {
            root = try JSONValue.parse(body)
        } catch {
            throw .notJSON("request body: \(error)")
        }
        guard case .object(let fields) = root else { throw .badJSON("request body: must be a JSON object") }
        for key in fields.keys where key != "pdus" && key != "edus" {
            throw .badJSON("\(FieldPath.member(key, of: "")): unknown field (expected \"pdus\" and \"edus\")")
        }
        var persistent: [IncomingEDU] = []
        var ephemeral: [AddressedEphemeralEDU] = []
        if let edus = fields["edus"] {
            guard case .array(let list) = edus else { throw .badJSON("edus: must be an array") }
            guard list.count <= Self.maxEDUsPerRequest else {
                throw IngestError(status: 413, errcode: "M_TOO_LARGE",
                                  "edus: \(list.count) EDUs is over the limit of \(Self.maxEDUsPerRequest) per request; split the batch")
            }
            for (index, item) in list.enumerated() {
                switch try parseEDU(item, path: "edus[\(index)]") {
                case .persistent(let edu): persistent.append(edu)
                case .ephemeral(let edu): ephemeral.append(edu)
                }
            }
        }
        var pdus: [IncomingPDU] = []
        var events: [AcceptedEvent] = []
        if let value = fields["pdus"] {
            guard case .array(let list) = value else { throw .badJSON("pdus: must be an array") }
            guard list.count <= Self.maxPDUsPerRequest else {
                throw IngestError(status: 413, errcode: "M_TOO_LARGE",
                                  "pdus: \(list.count) PDUs is over the limit of \(Self.maxPDUsPerRequest) per request; split the batch")
            }
            pdus.reserveCapacity(list.count)
            for (index, item) in list.enumerated() {
                let (pdu, event) = try parsePDU(item, path: "pdus[\(index)]")
                pdus.append(pdu)
                if let event { events.append(event) }
            }
        }
        return ParsedSendRequest(batch: IngestBatch(txnID: txnID, pdus: pdus, edus: persistent), ephemeral: ephemeral, events: events)
    }

    private enum ParsedEDU {
        case persistent(IncomingEDU)
        case ephemeral(AddressedEphemeralEDU)
    }

    /// `{"edu_type","content","destinations","key"?}`. Typing, presence and receipts are
    /// parsed for collapsing in memory; every other type is stored until delivered.
    private func parseEDU(_ item: JSONValue, path: String) throws(IngestError) -> ParsedEDU {
        guard case .object(let fields) = item else {
            throw .badJSON("\(path): must be an object with \"edu_type\", \"content\" and \"destinations\"")
        }
        for key in fields.keys where !["edu_type", "content", "destinations", "key"].contains(key) {
            throw .badJSON("\(FieldPath.member(key, of: path)): unknown field (expected \"edu_type\", \"content\", \"destinations\" and an optional \"key\")")
        }
        guard case .string(let eduType)? = fields["edu_type"], !eduType.isEmpty else {
            throw .badJSON("\(path).edu_type: required string is missing")
        }
        guard let content = fields["content"] else { throw .badJSON("\(path).content: required field is missing") }
        guard case .object = content else { throw .badJSON("\(path).content: must be a JSON object") }
        let destinations = try parseDestinations(fields["destinations"], path: path)
        let canonical = CanonicalJSON.encode(.object(["content": content, "edu_type": .string(eduType)]))
        if canonical.count > Self.maxEDUBytes {
            throw IngestError(status: 413, errcode: "M_TOO_LARGE",
                              "\(path).content: \(canonical.count) bytes of canonical JSON is over the \(Self.maxEDUBytes)-byte EDU limit")
        }
        let ephemeral: EphemeralEDU?
        do {
            ephemeral = try EphemeralEDU.parse(eduType: eduType, content: content)
        } catch {
            throw .badJSON("\(path).\(error)")
        }
        if case .receipts(let receipts)? = ephemeral,
           let hidden = receipts.first(where: { $0.receiptType == Self.privateReadReceiptType }) {
            throw .badJSON("\(path).content[\"\(hidden.roomID)\"]: \(Self.privateReadReceiptType) receipts are private to their user's server and are never sent over federation")
        }
        if let ephemeral {
            if let key = fields["key"], key.stringValue == nil {
                throw .badJSON("\(path).key: must be a string")
            }
            return .ephemeral(AddressedEphemeralEDU(edu: ephemeral, destinations: destinations))
        }
        if fields["key"] != nil {
            throw .badJSON("\(path).key: only m.typing, m.presence and m.receipt EDUs are collapsed by key; \(eduType) EDUs are each delivered")
        }
        return .persistent(IncomingEDU(eduType: eduType, canonicalJSON: canonical, destinations: destinations))
    }

    /// A list of valid server names, repeats and this server removed.
    private func parseDestinations(_ value: JSONValue?, path: String) throws(IngestError) -> [String] {
        guard let value else { throw .badJSON("\(path).destinations: required field is missing") }
        guard case .array(let list) = value else { throw .badJSON("\(path).destinations: must be an array of server names") }
        var destinations: [String] = []
        destinations.reserveCapacity(list.count)
        var seen = Set<String>(minimumCapacity: list.count)
        for (index, entry) in list.enumerated() {
            guard case .string(let name) = entry else {
                throw .badJSON("\(path).destinations[\(index)]: must be a string")
            }
            do {
                try ServerName.validate(name)
            } catch {
                throw .badJSON("\(path).destinations[\(index)]: \(error)")
            }
            // A homeserver lists every server in the room, itself included; it never needs a copy.
            if name != ownServerName, seen.insert(name).inserted {
                destinations.append(name)
            }
        }
        return destinations
    }

    private func parsePDU(_ item: JSONValue, path: String) throws(IngestError) -> (IncomingPDU, AcceptedEvent?) {
        guard case .object(let fields) = item else { throw .badJSON("\(path): must be an object with \"pdu\" and \"destinations\"") }
        for key in fields.keys where !["pdu", "destinations", "event_id"].contains(key) {
            throw .badJSON("\(FieldPath.member(key, of: path)): unknown field (expected \"pdu\", \"destinations\" and an optional \"event_id\")")
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
        let destinations = try parseDestinations(fields["destinations"], path: path)
        let canonical = CanonicalJSON.encode(pdu)
        if canonical.count > Self.maxPDUBytes {
            throw IngestError(status: 413, errcode: "M_TOO_LARGE",
                              "\(path).pdu: \(canonical.count) bytes of canonical JSON is over the \(Self.maxPDUBytes)-byte PDU limit")
        }
        var accepted: AcceptedEvent?
        if let eventID, case .string(let sender)? = event["sender"], let server = UserID.serverName(of: sender) {
            accepted = AcceptedEvent(eventID: eventID, senderServer: server)
        }
        return (IncomingPDU(roomID: roomID, eventID: eventID, canonicalJSON: canonical, destinations: destinations), accepted)
    }
}
