import Transport

/// What one `/send` attempt means for the destination: the one place that decides which
/// answers count as failures.
///
/// - 200: delivered.
/// - 400 and 413: the receiver refuses this body and always will; retrying the same bytes
///   cannot help, so the transaction is split, and a single unit it still refuses is
///   skipped with an error in the log (`rejected`).
/// - Everything else is a failure that backs the destination off: no answer at all (DNS,
///   connect, TLS, timeout, a malformed or oversized response), 5xx, 429, 401 (the receiver
///   cannot fetch our key yet), 403, 404, 3xx and any other status. This is Synapse's
///   `backoff_on_all_error_codes` for `/send`, minus the two statuses that say the body
///   itself is at fault.
/// - A request southbridge's own limits held back (it waited too long for a pool slot, or
///   its connection attempt was given up so another destination could have the handshake
///   turn) is `deferred`: the remote said nothing, so its retry state is not touched and
///   the same transaction is tried again shortly. So is one cancelled because southbridge is
///   stopping: it is sent again after the next start.
public enum TransactionOutcome: Sendable, Equatable {
    case delivered
    case rejected(reason: String)
    case failed(reason: String)
    case deferred(reason: String)

    /// The outcome of an HTTP answer.
    public static func classify(statusCode: Int, body: [UInt8]) -> TransactionOutcome {
        switch statusCode {
        case 200:
            return .delivered
        case 400, 413:
            return .rejected(reason: describe(statusCode, body))
        default:
            return .failed(reason: describe(statusCode, body))
        }
    }

    /// The outcome of a request that got no complete answer.
    public static func classify(error: any Error) -> TransactionOutcome {
        if let error = error as? FederationRequestError, error.isLocalLimit { return .deferred(reason: "\(error)") }
        if error is CancellationError { return .deferred(reason: "cancelled: southbridge is stopping") }
        return .failed(reason: "\(error)")
    }

    private static func describe(_ statusCode: Int, _ body: [UInt8]) -> String {
        "HTTP \(statusCode): \(String(decoding: body.prefix(200), as: UTF8.self))"
    }
}
