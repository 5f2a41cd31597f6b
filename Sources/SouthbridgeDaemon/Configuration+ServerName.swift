import Resolver

extension Configuration {
    /// Checks a Matrix server name, `hostname[:port]` where the hostname is a DNS name, an
    /// IPv4 literal or a bracketed IPv6 literal and the port is 1-65535 (spec appendix
    /// "Server Name"); returns why the name is invalid, or nil when it is valid.
    static func validateServerName(_ name: String) -> String? {
        guard !name.isEmpty else { return "it is empty" }
        let portText: Substring?
        if name.hasPrefix("[") {
            guard let close = name.firstIndex(of: "]") else {
                return "the IPv6 literal has no closing ']'"
            }
            let literal = name[name.index(after: name.startIndex)..<close]
            guard let address = IPRange.addressBytes(String(literal)), address.count == 16,
                  !literal.contains("%")
            else {
                return "\(quoted(String(literal))) is not an IPv6 address"
            }
            let rest = name[name.index(after: close)...]
            if rest.isEmpty {
                portText = nil
            } else {
                guard rest.first == ":" else { return "expected ':' and a port after ']'" }
                portText = rest.dropFirst()
            }
        } else {
            let host: Substring
            if let colon = name.lastIndex(of: ":") {
                host = name[..<colon]
                portText = name[name.index(after: colon)...]
            } else {
                host = Substring(name)
                portText = nil
            }
            if host.contains(":") {
                return "an IPv6 address must be written in brackets, as in [::1]"
            }
            if let reason = hostProblem(host) {
                return reason
            }
        }
        if let portText, port(portText, in: 1...65535) == nil {
            return "the port must be a number from 1 to 65535"
        }
        return nil
    }

    /// Why a host that is not bracketed is neither an IPv4 literal nor a DNS name, or nil.
    static func hostProblem(_ host: Substring) -> String? {
        guard !host.isEmpty else { return "the host name is empty" }
        guard host.utf8.count <= 255 else { return "the host name is longer than 255 characters" }
        if host.utf8.allSatisfy({ $0 == UInt8(ascii: ".") || ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9")) }) {
            // Only digits and dots: it reads as an IPv4 literal, so it must be a valid one.
            return IPRange.addressBytes(String(host))?.count == 4 ? nil : "\(quoted(String(host))) is not an IPv4 address"
        }
        for label in host.split(separator: ".", omittingEmptySubsequences: false) {
            guard !label.isEmpty else { return "the host name has an empty label" }
            guard label.utf8.count <= 63 else { return "the host name has a label longer than 63 characters" }
            if let bad = label.unicodeScalars.first(where: { !isHostCharacter($0) }) {
                return "\(quoted(String(bad))) is not allowed in a host name"
            }
        }
        return nil
    }

    private static func isHostCharacter(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "a"..."z", "A"..."Z", "0"..."9", "-": true
        default: false
        }
    }

    /// The port written as 1-5 decimal digits, if it lies in the range.
    static func port(_ text: Substring, in range: ClosedRange<Int>) -> Int? {
        guard (1...5).contains(text.utf8.count),
              text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
              let value = Int(text), range.contains(value)
        else { return nil }
        return value
    }
}
