import Federation

/// Which destinations `GET /_southbridge/v1/destinations` lists.
public enum DestinationListFilter: String, Sendable, CaseIterable {
    case all
    /// Only destinations in backoff.
    case backoff
}

/// What the destinations admin endpoints need from the daemon; the answers are the JSON
/// bodies, so the ingest target stays free of sender and outbox internals.
public protocol DestinationAdministration: Sendable {
    /// `{"destinations":[…],"next_token":"…"?}`, sorted by name, at most `limit` entries after `from`.
    func list(filter: DestinationListFilter, from: String, limit: Int) async throws -> JSONValue
    /// One destination's state, or nil when southbridge has never sent to it.
    func detail(of name: String) async throws -> JSONValue?
    /// Clears the backoff and tries the destination now; false when it is unknown.
    func resetBackoffAndWake(_ name: String) async throws -> Bool
}
