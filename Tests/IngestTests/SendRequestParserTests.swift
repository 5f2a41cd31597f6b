import Federation
@testable import Ingest
import Testing

@Suite("PUT /send body validation")
struct SendRequestParserTests {
    let parser = SendRequestParser(ownServerName: "self.example")

    private func parse(_ json: String) throws(IngestError) -> [IncomingPDUSummary] {
        try parser.parse(txnID: "t", body: Array(json.utf8)).batch.pdus.map {
            IncomingPDUSummary(roomID: $0.roomID, eventID: $0.eventID, destinations: $0.destinations,
                               canonical: String(decoding: $0.canonicalJSON, as: UTF8.self))
        }
    }

    @Test func acceptsAndCanonicalises() throws {
        let pdus = try parse(#"{"pdus":[{"pdu":{"room_id":"!r:x","type":"m","b":1,"a":"é"},"destinations":["a.example","b.example:8448"]}]}"#)
        #expect(pdus == [IncomingPDUSummary(roomID: "!r:x", eventID: nil, destinations: ["a.example", "b.example:8448"],
                                            canonical: #"{"a":"é","b":1,"room_id":"!r:x","type":"m"}"#)])
    }

    @Test func ownNameAndDuplicatesAreDropped() throws {
        let pdus = try parse(#"{"pdus":[{"pdu":{"room_id":"!r:x"},"destinations":["a.example","self.example","a.example"]}]}"#)
        #expect(pdus.first?.destinations == ["a.example"])
    }

    @Test func eventIDBesideThePDUNamesIt() throws {
        let pdus = try parse(#"{"pdus":[{"pdu":{"room_id":"!r:x"},"destinations":[],"event_id":"$abc"}]}"#)
        #expect(pdus.first?.eventID == "$abc")
    }

    @Test("bad bodies are refused with an error naming the field", arguments: [
        (#"nope"#, "M_NOT_JSON", "request body:"),
        (#"[]"#, "M_BAD_JSON", "request body: must be a JSON object"),
        (#"{"pdus":{}}"#, "M_BAD_JSON", "pdus: must be an array"),
        (#"{"pdus":[],"extra":1}"#, "M_BAD_JSON", "extra: unknown field"),
        (#"{"pdus":[{"destinations":[]}]}"#, "M_BAD_JSON", "pdus[0].pdu: required field is missing"),
        (#"{"pdus":[{"pdu":{},"destinations":[]}]}"#, "M_BAD_JSON", "pdus[0].pdu.room_id: required string is missing"),
        (#"{"pdus":[{"pdu":{"room_id":"!r:x"}}]}"#, "M_BAD_JSON", "pdus[0].destinations: required field is missing"),
        (#"{"pdus":[{"pdu":{"room_id":"!r:x"},"destinations":["ok.example","exa_mple.org"]}]}"#, "M_BAD_JSON",
         "pdus[0].destinations[1]: \"exa_mple.org\" is not a valid server name"),
        (#"{"pdus":[{"pdu":{"room_id":"!r:x"},"destinations":[7]}]}"#, "M_BAD_JSON", "pdus[0].destinations[0]: must be a string"),
        (#"{"pdus":[{"pdu":{"room_id":"!r:x","f":1.5},"destinations":[]}]}"#, "M_NOT_JSON", "request body:"),
        (#"{"edus":{}}"#, "M_BAD_JSON", "edus: must be an array"),
        (#"{"edus":[{"edu_type":"m.typing","content":{}}]}"#, "M_BAD_JSON", "edus[0].destinations: required field is missing"),
        (#"{"edus":[{"edu_type":"m.typing","content":{},"destinations":[]}]}"#, "M_BAD_JSON",
         "edus[0].content.room_id: required string is missing"),
        (#"{"edus":[{"content":{},"destinations":[]}]}"#, "M_BAD_JSON", "edus[0].edu_type: required string is missing"),
        (#"{"edus":[{"edu_type":"m.direct_to_device","content":[],"destinations":[]}]}"#, "M_BAD_JSON",
         "edus[0].content: must be a JSON object"),
        (#"{"edus":[{"edu_type":"m.direct_to_device","content":{},"destinations":[],"key":"k"}]}"#, "M_BAD_JSON",
         "edus[0].key: only m.typing, m.presence and m.receipt EDUs are collapsed"),
        (#"{"edus":[{"edu_type":"m.presence","content":{"push":[{}]},"destinations":[]}]}"#, "M_BAD_JSON",
         "edus[0].content.push[0].user_id: required string is missing"),
        (#"{"edus":[{"edu_type":"m.typing","content":{},"destinations":["a_b"],"x":1}]}"#, "M_BAD_JSON", "edus[0].x: unknown field"),
        (#"{"edus":[{"edu_type":"m.receipt","content":{"!r:x":{"m.read.private":{"@u:x":{"event_ids":["$e"],"data":{}}}}},"destinations":[]}]}"#,
         "M_BAD_JSON", "edus[0].content[\"!r:x\"]: m.read.private receipts are private to their user's server"),
    ])
    func rejects(body: String, errcode: String, prefix: String) {
        #expect {
            _ = try parse(body)
        } throws: { error in
            guard let error = error as? IngestError else { return false }
            return error.errcode == errcode && error.error.hasPrefix(prefix)
        }
    }

    @Test func typingPresenceAndReceiptsStayInMemoryAndOtherEDUsAreStored() throws {
        let parsed = try parser.parse(txnID: "t", body: Array(#"""
            {"edus":[
              {"edu_type":"m.typing","content":{"room_id":"!r:x","user_id":"@u:self.example","typing":true},"destinations":["a.example","self.example"]},
              {"edu_type":"m.direct_to_device","content":{"sender":"@u:self.example","type":"m.room_key_request","message_id":"m1","messages":{}},"destinations":["b.example"]},
              {"edu_type":"m.device_list_update","content":{"user_id":"@u:self.example","device_id":"D","stream_id":3},"destinations":["a.example","b.example"]}
            ]}
            """#.utf8))
        #expect(parsed.ephemeral.map(\.destinations) == [["a.example"]])
        #expect(parsed.ephemeral.first?.edu.eduType == "m.typing")
        #expect(parsed.batch.edus.map(\.eduType) == ["m.direct_to_device", "m.device_list_update"])
        #expect(parsed.batch.edus.map(\.destinations) == [["b.example"], ["a.example", "b.example"]])
        #expect(String(decoding: parsed.batch.edus[1].canonicalJSON, as: UTF8.self)
            == #"{"content":{"device_id":"D","stream_id":3,"user_id":"@u:self.example"},"edu_type":"m.device_list_update"}"#)
    }

    @Test func eventsAreReportedWithTheirSendersServer() throws {
        let parsed = try parser.parse(txnID: "t", body: Array(#"""
            {"pdus":[{"pdu":{"room_id":"!r:x","event_id":"$e","sender":"@u:self.example"},"destinations":["a.example"]}]}
            """#.utf8))
        #expect(parsed.events == [AcceptedEvent(eventID: "$e", senderServer: "self.example")])
    }

    @Test func tooManyPDUsAreRefused() {
        let one = #"{"pdu":{"room_id":"!r:x"},"destinations":[]}"#
        let body = #"{"pdus":["# + Array(repeating: one, count: SendRequestParser.maxPDUsPerRequest + 1).joined(separator: ",") + "]}"
        #expect {
            _ = try parse(body)
        } throws: { error in
            guard let error = error as? IngestError else { return false }
            return error.status == 413 && error.error.hasPrefix("pdus: 1001 PDUs is over the limit of 1000")
        }
    }

    @Test func oversizedPDUIsRefused() {
        let big = String(repeating: "x", count: SendRequestParser.maxPDUBytes)
        #expect {
            _ = try parse(#"{"pdus":[{"pdu":{"room_id":"!r:x","body":"\#(big)"},"destinations":[]}]}"#)
        } throws: { error in
            (error as? IngestError)?.status == 413
        }
    }
}

struct IncomingPDUSummary: Equatable {
    var roomID: String
    var eventID: String?
    var destinations: [String]
    var canonical: String
}
