/// Performs one HTTPS GET for `WellKnownResolver`, which cannot reach `Transport` itself
/// (Transport depends on Resolver).
///
/// A conforming type connects only to `request.endpoints` (already checked against the IP
/// blocklist), verifies the server's certificate for `request.certificateName`, sends no
/// request before that, follows no redirect, reads at most `request.maxBodyBytes` of body
/// and gives up after `request.timeout`. Every failure is a `WellKnownFetchError`; any HTTP
/// status, 5xx included, is a response.
public protocol WellKnownFetcher: Sendable {
    func get(_ request: WellKnownFetchRequest) async throws(WellKnownFetchError) -> WellKnownFetchResponse
}
