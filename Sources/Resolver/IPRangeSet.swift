/// An ordered list of IP ranges that answers "which range holds this address".
///
/// Lookups walk the ranges in order and report the first match, so a set lists its most
/// specific ranges first when the reported range matters (as in a log line).
public struct IPRangeSet: Sendable, Hashable {
    /// The ranges, in lookup order.
    public let ranges: [IPRange]

    public init(_ ranges: [IPRange]) {
        self.ranges = ranges
    }

    /// The first range that contains the address (4 or 16 bytes), or nil.
    public func firstRange(containing address: [UInt8]) -> IPRange? {
        ranges.first { $0.contains(address) }
    }

    /// Whether any range contains the address (4 or 16 bytes).
    public func contains(_ address: [UInt8]) -> Bool {
        firstRange(containing: address) != nil
    }
}

extension IPRange {
    /// The addresses a federation sender must never connect to unless the operator allows them.
    ///
    /// Synapse's `DEFAULT_IP_RANGE_BLOCKLIST` (`synapse/config/server.py`) plus the
    /// addresses it always adds (`0.0.0.0`, `::`), with these decisions:
    /// - `0.0.0.0/8` ("this network") instead of only `0.0.0.0`, and `240.0.0.0/4`
    ///   (reserved, includes the broadcast address): neither can be a federation peer.
    /// - `::/96`, the deprecated IPv4-compatible addresses (RFC 4291 §2.5.5.1), after the
    ///   more specific `::1/128` and `::/128`; Synapse blocks the compatible forms of its
    ///   IPv4 ranges, no peer uses the others.
    /// - `100::/64`, the discard-only prefix (RFC 6666).
    /// - `::ffff:0:0/96` is not listed: an IPv4-mapped address is checked as its IPv4
    ///   address, so `::ffff:127.0.0.1` is blocked by `127.0.0.0/8` and
    ///   `::ffff:8.8.8.8` is allowed.
    /// - 6to4 (`2002::/16`) and NAT64 (`64:ff9b::/96`) are not listed either; the IPv4
    ///   address they embed is checked against the IPv4 ranges by `blockingRange(for:allowlist:)`.
    ///   Blocking all of `64:ff9b::/96` would cut IPv6-only hosts behind DNS64 off from
    ///   every IPv4-only peer.
    public static let defaultBlocklist = IPRangeSet([
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
        "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
        "::1/128", "::/128", "::/96", "100::/64", "2001:db8::/32", "fc00::/7", "fe80::/10",
        "fec0::/10", "ff00::/8",
    ].map(IPRange.constant))

    /// The default blocklist range that forbids connecting to the address (4 or 16 bytes),
    /// or nil when the address may be used.
    ///
    /// The address is allowed when an allowlist range contains it, or contains the IPv4
    /// address it embeds (IPv4-mapped, 6to4 `2002:AABB:CCDD::/48`, NAT64 `64:ff9b::/96`).
    /// Otherwise it is blocked when a default range contains it or its embedded IPv4 address.
    public static func blockingRange(for address: [UInt8], allowlist: [IPRange]) -> IPRange? {
        precondition(address.count == 4 || address.count == 16,
                     "an IP address has 4 or 16 bytes, got \(address.count)")
        var forms = [address]
        if let embedded = embeddedIPv4(address) {
            forms.append(embedded)
        }
        if allowlist.contains(where: { range in forms.contains(where: range.contains) }) {
            return nil
        }
        for form in forms {
            if let range = defaultBlocklist.firstRange(containing: form) {
                return range
            }
        }
        return nil
    }

    /// `blockingRange(for:allowlist:)` for a textual address.
    public static func blockingRange(for address: String, allowlist: [IPRange]) throws(IPRangeError) -> IPRange? {
        guard let bytes = addressBytes(address) else {
            throw IPRangeError(text: address, expected: .address, reason: "not an IPv4 or IPv6 address")
        }
        return blockingRange(for: bytes, allowlist: allowlist)
    }

    static func embeddedIPv4(_ address: [UInt8]) -> [UInt8]? {
        guard address.count == 16 else { return nil }
        if let mapped = ipv4Mapped(address) {
            return mapped
        }
        if address[0] == 0x20, address[1] == 0x02 {
            return Array(address[2..<6])
        }
        if address[0..<12].elementsEqual([0x00, 0x64, 0xFF, 0x9B, 0, 0, 0, 0, 0, 0, 0, 0]) {
            return Array(address[12..<16])
        }
        return nil
    }

    private static func constant(_ text: String) -> IPRange {
        do {
            return try IPRange(parsing: text)
        } catch {
            preconditionFailure("built-in range \(error)")
        }
    }
}
