import Testing
@testable import Federation

struct JSONValueParsingTests {
    @Test(arguments: [
        ("0", Int64(0)),
        ("-0", 0),
        ("7", 7),
        ("-12", -12),
        ("1e10", 10_000_000_000),
        ("1E2", 100),
        ("1e+2", 100),
        ("2.50e1", 25),
        ("100e-2", 1),
        ("0.1e1", 1),
        ("-1.0", -1),
        ("0.0", 0),
        ("-0.0e5", 0),
        ("0e999999999999", 0),
        ("9007199254740991", 9_007_199_254_740_991),
        ("-9007199254740991", -9_007_199_254_740_991),
        ("9.007199254740991e15", 9_007_199_254_740_991),
        ("90071992547409910e-1", 9_007_199_254_740_991),
        ("10000000000000000000000000000e-28", 1),
    ])
    func parsesIntegralNumbers(_ text: String, _ expected: Int64) throws {
        #expect(try parseJSON(text) == .integer(expected))
    }

    @Test(arguments: [
        ("1.5", JSONParseError.Reason.notAnInteger("1.5"), 0),
        ("1e-1", .notAnInteger("1e-1"), 0),
        ("[0.5]", .notAnInteger("0.5"), 1),
        ("9007199254740992", .integerOutOfRange("9007199254740992"), 0),
        ("-9007199254740992", .integerOutOfRange("-9007199254740992"), 0),
        ("99999999999999999999", .integerOutOfRange("99999999999999999999"), 0),
        ("1e16", .integerOutOfRange("1e16"), 0),
        ("1e999999999999", .integerOutOfRange("1e999999999999"), 0),
        ("01", .invalidNumber("leading zeros are not allowed"), 0),
        ("-01", .invalidNumber("leading zeros are not allowed"), 1),
        ("1.", .invalidNumber("expected a digit after '.'"), 2),
        ("1.e5", .invalidNumber("expected a digit after '.'"), 2),
        ("1e", .invalidNumber("expected a digit in the exponent"), 2),
        ("1e+", .invalidNumber("expected a digit in the exponent"), 3),
        ("-", .invalidNumber("expected a digit after '-'"), 1),
        ("-a", .invalidNumber("expected a digit after '-'"), 1),
        (".5", .unexpectedByte(UInt8(ascii: "."), expected: "a value"), 0),
        ("+1", .unexpectedByte(UInt8(ascii: "+"), expected: "a value"), 0),
        ("0x10", .trailingData, 1),
        ("NaN", .unexpectedByte(UInt8(ascii: "N"), expected: "a value"), 0),
    ])
    func rejectsNonCanonicalNumbers(_ text: String, _ reason: JSONParseError.Reason, _ offset: Int) {
        expectFailure(utf8(text), reason, at: offset)
    }

    @Test func errorDescriptionNamesOffsetValueAndRule() {
        #expect(throws: JSONParseError(offset: 5, reason: .notAnInteger("1.5"), path: "a")) { try parseJSON(#"{"a":1.5}"#) }
        #expect(
            JSONParseError(offset: 5, reason: .notAnInteger("1.5"), path: "a").description
                == "invalid JSON at byte 5, in a: the number 1.5 is not an integer, and canonical JSON allows only integers")
        #expect(
            JSONParseError(offset: 8, reason: .duplicateKey("a")).description
                == #"invalid JSON at byte 8: the key "a" appears twice in one object"#)
        #expect(
            JSONParseError(offset: 8, reason: .duplicateKey(String(repeating: "k", count: 500) + "\n")).description
                == #"invalid JSON at byte 8: the key ""# + String(repeating: "k", count: 100) + #""… appears twice in one object"#)
    }

    /// The value an error is in, written as a reader would: members plain or quoted, elements by index.
    @Test(arguments: [
        (#"{"pdus":[{"pdu":{"depth":1.5}}]}"#, "pdus[0].pdu.depth"),
        (#"[1,[2,{"a":[3,4,tru]}]]"#, "[1][1].a[2]"),
        (#"{"m.server":"a\x"}"#, "m.server"),
        (#"{"":{"we ird":0.5}}"#, #"[""]["we ird"]"#),
        (#"{"a":{"b":1,"b":2}}"#, "a"),
        (#"{"a":1,}"#, ""),
        ("[\u{0B}1]", "[0]"),
    ])
    func errorsNameTheValueTheyAreIn(_ text: String, _ path: String) {
        #expect {
            try parseJSON(text)
        } throws: { error in
            (error as? JSONParseError)?.path == path
        }
    }

    @Test(arguments: [
        (#""plain""#, "plain"),
        (#""\u65E5""#, "日"),
        (#""\u65e5本""#, "日本"),
        (#""\ud83d\ude00""#, "😀"),
        (#""\"\\\/\b\f\n\r\t""#, "\"\\/\u{08}\u{0C}\n\r\t"),
        (#""\u0000""#, "\u{0}"),
        (#""a\u0041b""#, "aAb"),
        (#""""#, ""),
        ("\"日本語 😀\"", "日本語 😀"),
    ])
    func parsesStrings(_ text: String, _ expected: String) throws {
        let value = try parseJSON(text)
        #expect(value == .string(expected))
        #expect(value.stringValue.map { Array($0.unicodeScalars) } == Array(expected.unicodeScalars))
    }

    @Test(arguments: [
        (utf8(#""\ud83d""#), JSONParseError.Reason.unpairedSurrogate(0xD83D), 1),
        (utf8(#""\ude00""#), .unpairedSurrogate(0xDE00), 1),
        (utf8(#""\ud83d\u0041""#), .unpairedSurrogate(0xD83D), 1),
        (utf8(#""\x""#), .invalidEscape(UInt8(ascii: "x")), 2),
        (utf8(#""\u12G4""#), .invalidUnicodeEscape, 5),
        (utf8(#""\u12""#), .invalidUnicodeEscape, 3),
        (utf8("\"a\tb\""), .controlCharacterInString(0x09), 2),
        (utf8("\"a\nb\""), .controlCharacterInString(0x0A), 2),
        (utf8(#""abc"#), .unexpectedEnd(expected: "the closing '\"' of a string"), 4),
        ([0x22, 0xC0, 0xAF, 0x22], .invalidUTF8, 1),
        ([0x22, 0xE0, 0x80, 0xAF, 0x22], .invalidUTF8, 1),
        ([0x22, 0xED, 0xA0, 0x80, 0x22], .invalidUTF8, 1),
        ([0x22, 0xF4, 0x90, 0x80, 0x80, 0x22], .invalidUTF8, 1),
        ([0x22, 0x61, 0xE6, 0x97, 0x22], .invalidUTF8, 2),
        ([0x22, 0x80, 0x22], .invalidUTF8, 1),
        ([0x22, 0xFF, 0x22], .invalidUTF8, 1),
        ([0xEF, 0xBB, 0xBF, 0x7B, 0x7D], .unexpectedByte(0xEF, expected: "a value"), 0),
    ])
    func rejectsBadStrings(_ bytes: [UInt8], _ reason: JSONParseError.Reason, _ offset: Int) {
        expectFailure(bytes, reason, at: offset)
    }

    @Test(arguments: [
        ("", JSONParseError.Reason.unexpectedEnd(expected: "a value"), 0),
        ("   ", .unexpectedEnd(expected: "a value"), 3),
        ("{} x", .trailingData, 3),
        ("{}{}", .trailingData, 2),
        ("[1,]", .unexpectedByte(UInt8(ascii: "]"), expected: "a value"), 3),
        (#"{"a":1,}"#, .unexpectedByte(UInt8(ascii: "}"), expected: "a string key"), 7),
        (#"{"a" 1}"#, .unexpectedByte(UInt8(ascii: "1"), expected: "':'"), 5),
        (#"{a:1}"#, .unexpectedByte(UInt8(ascii: "a"), expected: "a string key"), 1),
        ("[1 2]", .unexpectedByte(UInt8(ascii: "2"), expected: "',' or ']'"), 3),
        ("[1", .unexpectedEnd(expected: "',' or ']'"), 2),
        (#"{"a":1"#, .unexpectedEnd(expected: "',' or '}'"), 6),
        (#"{"a":1,"a":2}"#, .duplicateKey("a"), 7),
        ("tru", .unexpectedEnd(expected: "the literal 'true' that starts at byte 0"), 3),
        ("nul1", .unexpectedByte(UInt8(ascii: "1"), expected: "the literal 'null' that starts at byte 0"), 3),
        ("True", .unexpectedByte(UInt8(ascii: "T"), expected: "a value"), 0),
        ("[\u{0B}1]", .unexpectedByte(0x0B, expected: "a value"), 1),
    ])
    func rejectsMalformedDocuments(_ text: String, _ reason: JSONParseError.Reason, _ offset: Int) {
        expectFailure(utf8(text), reason, at: offset)
    }

    /// The offset and the rule; `errorsNameTheValueTheyAreIn` checks the path.
    private func expectFailure(_ bytes: [UInt8], _ reason: JSONParseError.Reason, at offset: Int,
                               sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(sourceLocation: sourceLocation) {
            try JSONValue.parse(bytes)
        } throws: { error in
            guard let error = error as? JSONParseError else { return false }
            return error.offset == offset && error.reason == reason
        }
    }

    @Test func parsesStructures() throws {
        let value = try parseJSON(" \t\r\n{\"a\": [1, true, false, null, {\"b\": \"c\"}], \"d\": {}}\n")
        let expected: JSONValue = ["a": [1, true, false, nil, ["b": "c"]], "d": [:]]
        #expect(value == expected)
        #expect(value["a"]?[4]?["b"]?.stringValue == "c")
        #expect(value["a"]?[0]?.intValue == 1)
        #expect(value["a"]?[1]?.boolValue == true)
        #expect(value["a"]?[3]?.isNull == true)
        #expect(value["a"]?.arrayValue?.count == 5)
        #expect(value["d"]?.objectValue == [:])
        #expect(value["missing"] == nil)
        #expect(value["a"]?[9] == nil)
        #expect(value["a"]?["not an object"] == nil)
        #expect(value.stringValue == nil)
    }

    @Test func acceptsScalarDocuments() throws {
        #expect(try parseJSON("null") == .null)
        #expect(try parseJSON(" 42 ") == .integer(42))
        #expect(try parseJSON(#""x""#) == .string("x"))
    }

    @Test func enforcesDepthLimit() throws {
        let deepest = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        #expect(throws: Never.self) { try parseJSON(deepest) }
        let tooDeep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        let path = String(repeating: "[0]", count: 64)
        #expect(throws: JSONParseError(offset: 64, reason: .tooDeep(limit: 64), path: path)) { try parseJSON(tooDeep) }
        #expect(throws: JSONParseError(offset: 10, reason: .tooDeep(limit: 2), path: "a.b")) {
            try JSONValue.parse(utf8(#"{"a":{"b":{}}}"#), maxDepth: 2)
        }
        #expect(try JSONValue.parse(utf8(#"{"a":{"b":1}}"#), maxDepth: 2) == ["a": ["b": 1]])
    }

    @Test func parsesFromNonContiguousCollections() throws {
        let bytes = utf8(#"{"k":[1,2,3]}"#)
        #expect(try JSONValue.parse(bytes.lazy.map { $0 }) == ["k": [1, 2, 3]])
        #expect(try JSONValue.parse(#"{"k":"v"}"#.utf8) == ["k": "v"])
    }
}
