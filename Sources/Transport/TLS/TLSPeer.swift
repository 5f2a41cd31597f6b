/// The identity a TLS client expects the server's certificate to prove.
///
/// `.hostname` sends the name as SNI and requires a matching DNS subjectAltName;
/// `.ipAddress` sends no SNI and requires a matching IP subjectAltName.
public enum TLSPeer: Sendable, Hashable, CustomStringConvertible {
    case hostname(String)
    case ipAddress(String)

    public var description: String {
        switch self {
        case .hostname(let name): return name
        case .ipAddress(let address): return address
        }
    }

    /// The key under which sessions with this peer are cached; names and addresses never share a key.
    var sessionCacheKey: String {
        switch self {
        case .hostname(let name): return "dns:" + name.lowercased()
        case .ipAddress(let address): return "ip:" + address
        }
    }
}
