import NIOCore
import NIOPosix
import SouthbridgeSwarm
import Testing
import Transport

/// Context construction refuses unusable inputs with errors that name them.
struct TLSContextTests {
    @Test func missingCAFileIsNamed() {
        #expect {
            _ = try TLSContext.client(caFile: "/nonexistent/southbridge-ca.pem")
        } throws: { error in
            guard case TLSError.unreadableCAFile(let path, _) = error else { return false }
            return path == "/nonexistent/southbridge-ca.pem"
                && "\(error)".hasPrefix("CA file \"/nonexistent/southbridge-ca.pem\" could not be loaded: ")
        }
    }

    @Test func garbageCertificateChainIsRefused() throws {
        let issued = try TestCertificateAuthority.selfSigned(dnsNames: ["localhost"])
        #expect {
            _ = try TLSContext.server(certificateChainPEM: "not a certificate", privateKeyPEM: issued.privateKeyPEM)
        } throws: { error in
            if case TLSError.invalidCertificateChain = error { return true }
            return false
        }
    }

    @Test func keyOfAnotherCertificateIsRefused() throws {
        let first = try TestCertificateAuthority.selfSigned(dnsNames: ["localhost"])
        let second = try TestCertificateAuthority.selfSigned(dnsNames: ["localhost"])
        #expect {
            _ = try TLSContext.server(certificateChainPEM: first.certificatePEM, privateKeyPEM: second.privateKeyPEM)
        } throws: { error in
            if case TLSError.invalidPrivateKey = error { return true }
            return false
        }
    }

    @Test func certificateChainWithIntermediateIsAccepted() throws {
        let authority = try TestCertificateAuthority()
        let leaf = try authority.issue(dnsNames: ["localhost"])
        let context = try TLSContext.server(
            certificateChainPEM: leaf.certificatePEM + authority.caCertificatePEM, privateKeyPEM: leaf.privateKeyPEM)
        #expect(context.cachedSessionCount == 0)
    }

    @Test func unparsableIPAddressPeerIsRefusedBeforeConnecting() async throws {
        let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = listener.localAddress?.port ?? 0
        let context = try TLSContext.client(caFile: nil)
        let error = await #expect(throws: HTTPClientError.self) {
            _ = try await HTTPClientConnection.connect(
                to: try SocketAddress(ipAddress: "127.0.0.1", port: port), peer: .ipAddress("300.1.2.3"),
                tlsContext: context, on: MultiThreadedEventLoopGroup.singleton,
                connectTimeout: .seconds(5), handshakeTimeout: .seconds(5))
        }
        #expect(error == .tls(.invalidPeer(peer: "300.1.2.3", reason: "not an IPv4 or IPv6 address")))
        try await listener.close()
    }
}
