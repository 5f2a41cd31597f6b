/// Why a `WellKnownFetcher` got no complete response; the description names what failed.
public enum WellKnownFetchError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Connecting, the TLS handshake or the response did not finish in time.
    case timedOut(reason: String)
    /// The body is longer than the request's `maxBodyBytes`.
    case bodyTooLarge(limit: Int)
    /// No connection could be made or verified, or it broke before a complete response.
    case connectionFailed(reason: String)

    public var description: String {
        switch self {
        case .timedOut(let reason): "timed out: \(reason)"
        case .bodyTooLarge(let limit): "the body is larger than \(limit) bytes"
        case .connectionFailed(let reason): "connection failed: \(reason)"
        }
    }
}
