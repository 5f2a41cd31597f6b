import Resolver

extension Configuration {
    /// Where a listener accepts connections: a TCP host and port, or a Unix domain socket.
    ///
    /// Written in the configuration as `host:port`, `[ipv6]:port` or `unix:/absolute/path`;
    /// `description` gives that form back, so it round-trips through `init(parsing:)`.
    public enum ListenAddress: Sendable, Hashable, CustomStringConvertible {
        /// A TCP address. `host` is an IPv4 literal, an IPv6 literal without brackets or a
        /// host name; `port` is 0-65535, where 0 lets the kernel choose a free port.
        case tcp(host: String, port: Int)
        /// A Unix domain socket at an absolute path of at most 107 bytes (Linux `sun_path`).
        case unix(path: String)

        /// Parses `127.0.0.1:8009`, `localhost:8009`, `[::1]:8009` or `unix:/run/southbridge/ingest.sock`.
        public init(parsing text: String) throws(ValueError) {
            func invalid(_ reason: String) -> ValueError {
                ValueError(text: text, expected: "listen address", reason: reason)
            }
            if text.hasPrefix("unix:") {
                let path = String(text.dropFirst(5))
                guard path.hasPrefix("/") else { throw invalid("the socket path must be absolute") }
                guard !path.utf8.contains(0) else { throw invalid("the socket path contains a NUL character") }
                guard path.utf8.count <= 107 else { throw invalid("the socket path is longer than 107 bytes") }
                self = .unix(path: path)
                return
            }
            let host: String
            let portText: Substring
            if text.hasPrefix("[") {
                guard let close = text.firstIndex(of: "]") else { throw invalid("the IPv6 literal has no closing ']'") }
                host = String(text[text.index(after: text.startIndex)..<close])
                guard let address = IPRange.addressBytes(host), address.count == 16 else {
                    throw invalid("\(Configuration.quoted(host)) is not an IPv6 address")
                }
                let rest = text[text.index(after: close)...]
                guard rest.first == ":" else { throw invalid("expected ':' and a port after ']'") }
                portText = rest.dropFirst()
            } else {
                guard let colon = text.lastIndex(of: ":") else {
                    throw invalid("expected host:port, [ipv6]:port or unix:/absolute/path")
                }
                host = String(text[..<colon])
                if host.contains(":") {
                    throw invalid("an IPv6 address must be written in brackets, as in [::1]:8009")
                }
                if let reason = Configuration.hostProblem(Substring(host)) {
                    throw invalid(reason)
                }
                portText = text[text.index(after: colon)...]
            }
            guard let port = Configuration.port(portText, in: 0...65535) else {
                throw invalid("the port must be a number from 0 to 65535")
            }
            self = .tcp(host: host, port: port)
        }

        public var description: String {
            switch self {
            case .tcp(let host, let port) where host.contains(":"):
                "[\(host)]:\(port)"
            case .tcp(let host, let port):
                "\(host):\(port)"
            case .unix(let path):
                "unix:\(path)"
            }
        }
    }
}

extension Configuration {
    /// Whether a listen host only accepts connections from this machine.
    static func isLoopbackHost(_ host: String) -> Bool {
        if host == "localhost" { return true }
        guard let address = IPRange.addressBytes(host) else { return false }
        return address.count == 4 ? address[0] == 127 : address == [UInt8](repeating: 0, count: 15) + [1]
    }
}
