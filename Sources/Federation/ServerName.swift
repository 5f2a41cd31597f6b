#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A Matrix server name, `hostname[:port]`, as defined in the spec's identifier grammar.
///
/// A value of this type has passed the whole grammar plus the checks the grammar leaves to prose:
/// IPv4 octets are 0-255, a bracketed IPv6 literal is a real IPv6 address, a port is 1-65535, and a DNS
/// name can be looked up (labels of letters, digits and `-`, 1-63 bytes each, at most 255 bytes in all,
/// a top-level label that is not all digits). Server names are case-sensitive identifiers, so equality
/// compares the original text byte for byte.
public struct ServerName: Sendable, Hashable, CustomStringConvertible {
    /// The hostname part of a server name.
    public enum Host: Sendable, Hashable {
        /// A dotted-quad IPv4 literal such as `1.2.3.4`.
        case ipv4(String)
        /// An IPv6 literal, without the square brackets it has in the server name.
        case ipv6(String)
        /// A DNS name, with its case kept.
        case dns(String)
    }

    /// The hostname, classified.
    public let host: Host
    /// The explicit port, or nil when the server name has none.
    public let port: UInt16?
    /// The server name exactly as it was given.
    public let description: String

    /// Parses and validates `text` as a server name.
    public init(_ text: String) throws(ServerNameError) {
        func fail(_ reason: ServerNameError.Reason) -> ServerNameError {
            ServerNameError(serverName: text, reason: reason)
        }
        guard !text.isEmpty else { throw fail(.empty) }
        let scalars = Array(text.unicodeScalars)
        let portScalars: ArraySlice<Unicode.Scalar>?
        if scalars[0] == "[" {
            guard let close = scalars.firstIndex(of: "]") else { throw fail(.missingClosingBracket) }
            let literal = String(String.UnicodeScalarView(scalars[1..<close]))
            try ServerName.validateIPv6(literal, fail: fail)
            host = .ipv6(literal)
            let rest = scalars[(close + 1)...]
            if let first = rest.first {
                guard first == ":" else { throw fail(.unexpectedAfterIPv6Literal(first)) }
                portScalars = rest.dropFirst()
            } else {
                portScalars = nil
            }
        } else {
            let hostScalars: ArraySlice<Unicode.Scalar>
            if let colon = scalars.lastIndex(of: ":") {
                hostScalars = scalars[..<colon]
                portScalars = scalars[(colon + 1)...]
            } else {
                hostScalars = scalars[...]
                portScalars = nil
            }
            if hostScalars.contains(":") && hostScalars.allSatisfy(ServerName.isIPv6Character) {
                throw fail(.unbracketedIPv6)
            }
            host = try ServerName.parseHostname(hostScalars, fail: fail)
        }
        if let portScalars {
            port = try ServerName.parsePort(portScalars, fail: fail)
        } else {
            port = nil
        }
        description = text
    }

    /// Throws exactly what `init` throws, without building the value: ingest checks every name
    /// of a room's server list on every request, thousands of names each time. The common
    /// forms (a DNS name or dotted quad with an optional port) are checked in one pass over
    /// the bytes with no allocation; anything else, and every invalid name, goes through
    /// `init`, which names the broken rule.
    public static func validate(_ text: String) throws(ServerNameError) {
        var text = text
        let isCommonValidForm = text.withUTF8(isValidDNSNameOrIPv4WithOptionalPort)
        if !isCommonValidForm {
            _ = try ServerName(text)
        }
    }

    /// True only when `bytes` is a DNS name or IPv4 literal, optionally followed by `:port`,
    /// that `init` accepts. False means "not sure": the caller asks `init`.
    private static func isValidDNSNameOrIPv4WithOptionalPort(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        let colon = bytes.lastIndex(of: UInt8(ascii: ":"))
        let hostEnd = colon ?? bytes.count
        if let colon {
            let port = bytes[(colon + 1)...]
            guard (1...5).contains(port.count) else { return false }
            var value = 0
            for byte in port {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return false }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            guard (1...65_535).contains(value) else { return false }
        }
        guard (1...255).contains(hostEnd) else { return false }
        var labelLength = 0
        var labelAllDigits = true
        var labelCount = 1
        var octetValue = 0
        var octetLeadingZero = false
        var octetsValid = true
        var hostAllDigitsAndDots = true
        for index in 0..<hostEnd {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "."):
                guard labelLength > 0, labelLength <= 63 else { return false }
                if labelLength > 3 || octetValue > 255 || (octetLeadingZero && labelLength > 1) { octetsValid = false }
                labelCount += 1
                labelLength = 0
                labelAllDigits = true
                octetValue = 0
                continue
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                if labelLength == 0 { octetLeadingZero = byte == UInt8(ascii: "0") }
                octetValue = min(octetValue * 10 + Int(byte - UInt8(ascii: "0")), 1_000)
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "-"):
                labelAllDigits = false
                hostAllDigitsAndDots = false
            default:
                return false
            }
            labelLength += 1
        }
        guard labelLength > 0, labelLength <= 63 else { return false }
        if hostAllDigitsAndDots {
            if labelLength > 3 || octetValue > 255 || (octetLeadingZero && labelLength > 1) { octetsValid = false }
            return octetsValid && labelCount == 4
        }
        // A DNS name's top-level label is not all digits.
        return !labelAllDigits
    }

    /// True when the hostname is an IPv4 or IPv6 literal, which changes how the name is resolved.
    public var isIPLiteral: Bool {
        switch host {
        case .ipv4, .ipv6: true
        case .dns: false
        }
    }

    /// The hostname as it goes into a URL authority or a `Host` header: IPv6 literals in brackets.
    public var hostForURL: String {
        switch host {
        case .ipv4(let address): address
        case .ipv6(let address): "[\(address)]"
        case .dns(let name): name
        }
    }

    public static func == (lhs: ServerName, rhs: ServerName) -> Bool {
        lhs.description.utf8.elementsEqual(rhs.description.utf8)
    }

    public func hash(into hasher: inout Hasher) {
        var text = description
        text.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }

    private static func validateIPv6(
        _ literal: String, fail: (ServerNameError.Reason) -> ServerNameError
    ) throws(ServerNameError) {
        if let bad = literal.unicodeScalars.first(where: { !isIPv6Character($0) }) {
            throw fail(.invalidIPv6Character(bad))
        }
        let length = literal.utf8.count
        guard (2...45).contains(length) else { throw fail(.invalidIPv6Literal(literal)) }
        var address = in6_addr()
        guard inet_pton(AF_INET6, literal, &address) == 1 else { throw fail(.invalidIPv6Literal(literal)) }
    }

    private static func isIPv6Character(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "0"..."9", "a"..."f", "A"..."F", ":", ".": true
        default: false
        }
    }

    private static func parseHostname(
        _ scalars: ArraySlice<Unicode.Scalar>, fail: (ServerNameError.Reason) -> ServerNameError
    ) throws(ServerNameError) -> Host {
        guard !scalars.isEmpty else { throw fail(.emptyHostname) }
        let hostname = String(String.UnicodeScalarView(scalars))
        if scalars.allSatisfy({ $0 == "." || ("0"..."9").contains($0) }) {
            try validateIPv4(hostname, fail: fail)
            return .ipv4(hostname)
        }
        if let bad = scalars.first(where: { !isDNSCharacter($0) }) {
            throw fail(.invalidDNSCharacter(bad))
        }
        let length = hostname.utf8.count
        guard length <= 255 else { throw fail(.hostnameTooLong(length)) }
        let labels = hostname.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        for label in labels {
            guard !label.isEmpty else { throw fail(.emptyLabel) }
            guard label.count <= 63 else { throw fail(.labelTooLong(String(Substring(label)))) }
        }
        if let last = labels.last, last.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) {
            throw fail(.numericTopLevelLabel(String(Substring(last))))
        }
        return .dns(hostname)
    }

    private static func isDNSCharacter(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "0"..."9", "a"..."z", "A"..."Z", "-", ".": true
        default: false
        }
    }

    private static func validateIPv4(
        _ hostname: String, fail: (ServerNameError.Reason) -> ServerNameError
    ) throws(ServerNameError) {
        let octets = hostname.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4, octets.allSatisfy({ (1...3).contains($0.utf8.count) }) else {
            throw fail(.notDottedQuad(hostname))
        }
        for octet in octets {
            if octet.utf8.count > 1 && octet.utf8.first == UInt8(ascii: "0") {
                throw fail(.ipv4LeadingZero(String(octet)))
            }
            guard let value = Int(octet), value <= 255 else { throw fail(.ipv4OctetOutOfRange(String(octet))) }
        }
    }

    private static func parsePort(
        _ scalars: ArraySlice<Unicode.Scalar>, fail: (ServerNameError.Reason) -> ServerNameError
    ) throws(ServerNameError) -> UInt16 {
        let text = String(String.UnicodeScalarView(scalars))
        guard !scalars.isEmpty else { throw fail(.emptyPort) }
        guard scalars.allSatisfy({ ("0"..."9").contains($0) }) else { throw fail(.nonNumericPort(text)) }
        guard scalars.count <= 5 else { throw fail(.portTooLong(text)) }
        guard let value = Int(text), (1...65535).contains(value) else { throw fail(.portOutOfRange(text)) }
        return UInt16(value)
    }
}

/// Why a string is not a valid server name; the description quotes the input and names the broken rule.
public struct ServerNameError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The rule that was broken.
    public enum Reason: Sendable, Equatable {
        case empty
        case missingClosingBracket
        case unexpectedAfterIPv6Literal(Unicode.Scalar)
        case invalidIPv6Character(Unicode.Scalar)
        case invalidIPv6Literal(String)
        case unbracketedIPv6
        case emptyHostname
        case invalidDNSCharacter(Unicode.Scalar)
        case emptyLabel
        case labelTooLong(String)
        case hostnameTooLong(Int)
        case numericTopLevelLabel(String)
        case notDottedQuad(String)
        case ipv4LeadingZero(String)
        case ipv4OctetOutOfRange(String)
        case emptyPort
        case nonNumericPort(String)
        case portTooLong(String)
        case portOutOfRange(String)
    }

    /// The text that failed to parse.
    public let serverName: String
    public let reason: Reason

    public var description: String {
        "\(serverName.quotedExcerpt()) is not a valid server name: \(reasonText)"
    }

    private var reasonText: String {
        switch reason {
        case .empty:
            "it is empty"
        case .missingClosingBracket:
            "the IPv6 literal has no closing ']'"
        case .unexpectedAfterIPv6Literal(let scalar):
            "\(Self.show(scalar)) after the IPv6 literal, only ':' and a port may follow ']'"
        case .invalidIPv6Character(let scalar):
            "\(Self.show(scalar)) is not allowed in an IPv6 literal (hex digits, ':' and '.' only)"
        case .invalidIPv6Literal(let literal):
            "\(literal.quotedExcerpt()) is not a valid IPv6 address"
        case .unbracketedIPv6:
            "an IPv6 address must be written in square brackets"
        case .emptyHostname:
            "the hostname is empty"
        case .invalidDNSCharacter(let scalar):
            "\(Self.show(scalar)) is not allowed in a DNS name (letters, digits, '-' and '.' only)"
        case .emptyLabel:
            "a DNS name may not have an empty label (leading, trailing or doubled '.')"
        case .labelTooLong(let label):
            "the DNS label \(label.quotedExcerpt()) is longer than 63 bytes"
        case .hostnameTooLong(let length):
            "the DNS name is \(length) bytes long, the limit is 255"
        case .numericTopLevelLabel(let label):
            "the top-level label \(label.quotedExcerpt()) is all digits, which no DNS name has (RFC 1123 §2.1)"
        case .notDottedQuad(let hostname):
            "the numeric hostname \(hostname.quotedExcerpt()) is not a dotted-quad IPv4 address"
        case .ipv4LeadingZero(let octet):
            "the IPv4 octet \(octet.quotedExcerpt()) has a leading zero, which some resolvers read as octal"
        case .ipv4OctetOutOfRange(let octet):
            "the IPv4 octet \(octet) is above 255"
        case .emptyPort:
            "the port after ':' is empty"
        case .nonNumericPort(let port):
            "the port \(port.quotedExcerpt()) is not a decimal number"
        case .portTooLong(let port):
            "the port \(port) has more than 5 digits"
        case .portOutOfRange(let port):
            "the port \(port) is outside 1-65535"
        }
    }

    private static func show(_ scalar: Unicode.Scalar) -> String {
        if scalar.isASCII && scalar.value >= 0x20 && scalar.value < 0x7F {
            return "'\(Character(scalar))'"
        }
        let hex = String(scalar.value, radix: 16, uppercase: true)
        return "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
    }
}
