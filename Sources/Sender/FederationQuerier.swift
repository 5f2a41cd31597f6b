import Federation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Outbox
import Resolver
import Transport

/// One federation request a homeserver asks southbridge to make for it
/// (`POST /_southbridge/v1/query`).
public struct FederationQuery: Sendable {
    public var destination: ServerName
    public var method: String
    /// The path exactly as it goes on the request line, already percent-encoded.
    public var path: String
    /// Query parameters in the order given; a name may repeat (`ver=1&ver=2`).
    public var query: [(name: String, value: String)]
    /// Canonical JSON, or nil for requests without a body.
    public var body: [UInt8]?
    public var timeout: Duration
    /// Send even while the destination is backing off.
    public var ignoreBackoff: Bool

    public init(destination: ServerName, method: String, path: String, query: [(name: String, value: String)],
                body: [UInt8]?, timeout: Duration, ignoreBackoff: Bool) {
        self.destination = destination
        self.method = method
        self.path = path
        self.query = query
        self.body = body
        self.timeout = timeout
        self.ignoreBackoff = ignoreBackoff
    }

    /// `path?query` with the query percent-encoded (RFC 3986 unreserved characters kept).
    public var target: String {
        guard !query.isEmpty else { return path }
        return path + "?" + query.map { "\(Self.encode($0.name))=\(Self.encode($0.value))" }.joined(separator: "&")
    }

    static func encode(_ text: String) -> String {
        var encoded = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                encoded.unicodeScalars.append(UnicodeScalar(byte))
            default:
                let hex = Array("0123456789ABCDEF")
                encoded += "%\(hex[Int(byte >> 4)])\(hex[Int(byte & 0xF)])"
            }
        }
        return encoded
    }
}

/// How a query ended.
public enum FederationQueryResult: Sendable {
    /// The remote answered; its status and body as they came.
    case answered(status: Int, body: [UInt8])
    /// The destination is backing off and the caller did not ask to ignore that.
    case backingOff(retryAtMS: Int64)
    /// No answer within the query's timeout, after short retries on transient errors.
    case failed(reason: String)
}

/// Sends interactive federation requests for the homeserver through the same resolver,
/// pool (ahead of transactions) and signing as transactions, within a bounded time.
///
/// Transient failures (no connection, 5xx, 429) are retried a few times with short,
/// growing pauses (Synapse's short retries: 0.5 s, 1 s, 2 s) as long as the timeout
/// allows; a destination the sender has in backoff fails fast unless the caller asks
/// otherwise. Backoff and time are the sender's (`FederationSender.backoffEnd(of:)`, its clock).
public struct FederationQuerier: Sendable {
    public static let maxAttempts = 4

    private let client: FederationClient
    private let sender: FederationSender
    private let logger: Logger

    public init(client: FederationClient, sender: FederationSender, logger: Logger) {
        self.client = client
        self.sender = sender
        self.logger = logger
    }

    public func send(_ query: FederationQuery) async -> FederationQueryResult {
        if !query.ignoreBackoff, let retryAtMS = await sender.backoffEnd(of: query.destination.description) {
            return .backingOff(retryAtMS: retryAtMS)
        }
        let clock = sender.clock
        let request = FederationRequest(method: query.method, target: query.target, body: query.body)
        let client = self.client
        let destination = query.destination
        let lastFailure = NIOLockedValueBox("no attempt finished")
        let deadlineMS = clock.monotonicMS() + query.timeout.milliseconds
        let outcome = await withDeadline(reachedBy: { try? await clock.sleep(untilMonotonicMS: deadlineMS) }) {
            () async -> FederationQueryResult in
            for attempt in 0..<Self.maxAttempts {
                if attempt > 0 {
                    try? await clock.sleep(untilMonotonicMS: clock.monotonicMS() + Int64(min(500 << (attempt - 1), 2000)))
                    if Task.isCancelled { break }
                }
                do {
                    let response = try await client.send(request, to: destination, class: .interactiveQuery)
                    guard response.statusCode >= 500 || response.statusCode == 429 else {
                        return .answered(status: response.statusCode, body: response.bodyBytes)
                    }
                    lastFailure.withLockedValue { $0 = "HTTP \(response.statusCode)" }
                    if attempt == Self.maxAttempts - 1 { return .answered(status: response.statusCode, body: response.bodyBytes) }
                } catch {
                    let failure = error as? FederationRequestError
                    lastFailure.withLockedValue { $0 = failure?.reason ?? "\(error)" }
                    if failure?.isPermanent == true { break }
                }
            }
            return .failed(reason: lastFailure.withLockedValue { $0 })
        }
        return outcome ?? .failed(reason: "no answer within \(query.timeout); last error: \(lastFailure.withLockedValue { $0 })")
    }
}
