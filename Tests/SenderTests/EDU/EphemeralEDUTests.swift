import Federation
import Sender
import Testing

@Suite("EphemeralEDU parses typing, presence and receipt EDUs and names the broken field")
struct EphemeralEDUTests {
    @Test func typingKeepsTheWholeContent() throws {
        let content = try JSONValue.parse(Array(#"{"room_id":"!r:a.example","typing":true,"user_id":"@u:a.example","x":1}"#.utf8))
        let edu = try #require(try EphemeralEDU.parse(eduType: "m.typing", content: content))
        #expect(edu == .typing(.init(roomID: "!r:a.example", userID: "@u:a.example", isTyping: true, content: content)))
        #expect(edu.eduType == "m.typing")
    }

    @Test func presenceKeepsThePushOrder() throws {
        let content: JSONValue = ["push": [
            ["user_id": "@b:a.example", "presence": "online", "last_active_ago": 10],
            ["user_id": "@a:a.example", "presence": "offline"],
        ]]
        let edu = try #require(try EphemeralEDU.parse(eduType: "m.presence", content: content))
        guard case .presence(let states) = edu else { Issue.record("not presence: \(edu)"); return }
        #expect(states.map(\.userID) == ["@b:a.example", "@a:a.example"])
        #expect(states[1].state == ["user_id": "@a:a.example", "presence": "offline"])
    }

    @Test func receiptsAreSplitPerRoomTypeAndUserWithTheirThread() throws {
        let content: JSONValue = [
            "!r2:a.example": ["m.read": ["@u:a.example": ["event_ids": ["$e3"], "data": ["ts": 3]]]],
            "!r1:a.example": ["m.read": [
                "@v:a.example": ["event_ids": ["$e2"], "data": ["ts": 2, "thread_id": "$root"]],
                "@u:a.example": ["event_ids": ["$e1"], "data": ["ts": 1]],
            ]],
        ]
        let edu = try #require(try EphemeralEDU.parse(eduType: "m.receipt", content: content))
        guard case .receipts(let receipts) = edu else { Issue.record("not receipts: \(edu)"); return }
        #expect(receipts.map(\.roomID) == ["!r1:a.example", "!r1:a.example", "!r2:a.example"])
        #expect(receipts.map(\.userID) == ["@u:a.example", "@v:a.example", "@u:a.example"])
        #expect(receipts.map(\.threadID) == [nil, "$root", nil])
        #expect(receipts[1].receipt == ["event_ids": ["$e2"], "data": ["ts": 2, "thread_id": "$root"]])
        #expect(edu.receiptedEventIDs == ["$e1", "$e2", "$e3"])
    }

    @Test("Other EDU types are not ephemeral", arguments: [
        "m.direct_to_device", "m.device_list_update", "m.signing_key_update", "org.example.custom",
    ])
    func otherTypesAreNil(eduType: String) throws {
        #expect(try EphemeralEDU.parse(eduType: eduType, content: ["anything": 1]) == nil)
        #expect(!EphemeralEDU.ephemeralTypes.contains(eduType))
    }

    @Test("Malformed content names the field and the rule", arguments: [
        ("m.typing", #"[]"#, "content: must be an object"),
        ("m.typing", #"{"room_id":"!r:a","typing":true}"#, "content.user_id: required string is missing"),
        ("m.typing", #"{"room_id":5,"user_id":"@u:a","typing":true}"#, "content.room_id: must be a string"),
        ("m.typing", #"{"room_id":"!r:a","user_id":"@u:a","typing":"yes"}"#, "content.typing: must be a boolean"),
        ("m.presence", #"{}"#, "content.push: required array is missing"),
        ("m.presence", #"{"push":{}}"#, "content.push: must be an array"),
        ("m.presence", #"{"push":[{"user_id":"@a:a"},{"user_id":"@b:a"},{"presence":"online"}]}"#,
         "content.push[2].user_id: required string is missing"),
        ("m.presence", #"{"push":[7]}"#, "content.push[0]: must be an object"),
        ("m.presence", #"{"push":[{"user_id":"@a:a","last_active_ago":"5"}]}"#,
         "content.push[0].last_active_ago: must be an integer"),
        ("m.receipt", #"{"!r:a":[]}"#, #"content["!r:a"]: must be an object"#),
        ("m.receipt", #"{"!r:a":{"m.read":{"@u:a":{"data":{"ts":1}}}}}"#,
         #"content["!r:a"]["m.read"]["@u:a"].event_ids: required array is missing"#),
        ("m.receipt", #"{"!r:a":{"m.read":{"@u:a":{"event_ids":[],"data":{"ts":1}}}}}"#,
         #"content["!r:a"]["m.read"]["@u:a"].event_ids: must not be empty"#),
        ("m.receipt", #"{"!r:a":{"m.read":{"@u:a":{"event_ids":[1],"data":{"ts":1}}}}}"#,
         #"content["!r:a"]["m.read"]["@u:a"].event_ids[0]: must be a string"#),
        ("m.receipt", #"{"!r:a":{"m.read":{"@u:a":{"event_ids":["$e"]}}}}"#,
         #"content["!r:a"]["m.read"]["@u:a"].data: required object is missing"#),
        ("m.receipt", #"{"!r:a":{"m.read":{"@u:a":{"event_ids":["$e"],"data":{"thread_id":5}}}}}"#,
         #"content["!r:a"]["m.read"]["@u:a"].data.thread_id: must be a string"#),
        ("m.receipt", #"{"!r\"a":{"m.read":5}}"#, #"content["!r\"a"]["m.read"]: must be an object"#),
    ])
    func malformed(eduType: String, content: String, expected: String) throws {
        let value = try JSONValue.parse(Array(content.utf8))
        let error = #expect(throws: EphemeralEDUError.self) {
            try EphemeralEDU.parse(eduType: eduType, content: value)
        }
        #expect(error?.description == expected)
        #expect(error?.eduType == eduType)
    }
}
