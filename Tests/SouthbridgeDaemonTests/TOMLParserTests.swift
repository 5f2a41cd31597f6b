import Testing
@testable import SouthbridgeDaemon

/// Every leaf as `path=value@line`, in document order, so a case states values and lines at once.
private func flatten(_ table: TOMLTable, prefix: String = "") -> [String] {
    table.keys.flatMap { key -> [String] in
        let value = table[key]!
        if case .table(let child) = value.kind {
            return flatten(child, prefix: prefix + key + ".")
        }
        return ["\(prefix)\(key)=\(render(value))"]
    }
}

private func render(_ value: TOMLValue) -> String {
    let body = switch value.kind {
    case .string(let text): Configuration.quoted(text)
    case .integer(let number): String(number)
    case .float(let number): String(number)
    case .boolean(let flag): String(flag)
    case .array(let items): "[" + items.map(render).joined(separator: ", ") + "]"
    case .table(let table): "{" + flatten(table).joined(separator: ", ") + "}"
    }
    return "\(body)@\(value.line)"
}

private func parseError(_ text: String) -> String? {
    do throws(TOMLError) {
        _ = try TOMLParser.parse(text)
        return nil
    } catch {
        return error.description
    }
}

struct TOMLParserTests {
    static let validDocuments: [(String, [String])] = [
        ("", []),
        ("# only a comment\n\n   \t\n", []),
        ("a = 1", ["a=1@1"]),
        ("a = 1\r\nb = 2\r\n", ["a=1@1", "b=2@2"]),
        ("\u{FEFF}a = 1", ["a=1@1"]),
        ("a=1 # trailing comment\n", ["a=1@1"]),
        ("bare_key-1 = true\n\"quoted key\" = false\n'literal key' = 3", [
            "bare_key-1=true@1", "quoted key=false@2", "literal key=3@3",
        ]),
        ("1234 = 1", ["1234=1@1"]),
        ("a.b.c = 1\na.b.d = 2", ["a.b.c=1@1", "a.b.d=2@2"]),
        ("a . \"b.c\" . d = 1", ["a.b.c.d=1@1"]),
        ("[server]\nname = \"x\"\n\n[limits]\nmax = 5", ["server.name=\"x\"@2", "limits.max=5@5"]),
        ("[ a . b ]\nc = 1", ["a.b.c=1@2"]),
        ("[a.b]\nc = 1\n[a]\nd = 2", ["a.b.c=1@2", "a.d=2@4"]),
        ("[fruit]\napple.color = 1\n[fruit.apple.texture]\nsmooth = true", [
            "fruit.apple.color=1@2", "fruit.apple.texture.smooth=true@4",
        ]),
        (#"s = "tab\there \"q\" back\\slash \n \u00E9 \U0001F600 \b\f\r""#, [
            #"s="tab\there \"q\" back\\slash \n é 😀 \u0008\u000C\r"@1"#,
        ]),
        (#"s = 'C:\path\no "escapes"'"#, [#"s="C:\\path\\no \"escapes\""@1"#]),
        ("s = \"\"\nt = ''", ["s=\"\"@1", "t=\"\"@2"]),
        ("s = \"héllo wörld\" # ünïcode comment", ["s=\"héllo wörld\"@1"]),
        ("i = [0, +1, -1, 1_000, -9_223_372_036_854_775_808, 9223372036854775807]", [
            "i=[0@1, 1@1, -1@1, 1000@1, -9223372036854775808@1, 9223372036854775807@1]@1",
        ]),
        ("h = [0xff, 0xDEAD_beef, 0o17, 0b1010, 0x7fffffffffffffff]", [
            "h=[255@1, 3735928559@1, 15@1, 10@1, 9223372036854775807@1]@1",
        ]),
        ("f = [1.5, -0.25, 1e3, 2E-2, 6.02_2e+2_3, 0.0, +1.0, 0e0]", [
            "f=[1.5@1, -0.25@1, 1000.0@1, 0.02@1, 6.022e+23@1, 0.0@1, 1.0@1, 0.0@1]@1",
        ]),
        ("f = [inf, +inf, -inf]", ["f=[inf@1, inf@1, -inf@1]@1"]),
        ("b = [true, false]", ["b=[true@1, false@1]@1"]),
        ("a = []\nb = [ ]\nc = [[1, 2], [\"x\"]]", [
            "a=[]@1", "b=[]@2", "c=[[1@3, 2@3]@3, [\"x\"@3]@3]@3",
        ]),
        ("a = [\n  \"x\", # first\n  # a comment line\n  \"y\",\n]\nb = 2", [
            "a=[\"x\"@2, \"y\"@4]@1", "b=2@6",
        ]),
        ("a = [1,2,]", ["a=[1@1, 2@1]@1"]),
    ]

    @Test(arguments: validDocuments)
    func parsesValidDocument(text: String, expected: [String]) throws {
        let table = try TOMLParser.parse(text)
        #expect(flatten(table) == expected)
    }

    static let invalidDocuments: [(String, String)] = [
        ("a = 1\n\nmax_connections 64", "line 3: expected '=' after key \"max_connections\""),
        ("[limits]\nmax.connections: 64", "line 2: expected '=' after key \"max.connections\""),
        ("a =", "line 1: expected a value after '=' for key \"a\""),
        ("a = # nothing", "line 1: expected a value after '=' for key \"a\""),
        ("= 1", "line 1: expected a key, got '='"),
        ("a.= 1", "line 1: expected a key, got '='"),
        ("ключ = 1", "line 1: expected a key, got 'к'"),
        ("a = 1 2", "line 1: expected the end of the line after the value of key \"a\", got '2'"),
        ("a = \"x\" \"y\"", "line 1: expected the end of the line after the value of key \"a\", got '\"'"),
        ("a = 1\na = 2", "line 2: duplicate key \"a\" (first defined on line 1)"),
        ("[t]\na = 1\n\na = 2", "line 4: duplicate key \"t.a\" (first defined on line 2)"),
        ("a.b = 1\na = 2", "line 2: duplicate key \"a\" (first defined on line 1)"),
        ("a = 1\na.b = 2", "line 2: key \"a.b\" conflicts with key \"a\" defined on line 1"),
        ("[t]\n[t]", "line 2: table [t] is defined twice (first on line 1)"),
        ("[t.u]\n[t]\n[t.u]", "line 3: table [t.u] is defined twice (first on line 1)"),
        ("a.b = 1\n[a]", "line 2: table [a] was already defined by dotted keys on line 1"),
        ("a = 1\n[a.b]", "line 2: table [a.b] conflicts with key \"a\" defined on line 1"),
        ("[a.b]\nc = 1\n[a]\nb.d = 2", "line 4: key \"a.b.d\" cannot use dotted keys to add to table [a.b] defined on line 1"),
        ("[t]]", "line 1: expected the end of the line after the table header [t], got ']'"),
        ("[t", "line 1: expected ']' to close the table header [t], got the end of the file"),
        ("[]", "line 1: expected a key, got ']'"),
        ("[[servers]]", "line 1: arrays of tables ([[...]]) are not supported"),
        ("t = {a = 1}", "line 1: inline tables ({...}) are not supported; use a [table] header instead"),
        ("s = \"\"\"multi\"\"\"", "line 1: multi-line strings (\"\"\") are not supported"),
        ("s = '''multi'''", "line 1: multi-line strings (''') are not supported"),
        ("\"\"\"k\"\"\" = 1", "line 1: a key cannot be a multi-line string"),
        ("d = 1979-05-27", "line 1: dates and times are not supported: 1979-05-27"),
        ("t = 07:32:00", "line 1: dates and times are not supported: 07:32:00"),
        ("s = \"open", "line 1: unterminated string: missing the closing '\"' on this line"),
        ("s = \"open\nb = 1", "line 1: unterminated string: missing the closing '\"' on this line"),
        ("s = 'open", "line 1: unterminated literal string: missing the closing \"'\" on this line"),
        (#"s = "\x41""#, #"line 1: invalid escape sequence \x in a string"#),
        (#"s = "\e""#, #"line 1: invalid escape sequence \e in a string"#),
        (#"s = "\u12""#, #"line 1: \u must be followed by 4 hex digits"#),
        (#"s = "\uD800""#, #"line 1: \uD800 is not a Unicode scalar value"#),
        (#"s = "\U00110000""#, #"line 1: \U00110000 is not a Unicode scalar value"#),
        ("s = \"a\u{01}b\"", "line 1: control character U+0001 must be escaped in a string"),
        ("s = 'a\u{7F}b'", "line 1: control character U+007F is not allowed in a literal string"),
        ("# bell \u{07}", "line 1: control character U+0007 is not allowed in a comment"),
        ("a = 1\rb = 2", "line 1: a carriage return must be followed by a line feed"),
        ("name = example.org", "line 1: expected a value, got example.org (strings must be quoted)"),
        ("yes = yes", "line 1: expected a value, got yes (strings must be quoted)"),
        ("b = True", "line 1: expected a value, got True (strings must be quoted)"),
        ("i = 01", "line 1: invalid integer 01: leading zeros are not allowed"),
        ("i = 1__000", "line 1: invalid integer 1__000"),
        ("i = 1_", "line 1: invalid integer 1_"),
        ("i = _1", "line 1: expected a value, got _1 (strings must be quoted)"),
        ("i = +-1", "line 1: invalid integer +-1"),
        ("i = 12abc", "line 1: invalid integer 12abc"),
        ("i = 9223372036854775808", "line 1: integer 9223372036854775808 does not fit in 64 bits"),
        ("i = 0x8000000000000000", "line 1: integer 0x8000000000000000 does not fit in 64 bits"),
        ("i = 0xfg", "line 1: invalid integer 0xfg"),
        ("i = 0b102", "line 1: invalid integer 0b102"),
        ("i = -0x1", "line 1: invalid integer -0x1"),
        ("f = 1.", "line 1: invalid float 1."),
        ("f = .5", "line 1: invalid float .5"),
        ("f = 1.e5", "line 1: invalid float 1.e5"),
        ("f = 1e", "line 1: invalid float 1e"),
        ("f = 01.5", "line 1: invalid float 01.5"),
        ("f = 1.2.3", "line 1: invalid float 1.2.3"),
        ("f = 1e400", "line 1: float 1e400 is out of range"),
        ("a = [1, 2", "line 1: unterminated array: no ']' for the '[' on line 1"),
        ("a = [\n1,\n2\n", "line 4: unterminated array: no ']' for the '[' on line 1"),
        ("a = [1 2]", "line 1: expected ',' or ']' after an array element, got '2'"),
        ("a = [,]", "line 1: expected a value, got ','"),
        ("a = [1,,2]", "line 1: expected a value, got ','"),
        ("a = [\n  1,\n  {x = 1},\n]", "line 3: inline tables ({...}) are not supported; use a [table] header instead"),
    ]

    @Test(arguments: invalidDocuments)
    func rejectsInvalidDocument(text: String, expected: String) {
        #expect(parseError(text) == expected)
    }

    @Test func nanIsAFloat() throws {
        let table = try TOMLParser.parse("a = nan\nb = -nan")
        guard case .float(let a) = table["a"]?.kind, case .float(let b) = table["b"]?.kind else {
            Issue.record("nan did not parse as a float")
            return
        }
        #expect(a.isNaN && b.isNaN)
    }

    @Test func keepsKeysInDocumentOrder() throws {
        let table = try TOMLParser.parse("z = 1\na = 2\n[m]\n[b]")
        #expect(table.keys == ["z", "a", "m", "b"])
        #expect(table["m"]?.line == 3)
    }

    @Test func implicitTableTakesTheLineOfItsOwnHeader() throws {
        let table = try TOMLParser.parse("[a.b]\n\n[a]\n")
        #expect(table["a"]?.line == 3)
    }
}
