extension XMatrixAuthorization {
    /// Parses an `Authorization` header value with the RFC 9110 §11.4 credentials syntax.
    ///
    /// The scheme and parameter names are case-insensitive; spaces and tabs may surround commas and `=`;
    /// values may be tokens or quoted strings with backslash escapes; unquoted values may contain `:`, `/`,
    /// `+` and `=` (servers send key IDs and signatures that way). `origin`, `key` and `sig` are required,
    /// `destination` is optional, and unknown parameters are ignored. A repeated known parameter is an
    /// error, since its meaning would be ambiguous.
    public static func parse(_ headerValue: String) throws(XMatrixAuthorizationError) -> XMatrixAuthorization {
        func fail(_ reason: XMatrixAuthorizationError.Reason) -> XMatrixAuthorizationError {
            XMatrixAuthorizationError(header: headerValue, reason: reason)
        }
        let bytes = Array(headerValue.utf8)
        var index = 0
        var end = bytes.count
        while index < end && isWhitespace(bytes[index]) { index += 1 }
        while end > index && isWhitespace(bytes[end - 1]) { end -= 1 }

        let schemeStart = index
        while index < end && isTokenCharacter(bytes[index]) { index += 1 }
        let scheme = bytes[schemeStart..<index]
        guard scheme.map(lowercased).elementsEqual("x-matrix".utf8) else {
            throw fail(.notXMatrix(scheme: String(decoding: scheme, as: UTF8.self)))
        }
        if index < end && !isWhitespace(bytes[index]) {
            throw fail(.unexpectedCharacter(offset: index))
        }

        var parameters: [String: String] = [:]
        while index < end {
            while index < end && (isWhitespace(bytes[index]) || bytes[index] == UInt8(ascii: ",")) { index += 1 }
            if index == end { break }
            let nameStart = index
            while index < end && isTokenCharacter(bytes[index]) { index += 1 }
            guard index > nameStart else { throw fail(.expectedParameterName(offset: index)) }
            let name = String(decoding: bytes[nameStart..<index].map(lowercased), as: UTF8.self)
            while index < end && isWhitespace(bytes[index]) { index += 1 }
            guard index < end && bytes[index] == UInt8(ascii: "=") else { throw fail(.expectedEquals(parameter: name)) }
            index += 1
            while index < end && isWhitespace(bytes[index]) { index += 1 }

            var value: [UInt8] = []
            if index < end && bytes[index] == UInt8(ascii: "\"") {
                index += 1
                while true {
                    guard index < end else { throw fail(.unterminatedQuotedString(parameter: name)) }
                    var byte = bytes[index]
                    if byte == UInt8(ascii: "\"") { break }
                    if byte == UInt8(ascii: "\\") {
                        index += 1
                        guard index < end else { throw fail(.unterminatedQuotedString(parameter: name)) }
                        byte = bytes[index]
                    }
                    guard byte == 0x09 || (byte >= 0x20 && byte != 0x7F) else {
                        throw fail(.unexpectedCharacter(offset: index))
                    }
                    value.append(byte)
                    index += 1
                }
                index += 1
            } else {
                let valueStart = index
                while index < end && isUnquotedValueCharacter(bytes[index]) { index += 1 }
                guard index > valueStart else { throw fail(.missingValue(parameter: name)) }
                value.append(contentsOf: bytes[valueStart..<index])
            }

            if knownParameters.contains(name) {
                guard parameters[name] == nil else { throw fail(.duplicateParameter(name)) }
                parameters[name] = String(decoding: value, as: UTF8.self)
            }

            while index < end && isWhitespace(bytes[index]) { index += 1 }
            if index < end && bytes[index] != UInt8(ascii: ",") {
                throw fail(.unexpectedCharacter(offset: index))
            }
        }

        func required(_ name: String) throws(XMatrixAuthorizationError) -> String {
            guard let value = parameters[name] else { throw fail(.missingParameter(name)) }
            guard !value.isEmpty else { throw fail(.missingValue(parameter: name)) }
            return value
        }
        let origin = try required("origin")
        let keyID = try required("key")
        let signature = try required("sig")
        if let destination = parameters["destination"], destination.isEmpty {
            throw fail(.missingValue(parameter: "destination"))
        }
        return XMatrixAuthorization(
            origin: origin, destination: parameters["destination"], keyID: keyID, signature: signature)
    }

    private static let knownParameters: Set<String> = ["origin", "destination", "key", "sig"]

    private static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09
    }

    private static func lowercased(_ byte: UInt8) -> UInt8 {
        (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte + 0x20 : byte
    }

    /// RFC 9110 `tchar`.
    private static func isTokenCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
            UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
            UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            true
        default:
            false
        }
    }

    /// Wider than `tchar` on purpose: the spec asks receivers to accept `:` unquoted, and base64 signatures
    /// bring `/`, `+` and `=`. Anything visible except `,`, `"` and `\` is taken.
    private static func isUnquotedValueCharacter(_ byte: UInt8) -> Bool {
        byte > 0x20 && byte < 0x7F && byte != UInt8(ascii: ",") && byte != UInt8(ascii: "\"")
            && byte != UInt8(ascii: "\\")
    }
}

/// Why an `Authorization` header value is not usable X-Matrix credentials; quotes the header and names
/// the rule broken.
public struct XMatrixAuthorizationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The rule that was broken.
    public enum Reason: Sendable, Equatable {
        case notXMatrix(scheme: String)
        /// A byte that the credentials syntax does not allow at this offset.
        case unexpectedCharacter(offset: Int)
        case expectedParameterName(offset: Int)
        case expectedEquals(parameter: String)
        case missingValue(parameter: String)
        case unterminatedQuotedString(parameter: String)
        case duplicateParameter(String)
        case missingParameter(String)
    }

    /// The header value that failed to parse.
    public let header: String
    public let reason: Reason

    public var description: String {
        "Authorization header \(String(reflecting: header)): \(reasonText)"
    }

    private var reasonText: String {
        switch reason {
        case .notXMatrix(let scheme):
            "the scheme \(String(reflecting: scheme)) is not X-Matrix"
        case .unexpectedCharacter(let offset):
            "unexpected character at byte \(offset)"
        case .expectedParameterName(let offset):
            "expected a parameter name at byte \(offset)"
        case .expectedEquals(let parameter):
            "the parameter \(parameter) has no '='"
        case .missingValue(let parameter):
            "the parameter \(parameter) has an empty value"
        case .unterminatedQuotedString(let parameter):
            "the quoted value of \(parameter) has no closing '\"'"
        case .duplicateParameter(let parameter):
            "the parameter \(parameter) appears more than once"
        case .missingParameter(let parameter):
            "the required parameter \(parameter) is missing"
        }
    }
}
