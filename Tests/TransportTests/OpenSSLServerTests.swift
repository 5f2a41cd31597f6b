import NIOCore
import NIOPosix
import SouthbridgeSwarm
import Testing
import Transport

/// The client against `openssl s_server -www`, a TLS implementation we did not write.
@Suite(.timeLimit(.minutes(1)))
struct OpenSSLServerTests {
    private static let getStatusPage = HTTPClientRequest(
        method: "GET", target: "/", headers: [(name: "Host", value: "localhost")])

    private func connect(port: Int, peer: TLSPeer, context: TLSContext) async throws(HTTPClientError)
        -> HTTPClientConnection
    {
        let address: SocketAddress
        do {
            address = try SocketAddress(ipAddress: "127.0.0.1", port: port)
        } catch {
            throw .networkFailure(address: "127.0.0.1:\(port)", reason: "\(error)")
        }
        return try await HTTPClientConnection.connect(
            to: address, peer: peer, tlsContext: context, on: MultiThreadedEventLoopGroup.singleton,
            connectTimeout: .seconds(5), handshakeTimeout: .seconds(5))
    }

    @Test func getSucceedsAgainstACertificateFromTheTrustedCA() async throws {
        try await TrustedClient.with { client in
            let certificate = try client.authority.issue(dnsNames: ["localhost"])
            try await OpenSSLServerProcess.with(certificate: certificate) { port in
                let connection = try await connect(port: port, peer: .hostname("localhost"), context: client.context)
                let response = try await connection.execute(
                    Self.getStatusPage, timeout: .seconds(5), maxResponseBytes: 1 << 20)
                #expect(response.statusCode == 200)
                #expect(String(buffer: response.body).contains("s_server"))
                #expect(connection.negotiatedProtocol == nil)
                // s_server answers HTTP/1.0 without keep-alive and closes.
                #expect(!connection.isReusable)
                await connection.close()
            }
        }
    }

    @Test func ipAddressPeerIsVerifiedAgainstTheIPSubjectAltName() async throws {
        try await TrustedClient.with { client in
            let certificate = try client.authority.issue(ipAddresses: ["127.0.0.1"])
            try await OpenSSLServerProcess.with(certificate: certificate) { port in
                let connection = try await connect(port: port, peer: .ipAddress("127.0.0.1"), context: client.context)
                let response = try await connection.execute(
                    Self.getStatusPage, timeout: .seconds(5), maxResponseBytes: 1 << 20)
                #expect(response.statusCode == 200)
                await connection.close()
            }
        }
    }

    enum RejectedCertificate: String, CaseIterable, Sendable {
        case wrongHostname
        case expired
        case notYetValid
        case selfSigned
        case wrongIPAddress
        case ipCertificateForHostname

        var peer: TLSPeer {
            switch self {
            case .wrongHostname: return .hostname("wrong.example")
            case .wrongIPAddress: return .ipAddress("127.0.0.2")
            case .ipCertificateForHostname: return .hostname("localhost")
            case .expired, .notYetValid, .selfSigned: return .hostname("localhost")
            }
        }

        var expectedReason: String {
            switch self {
            case .wrongHostname, .ipCertificateForHostname: return "hostname mismatch"
            case .expired: return "certificate has expired"
            case .notYetValid: return "certificate is not yet valid"
            case .selfSigned: return "self-signed certificate"
            case .wrongIPAddress: return "IP address mismatch"
            }
        }

        func certificate(from authority: TestCertificateAuthority) throws -> (
            certificatePEM: String, privateKeyPEM: String
        ) {
            switch self {
            case .wrongHostname:
                return try authority.issue(dnsNames: ["localhost"])
            case .expired:
                return try authority.issue(
                    dnsNames: ["localhost"], notBefore: .seconds(-7200), notAfter: .seconds(-3600))
            case .notYetValid:
                return try authority.issue(dnsNames: ["localhost"], notBefore: .seconds(3600), notAfter: .seconds(7200))
            case .selfSigned:
                return try TestCertificateAuthority.selfSigned(dnsNames: ["localhost"])
            case .wrongIPAddress, .ipCertificateForHostname:
                return try authority.issue(ipAddresses: ["127.0.0.1"])
            }
        }
    }

    @Test(arguments: RejectedCertificate.allCases)
    func handshakeFailsNamingThePeerAndTheReason(_ rejected: RejectedCertificate) async throws {
        try await TrustedClient.with { client in
            try await OpenSSLServerProcess.with(certificate: try rejected.certificate(from: client.authority)) { port in
                let error = await #expect(throws: HTTPClientError.self) {
                    _ = try await connect(port: port, peer: rejected.peer, context: client.context)
                }
                #expect(
                    error
                        == .tls(
                            .certificateVerificationFailed(
                                peer: rejected.peer.description, reason: rejected.expectedReason)))
                #expect(
                    error?.description
                        == "certificate verification failed for \"\(rejected.peer)\": \(rejected.expectedReason)")
            }
        }
    }

    /// The ClientHellos s_server received, as `-trace` prints them: whether each offered TLS 1.3
    /// (a `supported_versions` extension) and carried a key share. s_server buffers its output,
    /// so this waits (up to 5 s) until `count` ClientHellos each have the server's answer after them.
    private static func clientHellos(count: Int, in output: () -> String) async throws -> [(
        offersTLS13: Bool, keyShare: Bool
    )] {
        let deadline = ContinuousClock.now + .seconds(5)
        var hellos: [Substring] = []
        repeat {
            hellos = Array(output().split(separator: "ClientHello, Length=").dropFirst())
            if hellos.count >= count, hellos.allSatisfy({ $0.contains("ServerHello") }) { break }
            try await Task.sleep(for: .milliseconds(10))
        } while ContinuousClock.now < deadline
        return hellos.map { hello in
            let message = hello.split(separator: "ServerHello", maxSplits: 1).first ?? hello
            return (message.contains("supported_versions(43)"), message.contains("key_share(51)"))
        }
    }

    /// Resuming a session from a TLS 1.2-only server offers TLS 1.2 alone, without the key share
    /// a TLS 1.3 offer carries; once such a server refuses the session (here: it has moved to a
    /// new ticket key and to TLS 1.3), the next connection offers TLS 1.3 again and gets it.
    @Test func resumingATLS12SessionOffersTLS12AloneUntilTheServerRefusesIt() async throws {
        try await TrustedClient.with { client in
            let certificate = try client.authority.issue(dnsNames: ["localhost"])
            func handshake(_ port: Int) async throws -> (version: String, resumed: Bool) {
                let connection = try await connect(port: port, peer: .hostname("localhost"), context: client.context)
                await connection.close()
                return (connection.tlsProtocolVersion, connection.isTLSSessionReused)
            }
            try await OpenSSLServerProcess.with(certificate: certificate, options: ["-tls1_2", "-trace"]) {
                port, output in
                let first = try await handshake(port)
                #expect(first.version == "TLSv1.2" && !first.resumed)
                let second = try await handshake(port)
                #expect(second.version == "TLSv1.2" && second.resumed, "OpenSSL reports a full handshake")
                let hellos = try await Self.clientHellos(count: 2, in: output)
                #expect(hellos.map(\.offersTLS13) == [true, false], "\(hellos)")
                #expect(hellos.map(\.keyShare) == [true, false], "\(hellos)")
            }
            try await OpenSSLServerProcess.with(certificate: certificate, options: ["-trace"]) { port, output in
                // The TLS 1.2 offer still works with a server that also speaks TLS 1.3; the session
                // is refused (a new server, a new ticket key), so a full TLS 1.2 handshake follows.
                let refused = try await handshake(port)
                #expect(refused.version == "TLSv1.2" && !refused.resumed)
                let next = try await handshake(port)
                #expect(next.version == "TLSv1.3" && !next.resumed)
                let hellos = try await Self.clientHellos(count: 2, in: output)
                #expect(hellos.map(\.offersTLS13) == [false, true], "\(hellos)")
            }
        }
    }

    /// A server that moved from TLS 1.2 alone to TLS 1.3 alone refuses the TLS 1.2 offer made to
    /// resume its old session; the error says so, and the next connection gets TLS 1.3.
    @Test func aServerNowOnTLS13AloneFailsOneResumptionAndThenGetsTLS13() async throws {
        try await TrustedClient.with { client in
            let certificate = try client.authority.issue(dnsNames: ["localhost"])
            try await OpenSSLServerProcess.with(certificate: certificate, options: ["-tls1_2"]) { port, _ in
                let connection = try await connect(port: port, peer: .hostname("localhost"), context: client.context)
                #expect(connection.tlsProtocolVersion == "TLSv1.2")
                await connection.close()
            }
            try await OpenSSLServerProcess.with(certificate: certificate, options: ["-tls1_3"]) { port, _ in
                let error = await #expect(throws: HTTPClientError.self) {
                    _ = try await connect(port: port, peer: .hostname("localhost"), context: client.context)
                }
                guard case .tls(.handshakeFailed(let peer, let reason)) = error else {
                    Issue.record("expected a handshake failure, got \(String(describing: error))")
                    return
                }
                #expect(peer == "localhost")
                #expect(reason.hasPrefix("unsupported protocol version"), "\(reason)")
                #expect(
                    reason.hasSuffix(
                        "TLS 1.2 alone was offered, to resume a TLS 1.2 session, and the next connection offers TLS 1.3 too"),
                    "\(reason)")
                let connection = try await connect(port: port, peer: .hostname("localhost"), context: client.context)
                #expect(connection.tlsProtocolVersion == "TLSv1.3")
                await connection.close()
            }
        }
    }

    @Test func systemTrustStoreDoesNotTrustTheTestCA() async throws {
        let authority = try TestCertificateAuthority()
        let systemTrust = try TLSContext.client(caFile: nil)
        try await OpenSSLServerProcess.with(certificate: try authority.issue(dnsNames: ["localhost"])) { port in
            let error = await #expect(throws: HTTPClientError.self) {
                _ = try await connect(port: port, peer: .hostname("localhost"), context: systemTrust)
            }
            guard case .tls(.certificateVerificationFailed(let peer, _)) = error else {
                Issue.record("expected a verification failure, got \(String(describing: error))")
                return
            }
            #expect(peer == "localhost")
        }
    }
}
