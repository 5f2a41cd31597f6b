/// Why `DNSResolver` could not answer; each case names the name asked for, and the record
/// type where it matters, e.g. `DNS AAAA query for "example.org" timed out`.
public enum DNSError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The caller's name cannot be put in a DNS query.
    case invalidName(name: String, reason: String)
    /// NXDOMAIN: the name does not exist.
    case noSuchName(name: String)
    /// The name exists but has neither AAAA nor A records.
    case noAddresses(name: String)
    /// No nameserver answered any attempt in time.
    case timeout(name: String, type: DNSRecordType)
    /// The last nameserver asked answered with an error code such as SERVFAIL or REFUSED.
    case serverFailure(name: String, type: DNSRecordType, responseCode: DNSResponseCode)
    /// The last nameserver asked sent an answer that is not valid DNS.
    case malformedResponse(name: String, type: DNSRecordType, reason: String)
    /// The last nameserver asked could not be reached (for example TCP connection refused).
    case networkFailure(name: String, type: DNSRecordType, reason: String)
    /// The CNAME chain is longer than the limit, or loops.
    case tooManyAliases(name: String, type: DNSRecordType, limit: Int)
    /// The name is an alias (CNAME) where an alias is not allowed: an SRV target must be
    /// the owner of its AAAA or A records (RFC 2782).
    case aliasNotAllowed(name: String, target: String)

    public var description: String {
        switch self {
        case .invalidName(let name, let reason):
            "\"\(name)\" is not a valid DNS name: \(reason)"
        case .noSuchName(let name):
            "DNS name \"\(name)\" does not exist (NXDOMAIN)"
        case .noAddresses(let name):
            "DNS name \"\(name)\" has no AAAA or A records"
        case .timeout(let name, let type):
            "DNS \(type) query for \"\(name)\" timed out"
        case .serverFailure(let name, let type, let responseCode):
            "DNS \(type) query for \"\(name)\" failed: the server answered \(responseCode)"
        case .malformedResponse(let name, let type, let reason):
            "DNS \(type) query for \"\(name)\" got an invalid answer: \(reason)"
        case .networkFailure(let name, let type, let reason):
            "DNS \(type) query for \"\(name)\" could not reach a nameserver: \(reason)"
        case .tooManyAliases(let name, let type, let limit):
            "DNS \(type) lookup for \"\(name)\" follows more than \(limit) CNAME records"
        case .aliasNotAllowed(let name, let target):
            "DNS name \"\(name)\" is an alias (CNAME) of \"\(target)\", which an SRV target must not be (RFC 2782)"
        }
    }
}
