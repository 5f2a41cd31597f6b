/// Why a destination could not be turned into addresses; each case names the host.
public enum ResolutionError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The DNS name does not exist (NXDOMAIN).
    case noSuchName(host: String)
    /// The name exists but has no A or AAAA records.
    case noAddresses(host: String, reason: String)
    /// Every address the name resolved to is in a blocked range.
    case allAddressesBlocked(host: String, address: String, range: String)
    /// No nameserver answered in time.
    case timeout(host: String, reason: String)
    /// The nameservers failed in another way (SERVFAIL, malformed answers, unreachable).
    case lookupFailed(host: String, reason: String)
    /// An SRV record's target is an alias (CNAME), which RFC 2782 forbids.
    case unusableServiceTarget(host: String, reason: String)

    init(_ error: DNSError, host: String) {
        switch error {
        case .noSuchName: self = .noSuchName(host: host)
        case .noAddresses: self = .noAddresses(host: host, reason: error.description)
        case .timeout: self = .timeout(host: host, reason: error.description)
        case .aliasNotAllowed: self = .unusableServiceTarget(host: host, reason: error.description)
        default: self = .lookupFailed(host: host, reason: error.description)
        }
    }

    public var description: String {
        switch self {
        case .noSuchName(let host):
            "cannot resolve \"\(host)\": no such name"
        case .noAddresses(let host, let reason):
            "cannot resolve \"\(host)\": \(reason)"
        case .allAddressesBlocked(let host, let address, let range):
            "every address of \"\(host)\" is blocked: \(address) is in \(range) (allow it with network.ip_range_allowlist)"
        case .timeout(let host, let reason):
            "cannot resolve \"\(host)\": \(reason)"
        case .lookupFailed(let host, let reason):
            "cannot resolve \"\(host)\": \(reason)"
        case .unusableServiceTarget(let host, let reason):
            "cannot use SRV target \"\(host)\": \(reason)"
        }
    }
}
