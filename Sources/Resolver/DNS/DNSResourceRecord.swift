/// One resource record of a DNS response that southbridge understands (class IN only).
public struct DNSResourceRecord: Sendable, Hashable {
    /// The owner name, lower case, without the trailing dot.
    public var name: String
    /// Seconds the record may be cached; values with the top bit set count as 0 (RFC 2181 §8).
    public var ttl: UInt32
    public var data: DNSRecordData

    public init(name: String, ttl: UInt32, data: DNSRecordData) {
        self.name = name
        self.ttl = ttl
        self.data = data
    }
}

/// The data of a record type southbridge reads; other types are skipped while decoding.
public enum DNSRecordData: Sendable, Hashable {
    /// An IPv4 address, 4 bytes.
    case a([UInt8])
    /// An IPv6 address, 16 bytes.
    case aaaa([UInt8])
    /// The canonical name the owner is an alias of.
    case cname(String)
    case srv(SRVRecord)
    case soa(DNSStartOfAuthority)

    public var type: DNSRecordType {
        switch self {
        case .a: .a
        case .aaaa: .aaaa
        case .cname: .cname
        case .srv: .srv
        case .soa: .soa
        }
    }
}

/// An SOA record (RFC 1035 §3.3.13); in the authority section of a negative answer its
/// MINIMUM field bounds how long the "no such name / no data" may be cached (RFC 2308).
public struct DNSStartOfAuthority: Sendable, Hashable {
    public var primaryNameServer: String
    public var responsibleMailbox: String
    public var serial: UInt32
    public var refresh: UInt32
    public var retry: UInt32
    public var expire: UInt32
    public var minimum: UInt32

    public init(primaryNameServer: String, responsibleMailbox: String, serial: UInt32,
                refresh: UInt32, retry: UInt32, expire: UInt32, minimum: UInt32) {
        self.primaryNameServer = primaryNameServer
        self.responsibleMailbox = responsibleMailbox
        self.serial = serial
        self.refresh = refresh
        self.retry = retry
        self.expire = expire
        self.minimum = minimum
    }
}
