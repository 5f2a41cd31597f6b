/// One SRV record (RFC 2782): where a service such as `_matrix-fed._tcp.example.org` runs.
///
/// `target` is lower case without the trailing dot; "." is the RFC's "service decidedly not
/// available here", which `DNSResolver.serviceRecords(_:)` never returns.
public struct SRVRecord: Sendable, Hashable, CustomStringConvertible {
    /// Lower values are tried first.
    public var priority: UInt16
    /// Relative share of connections among records of the same priority.
    public var weight: UInt16
    public var port: UInt16
    public var target: String

    public init(priority: UInt16, weight: UInt16, port: UInt16, target: String) {
        self.priority = priority
        self.weight = weight
        self.port = port
        self.target = target
    }

    public var description: String {
        "\(priority) \(weight) \(port) \(target)"
    }
}
