import NIOCore

extension SocketAddress {
    /// "192.0.2.1:8448" or "[2001:db8::1]:8448", for error messages and logs.
    var hostAndPort: String {
        switch self {
        case .v4:
            return "\(ipAddress ?? "?"):\(port ?? 0)"
        case .v6:
            return "[\(ipAddress ?? "?")]:\(port ?? 0)"
        default:
            return description
        }
    }
}
