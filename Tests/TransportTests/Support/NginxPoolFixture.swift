import Federation
import Logging
import NIOCore
import NIOPosix
import Resolver
import SouthbridgeSwarm
import SouthbridgeTestSupport
import Testing
import Transport

/// A test CA, a real nginx with a "good" site for localhost plus whatever sites a test adds,
/// and a `ConnectionPool` whose `TLSContext` trusts only that CA.
///
/// The pool has room for one connection and one handshake, so a failure that leaked its slot
/// would make the next lease wait forever instead of passing.
struct NginxPoolFixture {
    static let goodSite = "good"

    let authority: TestCertificateAuthority
    let nginx: NginxServer
    let tlsContext: TLSContext
    let pool: ConnectionPool

    /// Runs `body` with nginx serving the good site and `extraSites`, then stops everything.
    static func with<Result>(
        extraSites: (TestCertificateAuthority) throws -> [NginxServer.Site] = { _ in [] },
        _ body: (NginxPoolFixture) async throws -> Result
    ) async throws -> Result {
        let authority = try TestCertificateAuthority()
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let caFile = directory.path + "/ca.pem"
        try authority.writeCACertificate(to: caFile)
        let tlsContext = try TLSContext.client(caFile: caFile)
        let good = NginxServer.Site(name: goodSite, certificate: try authority.issue(dnsNames: ["localhost"]))
        let nginx = try await NginxServer.start(sites: [good] + (try extraSites(authority)))
        defer { nginx.stop() }
        let pool = ConnectionPool(
            limits: .init(maxConnections: 1, maxTLSHandshakes: 1, connectTimeout: .seconds(5),
                          tlsHandshakeTimeout: .seconds(5)),
            tlsContext: tlsContext, group: MultiThreadedEventLoopGroup.singleton, logger: Logger(label: "nginx-test"))
        let fixture = NginxPoolFixture(authority: authority, nginx: nginx, tlsContext: tlsContext, pool: pool)
        do {
            let result = try await body(fixture)
            await pool.closeIdleConnections()
            return result
        } catch {
            await pool.closeIdleConnections()
            throw error
        }
    }

    /// The nginx site `site` as discovery would hand it over: certificate name `name`, one loopback endpoint.
    func address(of site: String, name: String = "localhost") throws -> ResolvedFederationAddress {
        try Self.address(port: nginx.port(of: site), name: name)
    }

    static func address(port: Int, name: String = "localhost") throws -> ResolvedFederationAddress {
        ResolvedFederationAddress(
            destination: try ServerName("\(name):\(port)"), hostHeader: "\(name):\(port)",
            certificateName: .hostname(name), endpoints: [.init(ipAddress: "127.0.0.1", port: port)])
    }

    /// One GET through a leased connection, which goes back to the pool whatever happened.
    func get(
        _ target: String, at address: ResolvedFederationAddress, timeout: TimeAmount = .seconds(5),
        maxResponseBytes: Int = 1 << 20
    ) async throws -> (response: HTTPClientResponse, lease: ConnectionPool.Lease) {
        let lease = try await pool.lease(for: address)
        do {
            let response = try await lease.connection.execute(
                HTTPClientRequest(method: "GET", target: target, headers: [(name: "Host", value: address.hostHeader)]),
                timeout: timeout, maxResponseBytes: maxResponseBytes)
            await pool.release(lease.connection, for: address)
            return (response, lease)
        } catch {
            await pool.release(lease.connection, for: address)
            throw error
        }
    }

    /// The pool still serves the good site, through a new connection, after whatever went wrong before.
    func expectPoolStillUsable(sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let (response, lease) = try await get("/small", at: try address(of: Self.goodSite))
        #expect(response.statusCode == 200, sourceLocation: sourceLocation)
        #expect(String(buffer: response.body) == "hello", sourceLocation: sourceLocation)
        #expect(!lease.wasIdle, "the failed connection was kept", sourceLocation: sourceLocation)
        let counts = await pool.counts
        #expect(counts.open == 1 && counts.idle == 1 && counts.handshaking == 0 && counts.waiting == 0,
                "\(counts)", sourceLocation: sourceLocation)
    }
}
