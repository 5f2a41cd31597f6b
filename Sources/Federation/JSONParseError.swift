/// Why a byte sequence is not acceptable JSON for Matrix; names the byte offset, the value it
/// is in (`pdus[0].pdu.depth`) and the rule broken.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The rule that was broken.
    public enum Reason: Sendable, Equatable {
        /// The input ended while `expected` was still missing.
        case unexpectedEnd(expected: String)
        /// `byte` appeared where `expected` was required.
        case unexpectedByte(UInt8, expected: String)
        case invalidUTF8
        /// A raw control character (below U+0020) inside a string; JSON requires it escaped.
        case controlCharacterInString(UInt8)
        /// A backslash followed by something that is not a JSON escape.
        case invalidEscape(UInt8)
        /// A `\u` escape without four hex digits.
        case invalidUnicodeEscape
        /// A UTF-16 surrogate escape without its other half.
        case unpairedSurrogate(UInt16)
        case duplicateKey(String)
        /// Arrays and objects are nested deeper than the limit.
        case tooDeep(limit: Int)
        /// More than whitespace after the top-level value.
        case trailingData
        /// A number that does not follow the JSON number grammar; the text says what is wrong.
        case invalidNumber(String)
        /// A number with a fractional value; canonical JSON has no floats.
        case notAnInteger(String)
        /// An integer outside [-(2^53)+1, (2^53)-1].
        case integerOutOfRange(String)
    }

    /// Offset of the offending byte from the start of the input.
    public let offset: Int
    public let reason: Reason
    /// The member or element being parsed, as `FieldPath` writes it; "" for the top level.
    public let path: String

    public init(offset: Int, reason: Reason, path: String = "") {
        self.offset = offset
        self.reason = reason
        self.path = path
    }

    public var description: String {
        "invalid JSON at byte \(offset)\(path.isEmpty ? "" : ", in \(shownPath)"): \(reasonText)"
    }

    /// The path whole when it is short, else its start and its end: 64 levels of long keys
    /// would make a message of kilobytes.
    private var shownPath: String {
        let scalars = path.unicodeScalars
        guard scalars.count > 160 else { return path }
        return String(String.UnicodeScalarView(scalars.prefix(60))) + "…"
            + String(String.UnicodeScalarView(scalars.suffix(90)))
    }

    /// The same error seen from the member or element `outer` that contains it.
    func within(_ outer: String) -> JSONParseError {
        JSONParseError(offset: offset, reason: reason, path: FieldPath.joining(outer, path))
    }

    private var reasonText: String {
        switch reason {
        case .unexpectedEnd(let expected):
            "the input ends where \(expected) was expected"
        case .unexpectedByte(let byte, let expected):
            "found \(Self.show(byte)) where \(expected) was expected"
        case .invalidUTF8:
            "the bytes are not valid UTF-8"
        case .controlCharacterInString(let byte):
            "the control character \(Self.show(byte)) must be escaped inside a string"
        case .invalidEscape(let byte):
            "\\\(Self.show(byte)) is not a JSON escape"
        case .invalidUnicodeEscape:
            "\\u must be followed by four hex digits"
        case .unpairedSurrogate(let unit):
            "the surrogate \\u\(String(unit, radix: 16)) has no matching other half"
        case .duplicateKey(let key):
            "the key \(key.quotedExcerpt()) appears twice in one object"
        case .tooDeep(let limit):
            "arrays and objects are nested more than \(limit) levels deep"
        case .trailingData:
            "there is more data after the JSON value"
        case .invalidNumber(let problem):
            "malformed number: \(problem)"
        case .notAnInteger(let number):
            "the number \(number) is not an integer, and canonical JSON allows only integers"
        case .integerOutOfRange(let number):
            "the number \(number) is outside the canonical JSON range [-(2^53)+1, (2^53)-1]"
        }
    }

    private static func show(_ byte: UInt8) -> String {
        if byte >= 0x21 && byte < 0x7F {
            return "'\(Character(Unicode.Scalar(byte)))'"
        }
        let hex = String(byte, radix: 16, uppercase: true)
        return "0x" + (hex.count == 1 ? "0" + hex : hex)
    }
}
