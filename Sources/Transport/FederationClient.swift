import Federation
import Logging
import NIOCore
import Resolver

/// One signed federation request: method, raw request target and optional canonical JSON body.
public struct FederationRequest: Sendable {
    public var method: String
    /// The path and query exactly as they go on the request line and into X-Matrix `uri`.
    public var target: String
    /// Makes the canonical JSON body, or nil for requests without one. Called once a
    /// connection is leased, so a request waiting for a slot holds no copy of its body:
    /// thousands of destinations waiting cost no memory for the bytes they will send.
    public var makeBody: @Sendable () -> [UInt8]?

    public init(method: String, target: String, body: [UInt8]?) {
        self.method = method
        self.target = target
        self.makeBody = { body }
    }

    public init(method: String, target: String, makeBody: @escaping @Sendable () -> [UInt8]) {
        self.method = method
        self.target = target
        self.makeBody = { makeBody() }
    }
}

/// Why a federation request got no answer; each case names the destination.
public struct FederationRequestError: Error, Sendable, CustomStringConvertible {
    public var destination: String
    public var reason: String
    /// Asking again at once cannot help: every address is blocked, or the name does not exist.
    public var isPermanent = false
    /// southbridge's own limits held the request back (no pool slot in time, or its connection
    /// attempt was given up for a fairer turn); the destination itself said nothing.
    public var isLocalLimit = false

    public init(destination: String, reason: String, isPermanent: Bool = false, isLocalLimit: Bool = false) {
        self.destination = destination
        self.reason = reason
        self.isPermanent = isPermanent
        self.isLocalLimit = isLocalLimit
    }

    public var description: String { "\(destination): \(reason)" }
}

/// Sends signed requests to other homeservers: resolves the destination, leases a
/// connection from the `ConnectionPool`, signs with X-Matrix and reads the answer.
///
/// Any HTTP status comes back as a response; only a request that got no complete answer
/// (resolution, connection, TLS, timeout, oversized or malformed response) throws.
public struct FederationClient: Sendable {
    private let origin: String
    private let signingKey: SigningKey
    private let resolver: FederationResolver
    private let pool: ConnectionPool
    private let requestTimeout: TimeAmount
    private let maxResponseBytes: Int

    public init(origin: String, signingKey: SigningKey, resolver: FederationResolver, pool: ConnectionPool,
                requestTimeout: TimeAmount, maxResponseBytes: Int) {
        self.origin = origin
        self.signingKey = signingKey
        self.resolver = resolver
        self.pool = pool
        self.requestTimeout = requestTimeout
        self.maxResponseBytes = maxResponseBytes
    }

    /// A connection to one destination, resolved and leased from the `ConnectionPool` for one
    /// request: pass it to `send(_:on:)`, which gives it back.
    public struct LeasedConnection: Sendable {
        let destination: ServerName
        let address: ResolvedFederationAddress
        let requestClass: RequestClass
        let lease: ConnectionPool.Lease
    }

    /// Sends `request` to `destination`; `requestClass` decides its place in line when the
    /// connection pool is at a cap.
    public func send(_ request: FederationRequest, to destination: ServerName,
                     class requestClass: RequestClass = .pduTransaction) async throws(FederationRequestError) -> HTTPClientResponse {
        try await send(request, on: try await connect(to: destination, class: requestClass))
    }

    /// Resolves `destination` and waits for a connection to it. Kept apart from `send(_:on:)` so
    /// that a caller can wait for its turn before it builds what it will send: thousands of
    /// destinations waiting at the pool's caps then hold only this call's small frames.
    public func connect(to destination: ServerName,
                        class requestClass: RequestClass) async throws(FederationRequestError) -> LeasedConnection {
        let address: ResolvedFederationAddress
        do {
            address = try await resolver.resolve(destination)
        } catch {
            let permanent = switch error {
            case .allAddressesBlocked, .noSuchName: true
            default: false
            }
            throw FederationRequestError(destination: destination.description, reason: error.description, isPermanent: permanent)
        }
        do {
            let lease = try await pool.lease(for: address, class: requestClass)
            return LeasedConnection(destination: destination, address: address, requestClass: requestClass, lease: lease)
        } catch {
            throw Self.requestError(error, destination: destination)
        }
    }

    /// Signs and sends `request` on `connection` and gives the connection back. A kept
    /// connection the peer closed while it sat idle is not the destination's fault: the request
    /// goes again once on a new connection.
    public func send(_ request: FederationRequest, on connection: LeasedConnection) async throws(FederationRequestError) -> HTTPClientResponse {
        let makeRequest = signedRequest(request, on: connection)
        do {
            return try await exchange(makeRequest, on: connection.lease, at: connection.address)
        } catch is StaleKeepAlive {
            return try await sendOnNewConnection(makeRequest, replacing: connection)
        } catch {
            throw Self.requestError(error, destination: connection.destination)
        }
    }

    /// Makes the request, signed with X-Matrix, once a connection is leased: the body is made only then.
    private func signedRequest(_ request: FederationRequest, on connection: LeasedConnection) -> @Sendable () -> HTTPClientRequest {
        let (destination, address) = (connection.destination, connection.address)
        return { [origin, signingKey] in
            let body = request.makeBody()
            let authorization = XMatrixAuthorization.header(
                method: request.method, uri: request.target, origin: origin,
                destination: destination.description, content: body, key: signingKey)
            var headers: [(name: String, value: String)] = [
                ("Host", address.hostHeader), ("Authorization", authorization), ("User-Agent", "southbridge"),
            ]
            if body != nil { headers.append(("Content-Type", "application/json")) }
            return HTTPClientRequest(method: request.method, target: request.target, headers: headers, body: body ?? [])
        }
    }

    /// Not inlined into `send(_:on:)`, whose frame every request in flight holds.
    @inline(never)
    private func sendOnNewConnection(_ makeRequest: @Sendable () -> HTTPClientRequest,
                                     replacing connection: LeasedConnection) async throws(FederationRequestError) -> HTTPClientResponse {
        do {
            let lease = try await pool.lease(for: connection.address, class: connection.requestClass, reusingIdle: false)
            return try await exchange(makeRequest, on: lease, at: connection.address)
        } catch {
            throw Self.requestError(error, destination: connection.destination)
        }
    }

    private static func requestError(_ error: any Error, destination: ServerName) -> FederationRequestError {
        FederationRequestError(destination: destination.description, reason: "\(error)", isLocalLimit: error is ConnectionPoolError)
    }

    /// One exchange on a leased connection; its outcome goes back to the pool for the `HostRanker`.
    private func exchange(_ makeRequest: () -> HTTPClientRequest, on lease: ConnectionPool.Lease,
                          at address: ResolvedFederationAddress) async throws -> HTTPClientResponse {
        let started = NIODeadline.now()
        do {
            let response = try await lease.connection.execute(makeRequest(), timeout: requestTimeout, maxResponseBytes: maxResponseBytes)
            await pool.release(lease.connection, for: address,
                               outcome: HostRanker.Outcome(statusCode: response.statusCode, latency: .now() - started))
            return response
        } catch {
            let staleKeepAlive = lease.wasIdle && error.isConnectionLoss
            await pool.release(lease.connection, for: address, outcome: staleKeepAlive ? nil : HostRanker.Outcome(error))
            if staleKeepAlive {
                throw StaleKeepAlive(underlying: error)
            }
            throw error
        }
    }
}

/// A request that failed because a kept-alive connection turned out to be closed.
private struct StaleKeepAlive: Error {
    var underlying: HTTPClientError
}

extension HTTPClientError {
    /// The connection went away under the request, before any answer.
    var isConnectionLoss: Bool {
        switch self {
        case .connectionClosed, .connectionReset, .tls(.uncleanShutdown): true
        default: false
        }
    }
}
