import COpenSSL

/// A TLS protocol version that a context may be limited to.
public enum TLSVersion: Sendable, Hashable, CustomStringConvertible {
    case tls12
    case tls13

    var openSSLValue: Int32 {
        switch self {
        case .tls12: return TLS1_2_VERSION
        case .tls13: return TLS1_3_VERSION
        }
    }

    public var description: String {
        switch self {
        case .tls12: return "TLS 1.2"
        case .tls13: return "TLS 1.3"
        }
    }
}
