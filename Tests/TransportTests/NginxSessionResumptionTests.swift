import NIOCore
import NIOPosix
import SouthbridgeSwarm
import SouthbridgeTestSupport
import Testing
import Transport

/// TLS session resumption against nginx (shared session cache and tickets on), as both ends
/// report it: OpenSSL's `SSL_session_reused` on our side, nginx's `$ssl_session_reused` on theirs.
@Suite(.timeLimit(.minutes(1)))
struct NginxSessionResumptionTests {
    private static let request = HTTPClientRequest(
        method: "GET", target: "/session-reused", headers: [(name: "Host", value: "localhost")])

    private func connect(port: Int, context: TLSContext) async throws -> HTTPClientConnection {
        try await HTTPClientConnection.connect(
            to: try SocketAddress(ipAddress: "127.0.0.1", port: port), peer: .hostname("localhost"),
            tlsContext: context, on: MultiThreadedEventLoopGroup.singleton,
            connectTimeout: .seconds(5), handshakeTimeout: .seconds(5))
    }

    /// Connects, asks nginx whether it resumed, and closes; reading the answer also takes in
    /// the TLS 1.3 tickets nginx sends after the handshake.
    private func handshake(port: Int, context: TLSContext) async throws -> (ours: Bool, nginx: String, version: String) {
        let connection = try await connect(port: port, context: context)
        let response = try await connection.execute(Self.request, timeout: .seconds(5), maxResponseBytes: 4096)
        await connection.close()
        return (connection.isTLSSessionReused, String(buffer: response.body), connection.tlsProtocolVersion)
    }

    /// nginx's `ssl_protocols` name, which is also how OpenSSL names the version it negotiated.
    @Test(arguments: ["TLSv1.3", "TLSv1.2"])
    func secondConnectionThroughTheSameContextResumes(_ version: String) async throws {
        try await TrustedClient.with { client in
            let site = NginxServer.Site(
                name: "resume", certificate: try client.authority.issue(dnsNames: ["localhost"]),
                protocols: [version])
            let nginx = try await NginxServer.start(sites: [site])
            defer { nginx.stop() }
            let port = nginx.port(of: "resume")

            let first = try await handshake(port: port, context: client.context)
            #expect(first.version == version)
            #expect(!first.ours && first.nginx == ".")
            #expect(client.context.cachedSessionCount == 1)

            let second = try await handshake(port: port, context: client.context)
            #expect(second.version == version)
            #expect(second.ours, "OpenSSL reports a full handshake")
            #expect(second.nginx == "r", "nginx reports \(second.nginx)")

            // A context that never met this server has nothing to offer: a full handshake on both sides.
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let stranger = try TLSContext.client(
                caFile: try directory.write(client.authority.caCertificatePEM, named: "ca.pem"))
            let fresh = try await handshake(port: port, context: stranger)
            #expect(!fresh.ours && fresh.nginx == ".")
        }
    }
}
