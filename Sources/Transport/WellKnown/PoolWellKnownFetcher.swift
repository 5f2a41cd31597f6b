import Federation
import NIOCore
import Resolver

/// Makes `WellKnownResolver`'s HTTPS requests through the `ConnectionPool`, so `.well-known`
/// connections count against the same caps as federation traffic.
///
/// The certificate is verified for the URL's host before the request is sent, the whole request
/// (waiting for a connection included) is bounded by the request's timeout, and a body longer
/// than the request's limit fails without being read to its end. Connections are pooled under
/// the destination `host:port` with the port always written, so that a connection to
/// `example.org` on 443 is not handed out for federation with `example.org` (port 8448).
public struct PoolWellKnownFetcher: WellKnownFetcher {
    /// The room allowed for the status line and header fields on top of the body limit.
    public static let headerAllowance = 16 * 1024

    private let pool: ConnectionPool

    public init(pool: ConnectionPool) {
        self.pool = pool
    }

    public func get(_ request: WellKnownFetchRequest) async throws(WellKnownFetchError) -> WellKnownFetchResponse {
        let deadline = NIODeadline.now() + request.timeout
        let destination: ServerName
        do {
            destination = try ServerName(request.authorityWithPort)
        } catch {
            throw .connectionFailed(reason: "\(request): \(error)")
        }
        let address = ResolvedFederationAddress(destination: destination, hostHeader: request.hostHeader,
                                                certificateName: request.certificateName, endpoints: request.endpoints)
        let connection: HTTPClientConnection
        do {
            connection = try await pool.lease(for: address, deadline: deadline).connection
        } catch {
            throw Self.fetchError(error, request: request)
        }
        let remaining = deadline - .now()
        guard remaining > .zero else {
            await pool.release(connection, for: address)
            throw .timedOut(reason: "\(request): no connection within \(request.timeout.nanoseconds / 1_000_000) ms")
        }
        let httpRequest = HTTPClientRequest(method: "GET", target: request.target, headers: [
            ("Host", request.hostHeader), ("Accept", "application/json"), ("User-Agent", "southbridge"),
        ])
        let response: HTTPClientResponse
        let started = NIODeadline.now()
        do {
            response = try await connection.execute(
                httpRequest, timeout: remaining, maxResponseBytes: request.maxBodyBytes + Self.headerAllowance)
        } catch {
            await pool.release(connection, for: address, outcome: HostRanker.Outcome(error))
            throw Self.fetchError(error, request: request)
        }
        await pool.release(connection, for: address,
                           outcome: HostRanker.Outcome(statusCode: response.statusCode, latency: .now() - started))
        guard response.body.readableBytes <= request.maxBodyBytes else {
            throw .bodyTooLarge(limit: request.maxBodyBytes)
        }
        return WellKnownFetchResponse(status: response.statusCode, headers: response.headers, body: response.bodyBytes)
    }

    private static func fetchError(_ error: any Error, request: WellKnownFetchRequest) -> WellKnownFetchError {
        if let error = error as? ConnectionPoolError {
            return .timedOut(reason: "\(request): \(error)")
        }
        guard let error = error as? HTTPClientError else {
            return .connectionFailed(reason: "\(request): \(error)")
        }
        switch error {
        case .connectTimeout, .tlsHandshakeTimeout, .requestTimeout:
            return .timedOut(reason: "\(request): \(error)")
        case .responseTooLarge:
            return .bodyTooLarge(limit: request.maxBodyBytes)
        default:
            return .connectionFailed(reason: "\(request): \(error)")
        }
    }
}
