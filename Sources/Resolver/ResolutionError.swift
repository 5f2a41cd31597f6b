/// Why a destination could not be turned into addresses; each case names the input.
public enum ResolutionError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The DNS name does not exist, or has no A/AAAA records.
    case noAddresses(host: String, reason: String)
    /// Every address the name resolved to is in a blocked range.
    case allAddressesBlocked(host: String, address: String, range: String)

    public var description: String {
        switch self {
        case .noAddresses(let host, let reason):
            "cannot resolve \"\(host)\": \(reason)"
        case .allAddressesBlocked(let host, let address, let range):
            "every address of \"\(host)\" is blocked: \(address) is in \(range) (allow it with network.ip_range_allowlist)"
        }
    }
}
