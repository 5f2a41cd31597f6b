import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Resolver
import SouthbridgeSwarm
import Transport

/// Everything a `.well-known` test needs: a test CA, a `WellKnownTestServer` with a certificate
/// from it, a real `ConnectionPool` whose TLS context trusts only that CA, and a clock the test moves.
///
/// Test names resolve to 127.0.0.1 through the injected `lookUpAddresses`, which is why the
/// resolvers it builds allow 127.0.0.0/8 unless told otherwise.
struct WellKnownFixture {
    static let certificateNames = ["wk.test", "other.test"]
    static let wellKnownPath = "/.well-known/matrix/server"

    let server: WellKnownTestServer
    let pool: ConnectionPool
    let clock = WellKnownTestClock()

    var port: Int { server.port }

    /// The URL of `target` on `host` at the test server's port.
    func url(_ target: String = wellKnownPath, host: String = "wk.test") -> String {
        "https://\(host):\(port)\(target)"
    }

    /// A resolver on the test server's port using the real pool, the test clock and fixed jitter.
    func resolver(
        limits: WellKnownResolver.Limits = WellKnownResolver.Limits(),
        allowlist: [String] = ["127.0.0.0/8"],
        addresses: [String: [String]] = ["wk.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]],
        randomUnit: Double = 0.5
    ) throws -> WellKnownResolver {
        let clock = self.clock
        return WellKnownResolver(
            fetcher: PoolWellKnownFetcher(pool: pool),
            lookUpAddresses: { name in
                guard let found = addresses[name] else { throw WellKnownFixtureError("no test address for \"\(name)\"") }
                return found
            },
            ipRangeAllowlist: try allowlist.map { try IPRange(parsing: $0) },
            port: port, limits: limits, now: { clock.now() }, randomUnit: { randomUnit },
            logger: Self.quietLogger)
    }

    /// Runs `body` with a fresh fixture whose server certificate names `certificateNames`.
    static func with<Result>(
        certificateNames: [String] = certificateNames,
        _ body: (WellKnownFixture) async throws -> Result
    ) async throws -> Result {
        let authority = try TestCertificateAuthority()
        let directory = try TemporaryDirectory(prefix: "southbridge-wellknown")
        defer { directory.remove() }
        let caFile = directory.path + "/ca.pem"
        try authority.writeCACertificate(to: caFile)
        let pool = ConnectionPool(
            limits: .init(maxConnections: 16, maxTLSHandshakes: 8, connectTimeout: .seconds(2),
                          tlsHandshakeTimeout: .seconds(2)),
            tlsContext: try TLSContext.client(caFile: caFile), group: MultiThreadedEventLoopGroup.singleton,
            logger: quietLogger)
        let server = try await WellKnownTestServer.start(authority: authority, dnsNames: certificateNames)
        let fixture = WellKnownFixture(server: server, pool: pool)
        do {
            let result = try await body(fixture)
            await pool.closeIdleConnections()
            await server.stop()
            return result
        } catch {
            await pool.closeIdleConnections()
            await server.stop()
            throw error
        }
    }

    static let quietLogger = Logger(label: "southbridge.test.wellknown") { _ in SwiftLogNoOpLogHandler() }
}

/// A test fixture that could not be set up or a scripted peer that was asked something unexpected.
struct WellKnownFixtureError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

extension WellKnownFailure.Problem {
    /// The case name alone (`"httpStatus"`), for tables of expected failures.
    var caseName: String {
        String(String(describing: self).prefix { $0 != "(" })
    }
}

extension WellKnownResult {
    /// The failure of a `.none` result, nil for a delegation.
    var failure: WellKnownFailure? {
        if case .none(let reason) = self { reason } else { nil }
    }
}
