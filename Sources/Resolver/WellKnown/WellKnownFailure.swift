import Federation
import NIOCore

/// Why `.well-known` discovery gave no delegation: the URL involved and the rule its answer broke,
/// e.g. `https://example.org/.well-known/matrix/server: answered HTTP 404, expected 200`.
public struct WellKnownFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// What was wrong.
    public enum Problem: Sendable, Equatable {
        /// The name asked about is not a DNS name without a port, so it has no `.well-known`.
        case notADNSName
        /// A status other than 200 or a followed redirect.
        case httpStatus(Int)
        /// A redirect status without a `Location` header field.
        case redirectWithoutLocation(status: Int)
        /// A `Location` that cannot be followed (not https, malformed, user information).
        case invalidRedirect(location: String, reason: String)
        /// A redirect back to a URL already requested.
        case redirectLoop(url: String)
        /// More redirects than the limit.
        case tooManyRedirects(limit: Int)
        /// A body longer than the limit.
        case bodyTooLarge(limit: Int)
        case invalidJSON(JSONParseError)
        /// The JSON value is not an object.
        case notAnObject
        /// The object has no `m.server` member.
        case missingServer
        /// `m.server` is not a string.
        case serverNotAString
        /// `m.server` is a string but not a valid server name.
        case invalidServerName(ServerNameError)
        /// No complete answer within the time allowed.
        case timedOut(reason: String)
        /// The host of the URL has no address to connect to.
        case noAddresses(host: String, reason: String)
        /// Every address of the host is in a blocked range; the first one and its range are named.
        case allAddressesBlocked(host: String, address: String, range: String)
        /// Connecting, TLS verification or reading the response failed.
        case connectionFailed(reason: String)
    }

    /// The URL whose answer or request failed; the host name itself for `notADNSName`.
    public var url: String
    public var problem: Problem

    public init(url: String, problem: Problem) {
        self.url = url
        self.problem = problem
    }

    /// Whether the failure says nothing about what the server means to publish (it could not be
    /// asked, or it failed on its side), so a previous valid answer may still be used.
    public var isTemporary: Bool {
        switch problem {
        case .connectionFailed, .timedOut, .noAddresses, .bodyTooLarge: true
        case .httpStatus(let status): (500...599).contains(status)
        default: false
        }
    }

    /// Whether asking again after a short pause may succeed; only tried for names that recently had a valid answer.
    var isRetryable: Bool {
        switch problem {
        case .connectionFailed, .noAddresses: true
        case .httpStatus(let status): (500...599).contains(status)
        default: false
        }
    }

    public var description: String {
        "\(url): \(problemText)"
    }

    private var problemText: String {
        switch problem {
        case .notADNSName:
            "only a DNS name without a port has a .well-known/matrix/server"
        case .httpStatus(let status):
            "answered HTTP \(status), expected 200"
        case .redirectWithoutLocation(let status):
            "answered redirect \(status) without a Location"
        case .invalidRedirect(let location, let reason):
            "redirect to \(location.quotedExcerpt()) refused: \(reason)"
        case .redirectLoop(let url):
            "redirect loop: \(url) was already requested"
        case .tooManyRedirects(let limit):
            "more than \(limit) redirects"
        case .bodyTooLarge(let limit):
            "the body is larger than \(limit) bytes"
        case .invalidJSON(let error):
            "the body is not JSON: \(error)"
        case .notAnObject:
            "the body is JSON but not an object"
        case .missingServer:
            "the JSON object has no \"m.server\""
        case .serverNotAString:
            "\"m.server\" is not a string"
        case .invalidServerName(let error):
            "\"m.server\" is invalid: \(error)"
        case .timedOut(let reason):
            "timed out: \(reason)"
        case .noAddresses(let host, let reason):
            "cannot resolve \"\(host)\": \(reason)"
        case .allAddressesBlocked(let host, let address, let range):
            "every address of \"\(host)\" is blocked: \(address) is in \(range) (allow it with network.ip_range_allowlist)"
        case .connectionFailed(let reason):
            "connection failed: \(reason)"
        }
    }
}
