/// Matrix user IDs (`@localpart:server.name`).
public enum UserID {
    /// The server part of a user ID (`@alice:example.org` → `example.org`), or nil when the
    /// ID has no colon or nothing after it. A localpart cannot contain a colon, so the first
    /// one separates them.
    public static func serverName(of userID: String) -> String? {
        guard let colon = userID.firstIndex(of: ":") else { return nil }
        let server = userID[userID.index(after: colon)...]
        return server.isEmpty ? nil : String(server)
    }
}
