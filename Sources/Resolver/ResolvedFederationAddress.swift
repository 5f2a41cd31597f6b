import Federation

/// Where and how to reach one destination: the answer of server discovery.
///
/// The `Host` header and the name the certificate must match come from the server name
/// (or its delegation), never from an SRV target; the addresses are tried in order.
public struct ResolvedFederationAddress: Sendable, Equatable {
    /// The name the certificate must be valid for, and whether SNI is sent.
    public enum CertificateName: Sendable, Equatable, CustomStringConvertible {
        /// A DNS name: sent as SNI and matched against the certificate's DNS names.
        case hostname(String)
        /// An IP literal (without brackets): no SNI, matched against the certificate's IP addresses.
        case ipAddress(String)

        public var description: String {
            switch self {
            case .hostname(let name): name
            case .ipAddress(let address): address
            }
        }
    }

    /// One address to connect to.
    public struct Endpoint: Sendable, Equatable, CustomStringConvertible {
        /// A numeric IPv4 or IPv6 address (no brackets).
        public var ipAddress: String
        public var port: Int

        public init(ipAddress: String, port: Int) {
            self.ipAddress = ipAddress
            self.port = port
        }

        public var description: String {
            ipAddress.contains(":") ? "[\(ipAddress)]:\(port)" : "\(ipAddress):\(port)"
        }
    }

    /// The destination as the homeserver named it; used in X-Matrix, never changed by delegation.
    public var destination: ServerName
    public var hostHeader: String
    public var certificateName: CertificateName
    public var endpoints: [Endpoint]

    /// Which idle connection may serve this address: the same TLS identity at the same
    /// addresses. Never the destination alone: a `.well-known` fetch (port 443) and
    /// federation traffic (port 8448) to one name must not share a connection.
    public var connectionKey: String {
        "\(certificateName) \(endpoints.map(\.description).joined(separator: ","))"
    }

    public init(destination: ServerName, hostHeader: String, certificateName: CertificateName, endpoints: [Endpoint]) {
        self.destination = destination
        self.hostHeader = hostHeader
        self.certificateName = certificateName
        self.endpoints = endpoints
    }
}
