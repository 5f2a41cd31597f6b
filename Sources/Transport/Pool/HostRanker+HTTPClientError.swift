import NIOCore

extension HostRanker.Outcome {
    /// A complete answer: a 5xx says the server is in trouble, any other status that it works.
    init(statusCode: Int, latency: TimeAmount) {
        self = statusCode >= 500 ? .failure : .success(latency: latency)
    }

    /// A failed exchange, or nil when the failure says nothing about the host (the request
    /// was cancelled or invalid, or the connection was already unusable).
    init?(_ error: HTTPClientError) {
        switch error {
        case .connectTimeout, .tlsHandshakeTimeout, .requestTimeout:
            self = .timeout
        case .cancelled, .invalidRequest, .connectionNotReusable:
            return nil
        case .connectionRefused, .connectionReset, .connectionClosed, .networkFailure, .tls, .responseTooLarge,
             .malformedResponse:
            self = .failure
        }
    }
}
