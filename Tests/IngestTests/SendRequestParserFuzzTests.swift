import Federation
import FuzzSupport
import Testing

@testable import Ingest

/// `PUT /send` bodies the homeserver could send, mutated: every body is accepted within the
/// limits the Outbox relies on, or refused with a Matrix error whose message starts with the
/// field at fault (`pdus[0].destinations[1]: …`), on one short line.
struct SendRequestParserFuzzTests {
    static let parser = SendRequestParser(ownServerName: "self.example")

    static let corpus: [[UInt8]] = [
        #"{"pdus":[{"pdu":{"room_id":"!r:self.example","type":"m.room.message","sender":"@u:self.example","depth":3,"content":{"body":"hi"}},"destinations":["a.example","b.example:8448","self.example"],"event_id":"$e1"}]}"#,
        #"{"pdus":[{"pdu":{"room_id":"!r:x","event_id":"$e","sender":"@u:x"},"destinations":[]},{"pdu":{"room_id":"!s:x"},"destinations":["[2001:db8::1]:8448","192.0.2.1"]}],"edus":[]}"#,
        #"{"edus":[{"edu_type":"m.typing","content":{"room_id":"!r:x","user_id":"@u:self.example","typing":true},"destinations":["a.example"]}]}"#,
        #"{"edus":[{"edu_type":"m.presence","content":{"push":[{"user_id":"@u:x","presence":"online","last_active_ago":5}]},"destinations":["a.example"],"key":"k"}]}"#,
        #"{"edus":[{"edu_type":"m.receipt","content":{"!r:x":{"m.read":{"@u:x":{"event_ids":["$e"],"data":{"ts":1,"thread_id":"main"}}}}},"destinations":["a.example"]}]}"#,
        #"{"edus":[{"edu_type":"m.direct_to_device","content":{"sender":"@u:x","type":"m.room_key_request","message_id":"m1","messages":{}},"destinations":["b.example"]}]}"#,
        #"{"pdus":[],"edus":[{"edu_type":"m.device_list_update","content":{"user_id":"@u:x","device_id":"D","stream_id":3},"destinations":["a.example","b.example"]}]}"#,
    ].map { Array($0.utf8) }

    static let mutator = Mutator(
        corpus: corpus,
        tokens: [#""pdus""#, #""edus""#, #""pdu""#, #""destinations""#, #""room_id""#, #""event_id""#, #""edu_type""#,
                 #""content""#, #""key""#, #""m.read.private""#, #""m.typing""#, #""m.receipt""#, #""m.presence""#,
                 #""exa_mple.org""#, #""a.example:99999""#, #""[::1""#, #""""#, "{}", "[]", "null", "1.5", ":", ",",
                 #"\u0000"#, #"\ud800"#]
            .map { Array($0.utf8) },
        seed: 0x494E_4753)

    @Test("4,000 mutated bodies are accepted within the limits or refused naming the field")
    func mutatedBodies() {
        for input in Self.mutator.cases(4000) {
            Self.check(input)
        }
    }

    @Test("every truncation of every body is refused as JSON that ends early")
    func truncatedBodies() {
        for bytes in Self.mutator.truncations() {
            Self.check(Mutator.Case(index: 0, bytes: bytes))
        }
    }

    /// A large body named by what it is, so a failure does not print it.
    struct Oversized: Sendable, CustomTestStringConvertible {
        var testDescription: String
        var body: String
        /// The start of the refusal's message, or nil when the body is accepted.
        var refusal: String?
    }

    static let oversized: [Oversized] = {
        let pdu = #"{"pdu":{"room_id":"!r:x"},"destinations":["a.example"]}"#
        let typing = #"{"edu_type":"m.typing","content":{"room_id":"!r:x","user_id":"@u:x","typing":true},"destinations":[]}"#
        let deep = String(repeating: #"{"a":"#, count: 70) + "1" + String(repeating: "}", count: 70)
        let key = String(repeating: "k", count: 100_000)
        return [
            Oversized(testDescription: "1,001 PDUs", body: #"{"pdus":["# + Array(repeating: pdu, count: 1001).joined(separator: ",") + "]}",
                      refusal: "pdus: 1001 PDUs is over the limit"),
            Oversized(testDescription: "1,001 EDUs", body: #"{"edus":["# + Array(repeating: typing, count: 1001).joined(separator: ",") + "]}",
                      refusal: "edus: 1001 EDUs is over the limit"),
            Oversized(testDescription: "a PDU 65,537 bytes long",
                      body: #"{"pdus":[{"pdu":{"room_id":"!r:x","body":""# + String(repeating: "x", count: 65_537 - 28) + #""},"destinations":[]}]}"#,
                      refusal: "pdus[0].pdu: 65537 bytes"),
            Oversized(testDescription: "a PDU of exactly 65,536 bytes",
                      body: #"{"pdus":[{"pdu":{"room_id":"!r:x","body":""# + String(repeating: "x", count: 65_536 - 28) + #""},"destinations":[]}]}"#,
                      refusal: nil),
            Oversized(testDescription: "a destination of 300 bytes",
                      body: #"{"pdus":[{"pdu":{"room_id":"!r:x"},"destinations":[""# + String(repeating: "a", count: 300) + #".example"]}]}"#,
                      refusal: "pdus[0].destinations[0]: \"aaaa"),
            Oversized(testDescription: "20,000 destinations",
                      body: #"{"pdus":[{"pdu":{"room_id":"!r:x"},"destinations":["# + (0..<20_000).map { "\"s\($0).example\"" }.joined(separator: ",") + "]}]}",
                      refusal: nil),
            Oversized(testDescription: "a PDU nested 70 levels deep",
                      body: #"{"pdus":[{"pdu":{"room_id":"!r:x","content":"# + deep + #"},"destinations":[]}]}"#,
                      refusal: "request body: invalid JSON at byte 344, in pdus[0].pdu.content.a.a"),
            Oversized(testDescription: "an unknown field of 100,000 bytes", body: #"{""# + key + #"":1}"#,
                      refusal: #"[""# + String(repeating: "k", count: 64) + #""…]: unknown field"#),
            Oversized(testDescription: "an unknown PDU field of 100,000 bytes",
                      body: #"{"pdus":[{"pdu":{"room_id":"!r:x"},"destinations":[],""# + key + #"":1}]}"#,
                      refusal: #"pdus[0][""# + String(repeating: "k", count: 64) + #""…]: unknown field"#),
            Oversized(testDescription: "a receipt for a 10,000-byte room",
                      body: #"{"edus":[{"edu_type":"m.receipt","content":{""# + String(key.prefix(10_000)) + #"":{"m.read":{"@u:x":{}}}},"destinations":[]}]}"#,
                      refusal: #"edus[0].content[""# + String(repeating: "k", count: 64) + #""…]["m.read"]["@u:x"].event_ids: required array"#),
            Oversized(testDescription: "a receipt for a 100,000-byte room",
                      body: #"{"edus":[{"edu_type":"m.receipt","content":{""# + key + #"":{"m.read":{"@u:x":{}}}},"destinations":[]}]}"#,
                      refusal: "edus[0].content: 100062 bytes of canonical JSON is over the 65536-byte EDU limit"),
        ]
    }()

    @Test("counts, sizes, nesting and field names over the limits are refused naming the field, in a short message",
          arguments: oversized)
    func oversizedBodies(_ input: Oversized) {
        let refusal = Self.check(Mutator.Case(index: 0, bytes: Array(input.body.utf8)))
        if let expected = input.refusal {
            #expect(refusal?.error.hasPrefix(expected) == true, "\(refusal.map { String($0.error.prefix(300)) } ?? "accepted")")
        } else {
            #expect(refusal == nil, "\(refusal.map { String($0.error.prefix(300)) } ?? "")")
        }
    }

    /// Parses one body and checks the outcome; returns the refusal, if any.
    @discardableResult
    private static func check(_ input: Mutator.Case) -> IngestError? {
        do {
            let parsed = try parser.parse(txnID: "t", body: input.bytes)
            let batch = parsed.batch
            #expect(batch.pdus.count <= SendRequestParser.maxPDUsPerRequest, "\(input)")
            #expect(batch.edus.count + parsed.ephemeral.count <= SendRequestParser.maxEDUsPerRequest, "\(input)")
            for pdu in batch.pdus {
                #expect(!pdu.canonicalJSON.isEmpty && pdu.canonicalJSON.count <= SendRequestParser.maxPDUBytes, "\(input)")
                #expect((try? JSONValue.parse(pdu.canonicalJSON))?["room_id"]?.stringValue == pdu.roomID, "\(input)")
                checkDestinations(pdu.destinations, input)
            }
            for edu in batch.edus {
                #expect(!edu.canonicalJSON.isEmpty && edu.canonicalJSON.count <= SendRequestParser.maxEDUBytes, "\(input)")
                checkDestinations(edu.destinations, input)
            }
            for edu in parsed.ephemeral {
                checkDestinations(edu.destinations, input)
            }
            return nil
        } catch {
            #expect([400, 413].contains(error.status), "\(input): \(error)")
            #expect(["M_NOT_JSON", "M_BAD_JSON", "M_TOO_LARGE"].contains(error.errcode), "\(input): \(error)")
            #expect(namesAField(error.error), "\(input): \(error)")
            #expect(error.error.utf8.count <= 1000 && !error.error.contains(where: \.isNewline), "\(input): \(error)")
            let body = try? JSONValue.parse(IngestResponse(error).body)
            #expect(body?.objectValue?.keys.sorted() == ["errcode", "error"], "\(input): \(error)")
            return error
        }
    }

    private static func checkDestinations(_ destinations: [String], _ input: Mutator.Case) {
        #expect(Set(destinations).count == destinations.count, "\(input)")
        #expect(!destinations.contains("self.example"), "\(input)")
        for name in destinations {
            #expect((try? ServerName(name)) != nil, "\(input): \(name)")
        }
    }

    /// Whether the message starts with a field of the body: the body itself, `pdus…`,
    /// `edus…`, or an unknown top-level member.
    private static func namesAField(_ message: String) -> Bool {
        message.hasPrefix("request body: ") || message.hasPrefix("pdus") || message.hasPrefix("edus")
            || message.contains(#": unknown field (expected "pdus" and "edus")"#)
    }
}
