/// A stream a follower can `REPLICATE`: rows in token order, resumable from any token still held.
public enum ReplicationStream: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Every unit the Outbox stores (PDUs and persistent EDUs); token = stream ordering.
    case federation
    /// Every state change of a destination; token = change id, kept across restarts.
    case destinations

    public var description: String { rawValue }

    /// The names, as an error lists them.
    static let names = allCases.map(\.rawValue).joined(separator: ", ")
}

/// Where a follower asks a stream to start: after a token it holds, or at the current position.
public enum ReplicationToken: Sendable, Hashable, CustomStringConvertible {
    case now
    case after(Int64)

    public var description: String {
        switch self {
        case .now: "NOW"
        case .after(let token): "\(token)"
        }
    }
}
