import Testing
@testable import Federation

struct TransactionBodyTests {
    static let pdu = #"{"auth_events":[],"content":{"body":"hi \"there\"\n"},"depth":3,"origin":"a.example","origin_server_ts":1000000,"prev_events":[],"room_id":"!r:a.example","sender":"@u:a.example","type":"m.room.message"}"#
    static let edu = #"{"content":{"room_id":"!r:a.example","typing":true,"user_id":"@u:a.example"},"edu_type":"m.typing"}"#

    @Test(arguments: [
        ([String](), [String]()),
        ([pdu], []),
        ([], [edu]),
        ([pdu, pdu], [edu, edu, edu]),
        (["{}"], ["{}"]),
    ])
    func equalsCanonicalEncodingOfItsParse(_ pdus: [String], _ edus: [String]) throws {
        let body = TransactionBody.encode(
            origin: "a.example", originServerTS: 1_700_000_000_123, pdus: pdus.map(utf8), edus: edus.map(utf8))
        let parsed = try JSONValue.parse(body)
        #expect(CanonicalJSON.encode(parsed) == body)
        #expect(parsed["origin"] == "a.example")
        #expect(parsed["origin_server_ts"] == .integer(1_700_000_000_123))
        #expect(parsed["pdus"]?.arrayValue?.count == pdus.count)
        #expect(parsed["edus"]?.arrayValue?.count == (edus.isEmpty ? nil : edus.count))
    }

    @Test func leavesOutEmptyEDUs() {
        let body = TransactionBody.encode(origin: "matrix.org", originServerTS: 1_234_567_890, pdus: [], edus: [])
        #expect(body == utf8(#"{"origin":"matrix.org","origin_server_ts":1234567890,"pdus":[]}"#))
    }

    @Test func matchesWorkedVectorBody() {
        let edu = utf8(
            #"{"content":{"room_id":"!room:origin.hs.example.com","typing":true,"user_id":"@alice:origin.hs.example.com"},"edu_type":"m.typing"}"#
        )
        let body = TransactionBody.encode(
            origin: "origin.hs.example.com", originServerTS: 1_700_000_000_000, pdus: [], edus: [edu])
        #expect(
            body
                == utf8(
                    #"{"edus":[{"content":{"room_id":"!room:origin.hs.example.com","typing":true,"user_id":"@alice:origin.hs.example.com"},"edu_type":"m.typing"}],"origin":"origin.hs.example.com","origin_server_ts":1700000000000,"pdus":[]}"#
                ))
    }

    @Test func escapesOrigin() throws {
        let body = TransactionBody.encode(origin: "a\"b", originServerTS: -5, pdus: [], edus: [])
        #expect(body == utf8(#"{"origin":"a\"b","origin_server_ts":-5,"pdus":[]}"#))
        #expect(try JSONValue.parse(body)["origin"] == "a\"b")
    }
}
