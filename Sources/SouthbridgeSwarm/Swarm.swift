import Federation
import NIOCore

/// A set of `SwarmServer`s sharing one throwaway certificate authority: the far end of
/// every demo, integration test and benchmark.
public final class Swarm: Sendable {
    public let servers: [SwarmServer]
    public let certificateAuthority: TestCertificateAuthority
    /// Connections and handshakes open at once across all the servers.
    public let load: SwarmLoad

    private init(servers: [SwarmServer], certificateAuthority: TestCertificateAuthority, load: SwarmLoad) {
        self.servers = servers
        self.certificateAuthority = certificateAuthority
        self.load = load
    }

    /// Starts `count` servers on loopback, each trusting requests signed by `origin`'s key.
    public static func start(count: Int, origin: String, originKey: VerifyKey,
                             group: any EventLoopGroup) async throws -> Swarm {
        let authority = try TestCertificateAuthority()
        let load = SwarmLoad()
        var servers: [SwarmServer] = []
        servers.reserveCapacity(count)
        for _ in 0..<count {
            servers.append(try await SwarmServer.start(certificateAuthority: authority,
                                                       trustedOrigins: [origin: originKey], load: load, group: group))
        }
        return Swarm(servers: servers, certificateAuthority: authority, load: load)
    }

    public var serverNames: [String] { servers.map(\.serverName) }
    public var receivedPDUCount: Int { servers.reduce(0) { $0 + $1.receivedPDUCount } }
    public var rejectedSignatureCount: Int { servers.reduce(0) { $0 + $1.rejectedSignatureCount } }
    public var acceptedConnectionCount: Int { servers.reduce(0) { $0 + $1.acceptedConnectionCount } }
    public var transactionCount: Int { servers.reduce(0) { $0 + $1.transactionCount } }

    public func stop() async {
        for server in servers { await server.stop() }
    }
}
