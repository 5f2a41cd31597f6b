import FuzzSupport
import Testing
@testable import Federation

struct ServerNameTests {
    struct Valid: Sendable, CustomTestStringConvertible {
        let text: String
        let host: ServerName.Host
        let port: UInt16?
        let hostForURL: String
        var testDescription: String { text }
    }

    static let valid: [Valid] = [
        // The spec's own examples.
        Valid(text: "matrix.org", host: .dns("matrix.org"), port: nil, hostForURL: "matrix.org"),
        Valid(text: "matrix.org:8888", host: .dns("matrix.org"), port: 8888, hostForURL: "matrix.org"),
        Valid(text: "1.2.3.4", host: .ipv4("1.2.3.4"), port: nil, hostForURL: "1.2.3.4"),
        Valid(text: "1.2.3.4:1234", host: .ipv4("1.2.3.4"), port: 1234, hostForURL: "1.2.3.4"),
        Valid(text: "[1234:5678::abcd]", host: .ipv6("1234:5678::abcd"), port: nil, hostForURL: "[1234:5678::abcd]"),
        Valid(text: "[1234:5678::abcd]:5678", host: .ipv6("1234:5678::abcd"), port: 5678, hostForURL: "[1234:5678::abcd]"),
        // More corners of the grammar.
        Valid(text: "localhost", host: .dns("localhost"), port: nil, hostForURL: "localhost"),
        Valid(text: "MATRIX.org", host: .dns("MATRIX.org"), port: nil, hostForURL: "MATRIX.org"),
        Valid(text: "a-b.example-1.com:1", host: .dns("a-b.example-1.com"), port: 1, hostForURL: "a-b.example-1.com"),
        Valid(text: "123.example.com:65535", host: .dns("123.example.com"), port: 65535, hostForURL: "123.example.com"),
        Valid(text: "1.2.3.4.example", host: .dns("1.2.3.4.example"), port: nil, hostForURL: "1.2.3.4.example"),
        Valid(text: "0.0.0.0", host: .ipv4("0.0.0.0"), port: nil, hostForURL: "0.0.0.0"),
        Valid(text: "255.255.255.255:8448", host: .ipv4("255.255.255.255"), port: 8448, hostForURL: "255.255.255.255"),
        Valid(text: "[::1]", host: .ipv6("::1"), port: nil, hostForURL: "[::1]"),
        Valid(text: "[::1]:8449", host: .ipv6("::1"), port: 8449, hostForURL: "[::1]"),
        Valid(text: "[::ffff:1.2.3.4]:8448", host: .ipv6("::ffff:1.2.3.4"), port: 8448, hostForURL: "[::ffff:1.2.3.4]"),
        Valid(text: "[2001:DB8::1]", host: .ipv6("2001:DB8::1"), port: nil, hostForURL: "[2001:DB8::1]"),
        Valid(text: "example.com:00080", host: .dns("example.com"), port: 80, hostForURL: "example.com"),
        Valid(
            text: String(repeating: "a", count: 63) + ".com", host: .dns(String(repeating: "a", count: 63) + ".com"),
            port: nil, hostForURL: String(repeating: "a", count: 63) + ".com"),
    ]

    @Test(arguments: valid)
    func parsesValidName(_ example: Valid) throws {
        let name = try ServerName(example.text)
        #expect(name.host == example.host)
        #expect(name.port == example.port)
        #expect(name.hostForURL == example.hostForURL)
        #expect(name.description == example.text)
        switch example.host {
        case .dns: #expect(!name.isIPLiteral)
        case .ipv4, .ipv6: #expect(name.isIPLiteral)
        }
    }

    struct Invalid: Sendable, CustomTestStringConvertible {
        let text: String
        let reason: ServerNameError.Reason
        var testDescription: String { String(reflecting: text) }
    }

    static let longLabel = String(repeating: "a", count: 64)
    static let longName = Array(repeating: String(repeating: "a", count: 63), count: 4).joined(separator: ".") + ".b"

    static let invalid: [Invalid] = [
        // The cases the reference names.
        Invalid(text: "", reason: .empty),
        Invalid(text: "exa_mple.com", reason: .invalidDNSCharacter("_")),
        Invalid(text: "example.com:", reason: .emptyPort),
        Invalid(text: "example.com:abc", reason: .nonNumericPort("abc")),
        Invalid(text: "example.com:123456", reason: .portTooLong("123456")),
        Invalid(text: "[::1", reason: .missingClosingBracket),
        Invalid(text: "[::1]x", reason: .unexpectedAfterIPv6Literal("x")),
        Invalid(text: "::1", reason: .unbracketedIPv6),
        Invalid(text: "1234:5678::abcd", reason: .unbracketedIPv6),
        Invalid(text: "1.2.3.256", reason: .ipv4OctetOutOfRange("256")),
        // Ports.
        Invalid(text: "example.com:0", reason: .portOutOfRange("0")),
        Invalid(text: "example.com:65536", reason: .portOutOfRange("65536")),
        Invalid(text: "example.com:99999", reason: .portOutOfRange("99999")),
        Invalid(text: "example.com:-1", reason: .nonNumericPort("-1")),
        Invalid(text: "example.com:8448 ", reason: .nonNumericPort("8448 ")),
        Invalid(text: "[::1]:", reason: .emptyPort),
        Invalid(text: "[::1]:70000", reason: .portOutOfRange("70000")),
        // IPv4-looking names.
        Invalid(text: "1.2.3", reason: .notDottedQuad("1.2.3")),
        Invalid(text: "1.2.3.4.5", reason: .notDottedQuad("1.2.3.4.5")),
        Invalid(text: "1.2.3.1234", reason: .notDottedQuad("1.2.3.1234")),
        Invalid(text: "1..3.4", reason: .notDottedQuad("1..3.4")),
        Invalid(text: "01.2.3.4", reason: .ipv4LeadingZero("01")),
        Invalid(text: "999.1.1.1:80", reason: .ipv4OctetOutOfRange("999")),
        Invalid(text: "8448", reason: .notDottedQuad("8448")),
        // IPv6 literals.
        Invalid(text: "[]", reason: .invalidIPv6Literal("")),
        Invalid(text: "[1.2.3.4]", reason: .invalidIPv6Literal("1.2.3.4")),
        Invalid(text: "[12345::]", reason: .invalidIPv6Literal("12345::")),
        Invalid(text: "[1:2:3:4:5:6:7:8:9]", reason: .invalidIPv6Literal("1:2:3:4:5:6:7:8:9")),
        Invalid(text: "[::1%eth0]", reason: .invalidIPv6Character("%")),
        Invalid(text: "[example.com]", reason: .invalidIPv6Character("x")),
        // DNS names.
        Invalid(text: ":8448", reason: .emptyHostname),
        Invalid(text: ".example.com", reason: .emptyLabel),
        Invalid(text: "example.com.", reason: .emptyLabel),
        Invalid(text: "example..com", reason: .emptyLabel),
        Invalid(text: "example.123", reason: .numericTopLevelLabel("123")),
        Invalid(text: longLabel + ".com", reason: .labelTooLong(longLabel)),
        Invalid(text: longName, reason: .hostnameTooLong(257)),
        Invalid(text: " example.com", reason: .invalidDNSCharacter(" ")),
        Invalid(text: "exämple.com", reason: .invalidDNSCharacter("ä")),
        Invalid(text: "example.com/path", reason: .invalidDNSCharacter("/")),
        Invalid(text: "example.com:80:80", reason: .invalidDNSCharacter(":")),
        Invalid(text: "user@example.com", reason: .invalidDNSCharacter("@")),
    ]

    @Test(arguments: invalid)
    func rejectsInvalidName(_ example: Invalid) {
        #expect(throws: ServerNameError(serverName: example.text, reason: example.reason)) {
            try ServerName(example.text)
        }
    }

    @Test func errorDescriptionNamesInputAndRule() {
        #expect(
            ServerNameError(serverName: "exa_mple.org", reason: .invalidDNSCharacter("_")).description
                == #""exa_mple.org" is not a valid server name: '_' is not allowed in a DNS name (letters, digits, '-' and '.' only)"#
        )
        #expect(
            ServerNameError(serverName: "1.2.3.256", reason: .ipv4OctetOutOfRange("256")).description
                == #""1.2.3.256" is not a valid server name: the IPv4 octet 256 is above 255"#)
        #expect(
            ServerNameError(serverName: "exämple.com", reason: .invalidDNSCharacter("ä")).description
                == #""exämple.com" is not a valid server name: U+00E4 is not allowed in a DNS name (letters, digits, '-' and '.' only)"#
        )
        #expect(
            ServerNameError(serverName: "a\nb", reason: .invalidDNSCharacter("\n")).description
                .hasPrefix(#""a\nb" is not a valid server name: U+000A"#))
    }

    @Test func equalityIsCaseSensitiveAndByExactText() throws {
        #expect(try ServerName("matrix.org") == ServerName("matrix.org"))
        #expect(try ServerName("matrix.org") != ServerName("MATRIX.org"))
        #expect(try ServerName("matrix.org") != ServerName("matrix.org:8448"))
        let names: Set<ServerName> = try [ServerName("a.example"), ServerName("a.example"), ServerName("b.example")]
        #expect(names.count == 2)
    }

    /// `validate` has its own one-pass check for the common forms; it must agree with `init`
    /// on every input, valid or not, and throw the same error.
    @Test func validateAgreesWithInitOnValidTableAndGeneratedNames() {
        var generator = SplitMix64(seed: 0x5E_7A_11DA_7E)
        let pieces = ["a", "Z", "0", "1", "9", "25", "255", "256", "00", "01", "-", ".", ":", "8448", "65535", "65536",
                      "[", "]", "::1", "ä", "_", " ", "example", "com", String(repeating: "x", count: 63),
                      String(repeating: "y", count: 64), String(repeating: "1", count: 6)]
        var inputs = Self.valid.map(\.text) + Self.invalid.map(\.text)
        for _ in 0..<20_000 {
            let count = Int.random(in: 1...9, using: &generator)
            inputs.append((0..<count).map { _ in pieces.randomElement(using: &generator)! }.joined())
        }
        for text in inputs {
            let fromInit = Result { () throws(ServerNameError) in _ = try ServerName(text) }
            let fromValidate = Result { () throws(ServerNameError) in try ServerName.validate(text) }
            switch (fromInit, fromValidate) {
            case (.success, .success):
                break
            case let (.failure(expected), .failure(found)):
                #expect(found == expected, "\(text)")
            default:
                Issue.record("init and validate disagree on \(text.debugDescription)")
            }
        }
    }
}
