import Federation

/// A CIDR block of IPv4 or IPv6 addresses, such as `10.0.0.0/8` or `fe80::/10`.
///
/// The network address never has host bits set, so two ranges are equal exactly when they
/// cover the same addresses. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is the IPv4
/// address it carries: a dual-stack socket connecting to it reaches that IPv4 host, so an
/// IPv4 range contains it, and an IPv6 range containing `::ffff:a.b.c.d` contains `a.b.c.d`.
public struct IPRange: Sendable, Hashable, CustomStringConvertible {
    /// The network address: 4 bytes for IPv4, 16 for IPv6, with every host bit zero.
    public let network: [UInt8]
    /// The number of leading bits that an address must share with `network`: 0-32 or 0-128.
    public let prefixLength: Int

    /// True for an IPv4 range, false for an IPv6 range.
    public var isIPv4: Bool { network.count == 4 }

    /// Parses `"10.0.0.0/8"`, `"::1/128"` or a bare address (a /32 or /128 range).
    ///
    /// Strict: IPv4 octets with leading zeros, IPv6 zone indices (`%eth0`), prefix lengths
    /// with leading zeros and networks with host bits set (`10.0.0.1/8`) are rejected.
    public init(parsing text: String) throws(IPRangeError) {
        let addressText: Substring
        let prefixText: Substring?
        if let slash = text.firstIndex(of: "/") {
            addressText = text[..<slash]
            prefixText = text[text.index(after: slash)...]
        } else {
            addressText = Substring(text)
            prefixText = nil
        }
        if addressText.contains("%") {
            throw IPRangeError(text: text, expected: .range, reason: "zone indices (%...) are not allowed")
        }
        guard let network = IPRange.addressBytes(String(addressText)) else {
            throw IPRangeError(text: text, expected: .range,
                               reason: "\"\(addressText)\" is not an IPv4 or IPv6 address")
        }
        let maximum = network.count * 8
        var prefixLength = maximum
        if let prefixText {
            guard let parsed = IPRange.prefixLength(prefixText), parsed <= maximum else {
                throw IPRangeError(text: text, expected: .range, reason: "prefix length must be 0-\(maximum)")
            }
            prefixLength = parsed
        }
        let masked = IPRange.masked(network, prefixLength: prefixLength)
        guard masked == network else {
            let suggestion = IPRange(checkedNetwork: masked, prefixLength: prefixLength)
            throw IPRangeError(text: text, expected: .range,
                               reason: "host bits are set; the network is \(suggestion)")
        }
        self.init(checkedNetwork: network, prefixLength: prefixLength)
    }

    private init(checkedNetwork: [UInt8], prefixLength: Int) {
        self.network = checkedNetwork
        self.prefixLength = prefixLength
    }

    /// The range in CIDR notation, IPv6 in the RFC 5952 canonical form: `"fe80::/10"`.
    public var description: String {
        "\(IPRange.addressDescription(network))/\(prefixLength)"
    }

    /// Whether the address (4 or 16 bytes) lies in this range; an IPv4-mapped IPv6 address
    /// is compared as the IPv4 address it carries. Any other byte count is in no range.
    public func contains(_ address: [UInt8]) -> Bool {
        switch (network.count, address.count) {
        case (4, 4), (16, 16):
            return IPRange.matches(network, address, prefixLength: prefixLength)
        case (4, 16):
            guard let ipv4 = IPRange.ipv4Mapped(address) else { return false }
            return IPRange.matches(network, ipv4, prefixLength: prefixLength)
        case (16, 4):
            return IPRange.matches(network, IPRange.ipv4MappedIPv6(address), prefixLength: prefixLength)
        default:
            return false
        }
    }

    /// Whether the textual address lies in this range; text that is not an address is in no range.
    public func contains(_ address: String) -> Bool {
        guard let bytes = IPRange.addressBytes(address) else { return false }
        return contains(bytes)
    }

    /// The bytes of a textual IPv4 (`"192.0.2.1"`, 4 bytes) or IPv6 (`"2001:db8::1"`,
    /// `"::ffff:192.0.2.1"`, 16 bytes) address, or nil when the text is not one.
    /// IPv4 octets with leading zeros and IPv6 zone indices are not accepted.
    public static func addressBytes(_ text: String) -> [UInt8]? {
        let bytes = Array(text.utf8)
        if bytes.contains(UInt8(ascii: ":")) {
            return parseIPv6(bytes[...])
        }
        return parseIPv4(bytes[...])
    }

    /// The textual form of a 4- or 16-byte address; IPv6 in the RFC 5952 canonical form
    /// (lower case, longest run of zero groups compressed, `::ffff:a.b.c.d` for mapped IPv4).
    public static func addressDescription(_ address: [UInt8]) -> String {
        switch address.count {
        case 4:
            return address.map { String($0) }.joined(separator: ".")
        case 16:
            return ipv6Description(address)
        default:
            return "<\(address.count)-byte address>"
        }
    }

    /// The IPv4 address inside an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`), or nil.
    public static func ipv4Mapped(_ address: [UInt8]) -> [UInt8]? {
        guard address.count == 16,
              address[0..<10].allSatisfy({ $0 == 0 }),
              address[10] == 0xFF, address[11] == 0xFF
        else { return nil }
        return Array(address[12..<16])
    }

    static func ipv4MappedIPv6(_ ipv4: [UInt8]) -> [UInt8] {
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF] + ipv4
    }

    private static func matches(_ network: [UInt8], _ address: [UInt8], prefixLength: Int) -> Bool {
        var remaining = prefixLength
        var index = 0
        while remaining >= 8 {
            if network[index] != address[index] { return false }
            index += 1
            remaining -= 8
        }
        guard remaining > 0 else { return true }
        let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - remaining))
        return network[index] & mask == address[index] & mask
    }

    private static func masked(_ address: [UInt8], prefixLength: Int) -> [UInt8] {
        var result = address
        for index in result.indices {
            let bitsKept = min(max(prefixLength - index * 8, 0), 8)
            let mask = bitsKept == 0 ? 0 : UInt8(truncatingIfNeeded: 0xFF << (8 - bitsKept))
            result[index] &= mask
        }
        return result
    }

    private static func prefixLength(_ text: Substring) -> Int? {
        let digits = Array(text.utf8)
        guard !digits.isEmpty, digits.count <= 3,
              digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
              digits.count == 1 || digits[0] != UInt8(ascii: "0")
        else { return nil }
        return digits.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
    }

    private static func parseIPv4(_ text: ArraySlice<UInt8>) -> [UInt8]? {
        var octets: [UInt8] = []
        var value = 0
        var digits = 0
        for character in text {
            if character == UInt8(ascii: ".") {
                guard digits > 0, octets.count < 3 else { return nil }
                octets.append(UInt8(value))
                value = 0
                digits = 0
            } else if character >= UInt8(ascii: "0"), character <= UInt8(ascii: "9") {
                // A leading zero is how inet_aton spells octal; refuse the ambiguity.
                if digits > 0, value == 0 { return nil }
                value = value * 10 + Int(character - UInt8(ascii: "0"))
                digits += 1
                guard value <= 255 else { return nil }
            } else {
                return nil
            }
        }
        guard digits > 0, octets.count == 3 else { return nil }
        octets.append(UInt8(value))
        return octets
    }

    private static func parseIPv6(_ text: ArraySlice<UInt8>) -> [UInt8]? {
        var head: [UInt16] = []
        var tail: [UInt16] = []
        var compressed = false
        var index = text.startIndex
        let end = text.endIndex
        func append(_ group: UInt16) {
            if compressed { tail.append(group) } else { head.append(group) }
        }
        if index < end, text[index] == UInt8(ascii: ":") {
            guard index + 1 < end, text[index + 1] == UInt8(ascii: ":") else { return nil }
            compressed = true
            index += 2
        }
        while index < end {
            let start = index
            while index < end, text[index].hexDigitValue != nil { index += 1 }
            if index < end, text[index] == UInt8(ascii: ".") {
                guard let ipv4 = parseIPv4(text[start..<end]) else { return nil }
                append(UInt16(ipv4[0]) << 8 | UInt16(ipv4[1]))
                append(UInt16(ipv4[2]) << 8 | UInt16(ipv4[3]))
                index = end
                break
            }
            guard (1...4).contains(index - start) else { return nil }
            append(text[start..<index].reduce(0) { $0 << 4 | UInt16($1.hexDigitValue!) })
            if index == end { break }
            guard text[index] == UInt8(ascii: ":") else { return nil }
            index += 1
            if index < end, text[index] == UInt8(ascii: ":") {
                guard !compressed else { return nil }
                compressed = true
                index += 1
            } else if index == end {
                return nil
            }
        }
        let count = head.count + tail.count
        if compressed {
            guard count <= 7 else { return nil }
        } else {
            guard count == 8 else { return nil }
        }
        let groups = head + Array(repeating: 0, count: 8 - count) + tail
        return groups.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
    }

    private static func ipv6Description(_ address: [UInt8]) -> String {
        if let ipv4 = ipv4Mapped(address) {
            return "::ffff:" + addressDescription(ipv4)
        }
        let groups = (0..<8).map { UInt16(address[2 * $0]) << 8 | UInt16(address[2 * $0 + 1]) }
        var bestStart = -1
        var bestLength = 1
        var runStart = 0
        while runStart < 8 {
            guard groups[runStart] == 0 else {
                runStart += 1
                continue
            }
            var runEnd = runStart
            while runEnd < 8, groups[runEnd] == 0 { runEnd += 1 }
            if runEnd - runStart > bestLength {
                bestStart = runStart
                bestLength = runEnd - runStart
            }
            runStart = runEnd
        }
        func hex(_ slice: ArraySlice<UInt16>) -> String {
            slice.map { String($0, radix: 16) }.joined(separator: ":")
        }
        guard bestStart >= 0 else { return hex(groups[...]) }
        return hex(groups[..<bestStart]) + "::" + hex(groups[(bestStart + bestLength)...])
    }
}

/// Why a text is not an IP address or CIDR range; the description names the text and the rule,
/// e.g. `"10.0.0.0/33" is not a valid CIDR range: prefix length must be 0-32`.
public struct IPRangeError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What the text was supposed to be.
    public enum Expected: String, Sendable {
        case range = "CIDR range"
        case address = "IP address"
    }

    /// The text as given.
    public let text: String
    /// What the text was supposed to be.
    public let expected: Expected
    /// The rule the text broke.
    public let reason: String

    public init(text: String, expected: Expected, reason: String) {
        self.text = text
        self.expected = expected
        self.reason = reason
    }

    public var description: String {
        "\"\(text)\" is not a valid \(expected.rawValue): \(reason)"
    }
}
