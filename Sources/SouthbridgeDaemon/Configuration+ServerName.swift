import Resolver

extension Configuration {
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
