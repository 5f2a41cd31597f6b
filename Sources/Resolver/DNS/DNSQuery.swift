/// One DNS question as sent by southbridge: a random ID, recursion desired, one question of
/// class IN and, unless disabled, an EDNS0 OPT record offering a 1232-byte UDP payload.
///
/// The name is stored in canonical form (lower case, no trailing dot), which is also how
/// `DNSResponse` reports names, so checking that an answer matches is a plain comparison.
public struct DNSQuery: Sendable, Hashable {
    /// The UDP payload size advertised with EDNS0, the DNS Flag Day 2020 value that avoids
    /// IP fragmentation.
    public static let ednsUDPPayloadSize: UInt16 = 1232

    public let id: UInt16
    public let name: String
    public let type: DNSRecordType
    public let usesEDNS: Bool

    /// A query with a fresh ID from the system's cryptographic random number generator.
    public init(name: String, type: DNSRecordType, usesEDNS: Bool = true) throws(DNSError) {
        self.init(normalizedName: try DNSName.normalized(name), type: type, usesEDNS: usesEDNS)
    }

    public init(id: UInt16, name: String, type: DNSRecordType, usesEDNS: Bool = true) throws(DNSError) {
        self.init(id: id, normalizedName: try DNSName.normalized(name), type: type, usesEDNS: usesEDNS)
    }

    /// A query with a fresh random ID for a name already in canonical form.
    init(normalizedName: String, type: DNSRecordType, usesEDNS: Bool) {
        var generator = SystemRandomNumberGenerator()
        self.init(id: UInt16.random(in: .min ... .max, using: &generator), normalizedName: normalizedName,
                  type: type, usesEDNS: usesEDNS)
    }

    private init(id: UInt16, normalizedName: String, type: DNSRecordType, usesEDNS: Bool) {
        self.id = id
        self.name = normalizedName
        self.type = type
        self.usesEDNS = usesEDNS
    }

    /// The query in wire format, ready for a UDP datagram (TCP adds a 2-byte length first).
    public var message: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(12 + name.utf8.count + 2 + 4 + 11)
        func append(_ value: UInt16) {
            bytes.append(UInt8(value >> 8))
            bytes.append(UInt8(value & 0xFF))
        }
        append(id)
        append(0x0100)  // a standard query with RD set
        append(1)       // QDCOUNT
        append(0)       // ANCOUNT
        append(0)       // NSCOUNT
        append(usesEDNS ? 1 : 0)
        bytes.append(contentsOf: DNSName.wireFormat(name))
        append(type.rawValue)
        append(1)       // class IN
        if usesEDNS {
            bytes.append(0)  // the root name
            append(DNSRecordType.opt.rawValue)
            append(Self.ednsUDPPayloadSize)
            append(0)   // extended RCODE and version 0
            append(0)   // no flags (DO clear)
            append(0)   // no options
        }
        return bytes
    }
}
