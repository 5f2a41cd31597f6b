import COpenSSL

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

/// The user inbound event `OpenSSLHandler` fires once the handshake has succeeded and the peer was verified.
public struct TLSHandshakeCompleted: Sendable, Hashable {
    /// The ALPN protocol both sides agreed on, or nil when the peer did not negotiate one.
    public var negotiatedProtocol: String?
    /// Whether an earlier session was resumed, which skips the certificate exchange and its CPU cost.
    public var sessionReused: Bool
    /// The protocol version in use, as OpenSSL names it ("TLSv1.3").
    public var protocolVersion: String

    public init(negotiatedProtocol: String?, sessionReused: Bool, protocolVersion: String) {
        self.negotiatedProtocol = negotiatedProtocol
        self.sessionReused = sessionReused
        self.protocolVersion = protocolVersion
    }
}
