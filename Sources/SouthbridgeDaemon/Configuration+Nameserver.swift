import NIOCore
import Resolver

extension Configuration {
    /// A DNS server to ask instead of those in /etc/resolv.conf: an IP address and a port.
    ///
    /// Written as `ip:port` or `[ipv6]:port`; `description` gives the canonical form back,
    /// so it round-trips through `init(parsing:)`.
    public struct Nameserver: Sendable, Hashable, CustomStringConvertible {
        /// The server's address: 4 bytes for IPv4, 16 for IPv6.
        public var address: [UInt8]
        /// The UDP/TCP port, 1-65535.
        public var port: Int

        /// Parses `192.0.2.53:53` or `[2001:db8::53]:53`; the port is required.
        public init(parsing text: String) throws(ValueError) {
            func invalid(_ reason: String) -> ValueError {
                ValueError(text: text, expected: "nameserver address", reason: reason)
            }
            let host: Substring
            let portText: Substring
            if text.hasPrefix("[") {
                guard let close = text.firstIndex(of: "]") else { throw invalid("the IPv6 literal has no closing ']'") }
                host = text[text.index(after: text.startIndex)..<close]
                let rest = text[text.index(after: close)...]
                guard rest.first == ":" else { throw invalid("expected ':' and a port after ']'") }
                portText = rest.dropFirst()
                guard let address = IPRange.addressBytes(String(host)), address.count == 16 else {
                    throw invalid("\(Configuration.quoted(String(host))) is not an IPv6 address")
                }
                self.address = address
            } else {
                guard let colon = text.lastIndex(of: ":") else { throw invalid("expected ip:port or [ipv6]:port") }
                host = text[..<colon]
                if host.contains(":") {
                    throw invalid("an IPv6 address must be written in brackets, as in [::1]:53")
                }
                guard let address = IPRange.addressBytes(String(host)), address.count == 4 else {
                    throw invalid("\(Configuration.quoted(String(host))) is not an IPv4 address")
                }
                portText = text[text.index(after: colon)...]
                self.address = address
            }
            guard let port = Configuration.port(portText, in: 1...65535) else {
                throw invalid("the port must be a number from 1 to 65535")
            }
            self.port = port
        }

        public var description: String {
            let host = IPRange.addressDescription(address)
            return address.count == 16 ? "[\(host)]:\(port)" : "\(host):\(port)"
        }
    }
}

extension Configuration.Nameserver {
    /// The address to send DNS queries to.
    func socketAddress() throws -> SocketAddress {
        try SocketAddress(ipAddress: IPRange.addressDescription(address), port: port)
    }
}
