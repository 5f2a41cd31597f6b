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
