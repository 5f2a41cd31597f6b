import NIOCore

/// Why a connection could not be opened or a request did not produce a complete response.
///
/// Every case names the remote address or the limit involved. After any of these the
/// connection is no longer reusable.
public enum HTTPClientError: Error, Sendable, Hashable, CustomStringConvertible {
    /// TCP did not connect within the allowed time.
    case connectTimeout(address: String, timeout: TimeAmount)
    /// The remote host answered the TCP connect with a reset: nothing listens on that port.
    case connectionRefused(address: String)
    /// The remote host reset the connection while it was in use.
    case connectionReset(address: String)
    /// The connection closed before the handshake finished or a complete response was read.
    case connectionClosed(address: String)
    /// Another socket-level failure, with the system's reason.
    case networkFailure(address: String, reason: String)
    /// The TLS handshake did not finish within the allowed time.
    case tlsHandshakeTimeout(address: String, timeout: TimeAmount)
    /// TLS setup, verification or the TLS session failed.
    case tls(TLSError)
    /// No complete response arrived within the allowed time.
    case requestTimeout(method: String, target: String, timeout: TimeAmount)
    /// The response (headers and body) exceeded the caller's limit.
    case responseTooLarge(limit: Int)
    /// The bytes received are not a valid HTTP/1.1 response.
    case malformedResponse(address: String, reason: String)
    /// The request cannot be sent as given.
    case invalidRequest(reason: String)
    /// The connection is closed, failed earlier, or is busy with another request.
    case connectionNotReusable(address: String)
    /// The task waiting for the response was cancelled.
    case cancelled

    public var description: String {
        switch self {
        case .connectTimeout(let address, let timeout):
            return "connecting to \(address) timed out after \(Self.describe(timeout))"
        case .connectionRefused(let address):
            return "connection to \(address) refused"
        case .connectionReset(let address):
            return "connection to \(address) reset by peer"
        case .connectionClosed(let address):
            return "connection to \(address) closed before a complete response"
        case .networkFailure(let address, let reason):
            return "connection to \(address) failed: \(reason)"
        case .tlsHandshakeTimeout(let address, let timeout):
            return "TLS handshake with \(address) timed out after \(Self.describe(timeout))"
        case .tls(let error):
            return error.description
        case .requestTimeout(let method, let target, let timeout):
            return "\(method) \(target) got no complete response within \(Self.describe(timeout))"
        case .responseTooLarge(let limit):
            return "response exceeded the limit of \(limit) bytes"
        case .malformedResponse(let address, let reason):
            return "malformed HTTP response from \(address): \(reason)"
        case .invalidRequest(let reason):
            return "invalid HTTP request: \(reason)"
        case .connectionNotReusable(let address):
            return "connection to \(address) is closed or busy and cannot take a request"
        case .cancelled:
            return "HTTP request cancelled"
        }
    }

    private static func describe(_ timeout: TimeAmount) -> String {
        let nanoseconds = timeout.nanoseconds
        if nanoseconds % 1_000_000_000 == 0 {
            return "\(nanoseconds / 1_000_000_000) s"
        }
        return "\(nanoseconds / 1_000_000) ms"
    }
}
