import Federation
import Ingest
import Sender

/// Turns `POST /_southbridge/v1/query` into a signed federation request through the
/// sender's `FederationQuerier`, and its outcome into the answer for the homeserver:
/// the remote's status and body as they came, or a Matrix-style error of southbridge's own.
struct QueryForwarder: QueryForwarding {
    let querier: FederationQuerier

    func forward(_ query: ForwardedQuery) async -> IngestResponse {
        guard let destination = try? ServerName(query.destination) else {
            return IngestResponse(IngestError(status: 400, errcode: "M_INVALID_PARAM", "destination: not a server name"))
        }
        let result = await querier.send(FederationQuery(
            destination: destination, method: query.method, path: query.path, query: query.query,
            body: query.body.map { CanonicalJSON.encode($0) }, timeout: .milliseconds(query.timeoutMS),
            ignoreBackoff: query.ignoreBackoff))
        switch result {
        case .answered(let status, let body):
            return IngestResponse(status: status, body: body)
        case .backingOff(let retryAtMS):
            return IngestResponse(status: 503, body: CanonicalJSON.encode([
                "errcode": "M_UNKNOWN",
                "error": .string("\(query.destination) is backing off after failures; send with \"ignore_backoff\": true to try anyway"),
                "retry_at_ms": .integer(retryAtMS),
            ]))
        case .failed(let reason):
            return IngestResponse(IngestError(status: 504, errcode: "M_UNKNOWN", "\(query.destination): \(reason)"))
        }
    }
}
