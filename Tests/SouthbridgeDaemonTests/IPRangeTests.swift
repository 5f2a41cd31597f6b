import Resolver
import Testing

struct IPRangeTests {
    static let validRanges: [(String, String)] = [
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("192.0.2.1", "192.0.2.1/32"),
        ("192.0.2.1/32", "192.0.2.1/32"),
        ("::1", "::1/128"),
        ("::1/128", "::1/128"),
        ("::/0", "::/0"),
        ("::", "::/128"),
        ("FE80::/10", "fe80::/10"),
        ("2001:0db8:0000:0000:0000:0000:0000:0000/32", "2001:db8::/32"),
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1/128"),
        ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1/128"),
        ("1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0/128"),
        ("::ffff:0:0/96", "::ffff:0.0.0.0/96"),
        ("::ffff:192.0.2.1", "::ffff:192.0.2.1/128"),
        ("64:ff9b::192.0.2.1", "64:ff9b::c000:201/128"),
        ("1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304/128"),
    ]

    @Test(arguments: validRanges)
    func parsesAndDescribes(text: String, description: String) throws {
        #expect(try IPRange(parsing: text).description == description)
    }

    static let invalidRanges: [(String, String)] = [
        ("10.0.0.0/33", "\"10.0.0.0/33\" is not a valid CIDR range: prefix length must be 0-32"),
        ("::/129", "\"::/129\" is not a valid CIDR range: prefix length must be 0-128"),
        ("10.0.0.0/", "\"10.0.0.0/\" is not a valid CIDR range: prefix length must be 0-32"),
        ("10.0.0.0/08", "\"10.0.0.0/08\" is not a valid CIDR range: prefix length must be 0-32"),
        ("10.0.0.0/-1", "\"10.0.0.0/-1\" is not a valid CIDR range: prefix length must be 0-32"),
        ("10.0.0.1/8", "\"10.0.0.1/8\" is not a valid CIDR range: host bits are set; the network is 10.0.0.0/8"),
        ("fe80::1/10", "\"fe80::1/10\" is not a valid CIDR range: host bits are set; the network is fe80::/10"),
        ("", "\"\" is not a valid CIDR range: \"\" is not an IPv4 or IPv6 address"),
        ("/8", "\"/8\" is not a valid CIDR range: \"\" is not an IPv4 or IPv6 address"),
        ("10.0.0/8", "\"10.0.0/8\" is not a valid CIDR range: \"10.0.0\" is not an IPv4 or IPv6 address"),
        ("10.0.0.256", "\"10.0.0.256\" is not a valid CIDR range: \"10.0.0.256\" is not an IPv4 or IPv6 address"),
        ("010.0.0.1", "\"010.0.0.1\" is not a valid CIDR range: \"010.0.0.1\" is not an IPv4 or IPv6 address"),
        ("10.0.0.0.0", "\"10.0.0.0.0\" is not a valid CIDR range: \"10.0.0.0.0\" is not an IPv4 or IPv6 address"),
        ("localhost", "\"localhost\" is not a valid CIDR range: \"localhost\" is not an IPv4 or IPv6 address"),
        ("1::2::3", "\"1::2::3\" is not a valid CIDR range: \"1::2::3\" is not an IPv4 or IPv6 address"),
        (":1", "\":1\" is not a valid CIDR range: \":1\" is not an IPv4 or IPv6 address"),
        ("1:", "\"1:\" is not a valid CIDR range: \"1:\" is not an IPv4 or IPv6 address"),
        (":::", "\":::\" is not a valid CIDR range: \":::\" is not an IPv4 or IPv6 address"),
        ("12345::", "\"12345::\" is not a valid CIDR range: \"12345::\" is not an IPv4 or IPv6 address"),
        ("1:2:3:4:5:6:7:8:9", "\"1:2:3:4:5:6:7:8:9\" is not a valid CIDR range: \"1:2:3:4:5:6:7:8:9\" is not an IPv4 or IPv6 address"),
        ("1:2:3:4:5:6:7", "\"1:2:3:4:5:6:7\" is not a valid CIDR range: \"1:2:3:4:5:6:7\" is not an IPv4 or IPv6 address"),
        ("1:2:3:4:5:6:7::8", "\"1:2:3:4:5:6:7::8\" is not a valid CIDR range: \"1:2:3:4:5:6:7::8\" is not an IPv4 or IPv6 address"),
        ("::1.2.3", "\"::1.2.3\" is not a valid CIDR range: \"::1.2.3\" is not an IPv4 or IPv6 address"),
        ("::1.2.3.4:5", "\"::1.2.3.4:5\" is not a valid CIDR range: \"::1.2.3.4:5\" is not an IPv4 or IPv6 address"),
        ("fe80::1%eth0", "\"fe80::1%eth0\" is not a valid CIDR range: zone indices (%...) are not allowed"),
    ]

    @Test(arguments: invalidRanges)
    func rejects(text: String, description: String) {
        #expect(throws: IPRangeError.self) { try IPRange(parsing: text) }
        do throws(IPRangeError) {
            _ = try IPRange(parsing: text)
        } catch {
            #expect(error.description == description)
        }
    }

    static let membership: [(range: String, address: String, contained: Bool)] = [
        ("10.0.0.0/8", "10.0.0.0", true),
        ("10.0.0.0/8", "10.255.255.255", true),
        ("10.0.0.0/8", "11.0.0.0", false),
        ("10.0.0.0/8", "9.255.255.255", false),
        ("100.64.0.0/10", "100.127.255.255", true),
        ("100.64.0.0/10", "100.128.0.0", false),
        ("0.0.0.0/0", "203.0.113.9", true),
        ("0.0.0.0/0", "2001:db8::1", false),
        ("192.0.2.1", "192.0.2.1", true),
        ("192.0.2.1", "192.0.2.2", false),
        ("10.0.0.0/8", "::ffff:10.1.2.3", true),
        ("10.0.0.0/8", "::ffff:11.1.2.3", false),
        ("10.0.0.0/8", "::10.1.2.3", false),
        ("::ffff:10.0.0.0/104", "10.1.2.3", true),
        ("::ffff:10.0.0.0/104", "::ffff:10.1.2.3", true),
        ("fe80::/10", "fe80::1", true),
        ("fe80::/10", "febf:ffff::1", true),
        ("fe80::/10", "fec0::1", false),
        ("::/0", "10.0.0.1", true),
        ("::1/128", "::1", true),
        ("::1/128", "::2", false),
        ("fc00::/7", "fdab:cdef::1", true),
        ("10.0.0.0/8", "not an address", false),
    ]

    @Test(arguments: membership)
    func contains(range: String, address: String, contained: Bool) throws {
        #expect(try IPRange(parsing: range).contains(address) == contained)
    }

    @Test func containsAddressBytes() throws {
        let range = try IPRange(parsing: "192.168.0.0/16")
        #expect(range.contains([192, 168, 7, 9]))
        #expect(!range.contains([192, 169, 0, 0]))
        #expect(!range.contains([192, 168, 0]))
        #expect(range.isIPv4)
        #expect(range.network == [192, 168, 0, 0])
        #expect(range.prefixLength == 16)
    }

    @Test func equalRangesCoverTheSameAddresses() throws {
        #expect(try IPRange(parsing: "2001:DB8::/32") == IPRange(parsing: "2001:0db8:0::/32"))
        #expect(try IPRange(parsing: "10.0.0.0/8") != IPRange(parsing: "10.0.0.0/9"))
    }

    static let addressDescriptions: [(String, String)] = [
        ("0:0:0:0:0:0:0:0", "::"),
        ("0:0:0:0:0:0:0:1", "::1"),
        ("1:0:0:0:0:0:0:0", "1::"),
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),
        ("2001:db8:0:1:0:1:0:1", "2001:db8:0:1:0:1:0:1"),
        ("::FFFF:1.2.3.4", "::ffff:1.2.3.4"),
        ("255.255.255.255", "255.255.255.255"),
    ]

    @Test(arguments: addressDescriptions)
    func describesAddressesCanonically(text: String, description: String) throws {
        let bytes = try #require(IPRange.addressBytes(text))
        #expect(IPRange.addressDescription(bytes) == description)
    }
}

struct IPRangeBlocklistTests {
    static let blocked: [(address: String, range: String)] = [
        ("127.0.0.1", "127.0.0.0/8"),
        ("10.1.2.3", "10.0.0.0/8"),
        ("172.16.0.1", "172.16.0.0/12"),
        ("172.31.255.255", "172.16.0.0/12"),
        ("192.168.1.1", "192.168.0.0/16"),
        ("100.64.0.1", "100.64.0.0/10"),
        ("192.0.0.8", "192.0.0.0/24"),
        ("169.254.169.254", "169.254.0.0/16"),
        ("192.88.99.1", "192.88.99.0/24"),
        ("198.19.0.1", "198.18.0.0/15"),
        ("192.0.2.1", "192.0.2.0/24"),
        ("198.51.100.1", "198.51.100.0/24"),
        ("203.0.113.1", "203.0.113.0/24"),
        ("224.0.0.251", "224.0.0.0/4"),
        ("239.255.255.250", "224.0.0.0/4"),
        ("0.0.0.0", "0.0.0.0/8"),
        ("255.255.255.255", "240.0.0.0/4"),
        ("::1", "::1/128"),
        ("::", "::/128"),
        ("::127.0.0.1", "::/96"),
        ("fe80::1", "fe80::/10"),
        ("fd00::1", "fc00::/7"),
        ("fec0::1", "fec0::/10"),
        ("ff02::1", "ff00::/8"),
        ("2001:db8::1", "2001:db8::/32"),
        ("100::1", "100::/64"),
        ("::ffff:127.0.0.1", "127.0.0.0/8"),
        ("::ffff:192.168.0.1", "192.168.0.0/16"),
        ("2002:0a00:0001::1", "10.0.0.0/8"),
        ("2002:7f00:0001::", "127.0.0.0/8"),
        ("64:ff9b::10.0.0.1", "10.0.0.0/8"),
        ("64:ff9b::169.254.169.254", "169.254.0.0/16"),
    ]

    @Test(arguments: blocked)
    func blocksPrivateAndReservedAddresses(address: String, range: String) throws {
        #expect(try IPRange.blockingRange(for: address, allowlist: [])?.description == range)
    }

    static let allowed = [
        "8.8.8.8", "1.1.1.1", "100.63.255.255", "100.128.0.0", "172.15.255.255", "172.32.0.0",
        "192.169.0.0", "223.255.255.255", "2001:4860:4860::8888", "2606:4700::1111",
        "::ffff:8.8.8.8", "2002:0808:0808::1", "64:ff9b::8.8.8.8", "2001:db9::1",
    ]

    @Test(arguments: allowed)
    func allowsPublicAddresses(address: String) throws {
        #expect(try IPRange.blockingRange(for: address, allowlist: []) == nil)
    }

    @Test func allowlistOverridesTheBlocklist() throws {
        let allowlist = [try IPRange(parsing: "192.168.1.0/24"), try IPRange(parsing: "fd00::/8")]
        #expect(try IPRange.blockingRange(for: "192.168.1.20", allowlist: allowlist) == nil)
        #expect(try IPRange.blockingRange(for: "::ffff:192.168.1.20", allowlist: allowlist) == nil)
        #expect(try IPRange.blockingRange(for: "2002:c0a8:0114::1", allowlist: allowlist) == nil)
        #expect(try IPRange.blockingRange(for: "fd12::1", allowlist: allowlist) == nil)
        #expect(try IPRange.blockingRange(for: "192.168.2.20", allowlist: allowlist)?.description == "192.168.0.0/16")
        #expect(try IPRange.blockingRange(for: "fc00::1", allowlist: allowlist)?.description == "fc00::/7")
    }

    @Test func blockingRangeTakesBytes() {
        #expect(IPRange.blockingRange(for: [127, 0, 0, 1], allowlist: [])?.description == "127.0.0.0/8")
        #expect(IPRange.blockingRange(for: [8, 8, 4, 4], allowlist: []) == nil)
    }

    @Test func rejectsTextThatIsNotAnAddress() {
        #expect(throws: IPRangeError(text: "example.org", expected: .address, reason: "not an IPv4 or IPv6 address")) {
            try IPRange.blockingRange(for: "example.org", allowlist: [])
        }
    }

    @Test func defaultBlocklistHasNoDuplicates() {
        let ranges = IPRange.defaultBlocklist.ranges
        #expect(Set(ranges).count == ranges.count)
    }
}
