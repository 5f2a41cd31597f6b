import Federation
import NIOCore

/// One `GET https://host[:port]/target` that `WellKnownResolver` asks a `WellKnownFetcher` to make.
///
/// The host is both the TLS identity and the `Host` header; the endpoints are where to connect,
/// in order, and have passed the IP blocklist.
public struct WellKnownFetchRequest: Sendable, Equatable, CustomStringConvertible {
    /// The host of the URL: a DNS name or an IP literal.
    public var host: ServerName.Host
    /// The TCP port: 443 for `https://` URLs without a port.
    public var port: Int
    /// The path and query exactly as they go on the request line.
    public var target: String
    /// The addresses to try, in order; the port of each is `port`.
    public var endpoints: [ResolvedFederationAddress.Endpoint]
    /// The largest body accepted; a longer one fails with `bodyTooLarge`.
    public var maxBodyBytes: Int
    /// The longest the whole request may take, connecting included.
    public var timeout: TimeAmount

    public init(host: ServerName.Host, port: Int, target: String, endpoints: [ResolvedFederationAddress.Endpoint],
                maxBodyBytes: Int, timeout: TimeAmount) {
        self.host = host
        self.port = port
        self.target = target
        self.endpoints = endpoints
        self.maxBodyBytes = maxBodyBytes
        self.timeout = timeout
    }

    /// The name the certificate must be valid for: the DNS name (sent as SNI) or the IP address.
    public var certificateName: ResolvedFederationAddress.CertificateName {
        switch host {
        case .dns(let name): .hostname(name)
        case .ipv4(let address), .ipv6(let address): .ipAddress(address)
        }
    }

    /// The URL authority: the host (IPv6 in brackets), with `:port` unless the port is 443.
    public var hostHeader: String {
        port == WellKnownURL.httpsPort ? hostForURL : "\(hostForURL):\(port)"
    }

    /// The host and port, always with the port: `wk.example:443`.
    public var authorityWithPort: String {
        "\(hostForURL):\(port)"
    }

    /// The URL being fetched, for logs and failure reasons.
    public var description: String {
        "https://\(hostHeader)\(target)"
    }

    private var hostForURL: String {
        switch host {
        case .dns(let name): name
        case .ipv4(let address): address
        case .ipv6(let address): "[\(address)]"
        }
    }
}
