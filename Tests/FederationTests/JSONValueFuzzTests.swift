import FuzzSupport
import Testing

@testable import Federation

/// JSON from remote servers (`.well-known`, key and query answers) and from the homeserver
/// (ingest bodies), mutated: every input parses or throws `JSONParseError` at an offset inside
/// it, and whatever parses survives a canonical round trip unchanged.
struct JSONValueFuzzTests {
    static let corpus: [[UInt8]] = [
        #"{"m.server":"matrix.example.org:8448"}"#,
        #"{"pdus":[{"pdu":{"room_id":"!r:x","type":"m.room.message","depth":12,"content":{"body":"hi \"there\"\n","n":-7}},"destinations":["a.example","b.example:8448"],"event_id":"$e"}],"edus":[]}"#,
        #"{"server_name":"a.example","verify_keys":{"ed25519:a":{"key":"l8Hft5qXKn1vfHrg3p4+W8gELQVo8N13JkluMfmn2sQ"}},"valid_until_ts":1700000000000}"#,
        #"[true,false,null,0,-0,1e2,2.50e1,"\u00e9\ud83d\ude00\/\\\b\f\r\t",[],{},[[[{"a":[{}]}]]]]"#,
        "{\"é\":\"日本語\",\"emoji\":\"😀\",\"nested\":{\"a\":{\"b\":{\"c\":[1,2,3]}}}}",
        #"  {"a" : [ 1 , 2 ] , "b" : { } }  "#,
    ].map { Array($0.utf8) }

    static let mutator = Mutator(
        corpus: corpus,
        tokens: [#"""#, #"\"#, #"\u"#, #"\ud800"#, #"\udc00"#, #"\u0000"#, "{", "}", "[", "]", ":", ",", "true", "null",
                 "1e999999", "-", ".5", "0.0000000000000000001e20", #""a":1,"a":2"#, "\u{FEFF}", "\u{7F}"]
            .map { Array($0.utf8) } + [[0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82]],
        seed: 0x4A53_4F4E)

    @Test("5,000 mutated documents parse or fail at an offset inside them; what parses round-trips")
    func mutatedDocuments() {
        for input in Self.mutator.cases(5000) {
            Self.check(input)
        }
    }

    @Test("every truncation of every document parses or fails at an offset inside it")
    func truncatedDocuments() {
        for bytes in Self.mutator.truncations() {
            Self.check(Mutator.Case(index: 0, bytes: bytes))
        }
    }

    @Test("deep nesting stops at the depth limit without exhausting the stack", arguments: ["[", "{\"a\":", "[{\"a\":"])
    func deepNesting(_ opener: String) {
        let bytes = Array(String(repeating: opener, count: 100_000).utf8)
        #expect {
            _ = try JSONValue.parse(bytes)
        } throws: { error in
            (error as? JSONParseError)?.reason == .tooDeep(limit: 64)
        }
    }

    /// A large input named by what it is, so a failure does not print 100 KB of it.
    struct Oversized: Sendable, CustomTestStringConvertible {
        var testDescription: String
        var text: String
    }

    static let oversized: [Oversized] = [
        Oversized(testDescription: "100,000 digits", text: String(repeating: "9", count: 100_000)),
        Oversized(testDescription: "100,000 zeros cancelled by the exponent",
                  text: "1" + String(repeating: "0", count: 100_000) + "e-100000"),
        Oversized(testDescription: "100,000 fraction zeros", text: "0." + String(repeating: "0", count: 100_000) + "1e100001"),
        Oversized(testDescription: "a 100,000-digit exponent", text: "1e" + String(repeating: "9", count: 100_000)),
        Oversized(testDescription: "zero with a 100,000-digit negative exponent", text: "-0e-" + String(repeating: "9", count: 100_000)),
        Oversized(testDescription: "50,000 escapes", text: "\"" + String(repeating: "\\u00e9", count: 50_000) + "\""),
        Oversized(testDescription: "50,000 array elements", text: "[" + Array(repeating: "1", count: 50_000).joined(separator: ",") + "]"),
        Oversized(testDescription: "20,000 object members",
                  text: "{" + (0..<20_000).map { "\"k\($0)\":\($0)" }.joined(separator: ",") + "}"),
        Oversized(testDescription: "a 100,000-byte key repeated",
                  text: "{\"" + String(repeating: "k", count: 100_000) + "\":1,\"" + String(repeating: "k", count: 100_000) + "\":2}"),
        Oversized(testDescription: "a number 60 levels down long keys",
                  text: String(repeating: "{\"" + String(repeating: "k", count: 60) + "\":", count: 60) + "1.5"
                      + String(repeating: "}", count: 60)),
    ]

    @Test("huge numbers, exponents, strings and keys are refused or parsed, with a short error", arguments: oversized)
    func oversizedValues(_ input: Oversized) {
        Self.check(Mutator.Case(index: 0, bytes: Array(input.text.utf8)))
    }

    private static func check(_ input: Mutator.Case) {
        do {
            let value = try JSONValue.parse(input.bytes)
            let canonical = CanonicalJSON.encode(value)
            let reparsed = try? JSONValue.parse(canonical)
            #expect(reparsed == value, "\(input) → \(Mutator.Case(index: 0, bytes: canonical))")
        } catch {
            #expect(error.offset >= 0 && error.offset <= input.bytes.count, "\(input): \(error)")
            #expect(error.description.utf8.count <= 1000, "\(input): \(error)")
        }
    }
}
