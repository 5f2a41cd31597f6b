import Testing
@testable import Federation

struct CanonicalJSONTests {
    /// Every input/output pair from the spec's "Canonical JSON" section.
    @Test(arguments: [
        ("{}", "{}"),
        (#"{"one": 1, "two": "Two"}"#, #"{"one":1,"two":"Two"}"#),
        (#"{"b": "2", "a": "1"}"#, #"{"a":"1","b":"2"}"#),
        (#"{"b":"2","a":"1"}"#, #"{"a":"1","b":"2"}"#),
        (
            #"{"auth": {"success": true, "mxid": "@john.doe:example.com", "profile": {"display_name": "John Doe", "three_pids": [{"medium": "email", "address": "john.doe@example.org"}, {"medium": "msisdn", "address": "123456789"}]}}}"#,
            #"{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}}"#
        ),
        (#"{"a": "日本語"}"#, #"{"a":"日本語"}"#),
        (#"{"本": 2, "日": 1}"#, #"{"日":1,"本":2}"#),
        (#"{"a": "\u65E5"}"#, #"{"a":"日"}"#),
        (#"{"a": null}"#, #"{"a":null}"#),
        (#"{"a": -0, "b": 1e10}"#, #"{"a":0,"b":10000000000}"#),
    ])
    func matchesSpecExample(_ input: String, _ canonical: String) throws {
        #expect(CanonicalJSON.encode(try parseJSON(input)) == utf8(canonical))
    }

    @Test func escapesOnlyWhatIsRequired() {
        let string = "\u{1}\u{1F}\u{8}\u{9}\u{A}\u{C}\u{D}\"\\/\u{7F}\u{1F600}"
        var expected = utf8(#""\u0001\u001f\b\t\n\f\r\"\\/"#)
        expected += [0x7F, 0xF0, 0x9F, 0x98, 0x80, UInt8(ascii: "\"")]
        #expect(CanonicalJSON.encode(.string(string)) == expected)
    }

    @Test func escapesEveryControlCharacterInLowerCaseHex() {
        for value in UInt8(0)..<0x20 {
            let encoded = CanonicalJSON.encode(.string(String(Unicode.Scalar(value))))
            let text = String(decoding: encoded, as: UTF8.self)
            switch value {
            case 0x08: #expect(text == #""\b""#)
            case 0x09: #expect(text == #""\t""#)
            case 0x0A: #expect(text == #""\n""#)
            case 0x0C: #expect(text == #""\f""#)
            case 0x0D: #expect(text == #""\r""#)
            default:
                let hexDigits = Array("0123456789abcdef")
                #expect(text == "\"\\u00\(hexDigits[Int(value >> 4)])\(hexDigits[Int(value & 0xF)])\"")
            }
        }
    }

    @Test func sortsKeysByCodePointNotUTF16() {
        // U+1F600 is a surrogate pair in UTF-16 (0xD83D…), which would sort it before U+FFFD.
        let value: JSONValue = ["\u{1F600}": 1, "\u{FFFD}": 2, "z": 3, "Z": 4, "": 5, "é": 6]
        let expected = "{\"\":5,\"Z\":4,\"z\":3,\"é\":6,\"\u{FFFD}\":2,\"\u{1F600}\":1}"
        #expect(CanonicalJSON.encode(value) == utf8(expected))
    }

    @Test func sortsKeysThatArePrefixesFirst() {
        let value: JSONValue = ["ab": 1, "a": 2, "abc": 3, "b": 4]
        #expect(CanonicalJSON.encode(value) == utf8(#"{"a":2,"ab":1,"abc":3,"b":4}"#))
    }

    @Test(arguments: [
        (Int64(0), "0"), (-1, "-1"), (9_007_199_254_740_991, "9007199254740991"),
        (-9_007_199_254_740_991, "-9007199254740991"), (Int64.min, "-9223372036854775808"),
        (Int64.max, "9223372036854775807"), (1_700_000_000_000, "1700000000000"),
    ])
    func writesIntegersInPlainDecimal(_ number: Int64, _ text: String) {
        #expect(CanonicalJSON.encode(.integer(number)) == utf8(text))
    }

    @Test func encodesBuiltValues() {
        let value: JSONValue = ["list": [1, "two", nil, false, [:], []], "flag": true]
        #expect(CanonicalJSON.encode(value) == utf8(#"{"flag":true,"list":[1,"two",null,false,{},[]]}"#))
        #expect(value.description == #"{"flag":true,"list":[1,"two",null,false,{},[]]}"#)
    }

    @Test func reparsingCanonicalOutputIsStable() throws {
        let input = #"{"z":[{"y":"\u0001\"","x":-5}],"a":{"c":"\ud83d\ude00","b":1e3}}"#
        let canonical = CanonicalJSON.encode(try parseJSON(input))
        #expect(CanonicalJSON.encode(try JSONValue.parse(canonical)) == canonical)
        #expect(canonical == utf8("{\"a\":{\"b\":1000,\"c\":\"\u{1F600}\"},\"z\":[{\"x\":-5,\"y\":\"\\u0001\\\"\"}]}"))
    }

    @Test func appendsIntoAnExistingBuffer() {
        var buffer = utf8("prefix:")
        CanonicalJSON.append(["k": "v"], to: &buffer)
        CanonicalJSON.appendString("日\n", to: &buffer)
        #expect(buffer == utf8(#"prefix:{"k":"v"}"日\n""#))
    }
}
