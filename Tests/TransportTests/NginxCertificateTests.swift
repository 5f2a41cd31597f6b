import NIOCore
import SouthbridgeSwarm
import SouthbridgeTestSupport
import Testing
import Transport

/// The pool's TLS and HTTP/1.1 against Debian's nginx with certificates from a test CA: the
/// right name works and keeps its connection alive; every bad peer ends in the documented
/// error naming the peer and the reason, and the pool then still reaches the good server.
@Suite(.timeLimit(.minutes(1)))
struct NginxCertificateTests {
    @Test func rightNameServesSeveralRequestsOverOneKeptAliveConnection() async throws {
        try await NginxPoolFixture.with { fixture in
            let address = try fixture.address(of: NginxPoolFixture.goodSite)
            var connectionNumbers: Set<Substring> = []
            for request in 1...4 {
                let (response, lease) = try await fixture.get("/connection", at: address)
                #expect(response.statusCode == 200)
                #expect(lease.wasIdle == (request > 1))
                #expect(lease.connection.negotiatedProtocol == "http/1.1")
                // nginx's own view: the same TCP connection, carrying its n-th request.
                let fields = String(buffer: response.body).split(separator: " ")
                #expect(fields.count == 2 && fields[1] == "\(request)", "\(fields)")
                connectionNumbers.insert(fields[0])
            }
            #expect(connectionNumbers.count == 1)
            let counts = await fixture.pool.counts
            #expect(counts.handshakesCompleted == 1)
            #expect(counts.open == 1 && counts.idle == 1)
        }
    }

    @Test func connectionClosedByKeepaliveRequestsIsReplacedByAResumedOne() async throws {
        try await NginxPoolFixture.with(extraSites: { authority in
            [NginxServer.Site(name: "two-per-connection", certificate: try authority.issue(dnsNames: ["localhost"]),
                              keepaliveRequests: 2)]
        }) { fixture in
            let address = try fixture.address(of: "two-per-connection")
            var seen: [String] = []
            var reused: [Bool] = []
            for _ in 1...3 {
                let (response, lease) = try await fixture.get("/connection", at: address)
                seen.append(String(buffer: response.body))
                reused.append(lease.wasIdle)
                if !lease.wasIdle { #expect(lease.connection.isTLSSessionReused == (seen.count > 1)) }
            }
            // nginx answers the second request with "Connection: close", so the third needs a new connection.
            #expect(reused == [false, true, false])
            let connections = seen.map { $0.split(separator: " ") }
            #expect(connections.map { $0.last.map(String.init) ?? "" } == ["1", "2", "1"])
            #expect(connections[0].first == connections[1].first && connections[1].first != connections[2].first)
            #expect(await fixture.pool.counts.handshakesCompleted == 2)
        }
    }

    /// A peer the client must refuse.
    enum BadPeer: String, CaseIterable, Sendable {
        case wrongName
        case expired
        case selfSigned
        case tls10Only

        func site(from authority: TestCertificateAuthority) throws -> NginxServer.Site {
            switch self {
            case .wrongName:
                return .init(name: rawValue, certificate: try authority.issue(dnsNames: ["other.example.test"]))
            case .expired:
                return .init(
                    name: rawValue,
                    certificate: try authority.issue(
                        dnsNames: ["localhost"], notBefore: .seconds(-7200), notAfter: .seconds(-3600)))
            case .selfSigned:
                return .init(name: rawValue, certificate: try TestCertificateAuthority.selfSigned(dnsNames: ["localhost"]))
            case .tls10Only:
                return .init(name: rawValue, certificate: try authority.issue(dnsNames: ["localhost"]),
                             protocols: ["TLSv1"])
            }
        }

        /// Whether `error` is the documented one; OpenSSL's own text after a protocol version
        /// refusal carries error codes that vary between OpenSSL releases, so only its start is fixed.
        func isExpected(_ error: HTTPClientError?) -> Bool {
            switch (self, error) {
            case (.wrongName, .tls(.certificateVerificationFailed("localhost", "hostname mismatch"))),
                (.expired, .tls(.certificateVerificationFailed("localhost", "certificate has expired"))),
                (.selfSigned, .tls(.certificateVerificationFailed("localhost", "self-signed certificate"))):
                return true
            case (.tls10Only, .tls(.handshakeFailed("localhost", let reason))):
                return reason.hasPrefix(
                    "unsupported protocol version: the peer offers no TLS version this side accepts (")
            default:
                return false
            }
        }
    }

    @Test(arguments: BadPeer.allCases)
    func badPeerFailsNamingPeerAndReasonAndThePoolStaysUsable(_ bad: BadPeer) async throws {
        try await NginxPoolFixture.with(extraSites: { [try bad.site(from: $0)] }) { fixture in
            let address = try fixture.address(of: bad.rawValue)
            let error = await #expect(throws: HTTPClientError.self) {
                _ = try await fixture.get("/small", at: address)
            }
            #expect(bad.isExpected(error), "\(String(describing: error))")
            #expect(error?.description.contains("\"localhost\"") == true, "\(String(describing: error))")
            #expect(try await eventually { await fixture.pool.counts.open == 0 })
            try await fixture.expectPoolStillUsable()
            // The refusal is the client's: nginx saw the handshake fail.
            #expect(fixture.nginx.errorLog().contains("SSL_do_handshake() failed"))
            if bad == .tls10Only {
                #expect(fixture.nginx.errorLog().contains("unsupported protocol"))
                #expect(try await speaksTLS10(port: fixture.nginx.port(of: bad.rawValue)), "nginx does not offer TLS 1.0")
            }
        }
    }

    /// Whether `openssl s_client -tls1` completes a TLS 1.0 handshake with the server: proof that
    /// the refusal above is about the version, not a server that cannot talk at all.
    private func speaksTLS10(port: Int) async throws -> Bool {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let client = try ChildProcess(
            executable: "openssl",
            arguments: ["s_client", "-connect", "127.0.0.1:\(port)", "-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"],
            logPath: directory.path + "/s_client.log")
        guard await client.waitForExit(timeout: .seconds(10)) != nil else {
            await client.terminate()
            return false
        }
        return client.output().contains("New, TLSv1.0,")
    }
}
