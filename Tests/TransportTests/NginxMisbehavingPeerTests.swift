import NIOCore
import NIOPosix
import SouthbridgeSwarm
import SouthbridgeTestSupport
import Testing
import Transport

/// Peers that break the HTTP exchange after a good TLS handshake: each failure ends in the
/// documented `HTTPClientError`, and the pool then still reaches Debian's nginx through the
/// same `TLSContext`.
@Suite(.timeLimit(.minutes(1)))
struct NginxMisbehavingPeerTests {
    /// A misbehaving server, the request limits the client uses against it, and the error it must end in.
    enum Case: String, CaseIterable, Sendable {
        case resetMidResponse
        case drip
        case oversizedChunkedBody

        var behaviour: MisbehavingServer.Behaviour {
            switch self {
            case .resetMidResponse: return .resetMidResponse
            case .drip: return .drip(interval: .milliseconds(200))
            case .oversizedChunkedBody: return .oversizedBody(bytes: 1 << 20)
            }
        }

        var timeout: TimeAmount { self == .drip ? .seconds(1) : .seconds(5) }
        var maxResponseBytes: Int { 64 * 1024 }

        func expectedError(port: Int) -> HTTPClientError {
            switch self {
            case .resetMidResponse: return .connectionReset(address: "127.0.0.1:\(port)")
            case .drip: return .requestTimeout(method: "GET", target: "/small", timeout: .seconds(1))
            case .oversizedChunkedBody: return .responseTooLarge(limit: 64 * 1024)
            }
        }
    }

    @Test(arguments: Case.allCases)
    func misbehavingPeerEndsInTheDocumentedErrorAndThePoolStaysUsable(_ testCase: Case) async throws {
        try await NginxPoolFixture.with { fixture in
            let server = try await MisbehavingServer.start(
                behaviour: testCase.behaviour, certificate: try fixture.authority.issue(dnsNames: ["localhost"]),
                group: MultiThreadedEventLoopGroup.singleton)
            let address = try NginxPoolFixture.address(port: server.port)
            let started = ContinuousClock.now
            let error = await #expect(throws: HTTPClientError.self) {
                _ = try await fixture.get(
                    "/small", at: address, timeout: testCase.timeout, maxResponseBytes: testCase.maxResponseBytes)
            }
            let elapsed = ContinuousClock.now - started
            await server.stop()
            #expect(error == testCase.expectedError(port: server.port))
            if testCase == .drip {
                // The whole dripped answer takes 8.6 s (43 bytes, 200 ms apart): ending after the
                // 1 s timeout and well before that shows a deadline for the whole request, not an
                // idle timeout that every byte resets.
                #expect(elapsed >= .seconds(1) && elapsed < .seconds(6), "\(elapsed)")
            }
            #expect(try await eventually { await fixture.pool.counts.open == 0 })
            try await fixture.expectPoolStillUsable()
        }
    }

    @Test func nginxBodyOverTheLimitFailsBeforeItIsRead() async throws {
        try await NginxPoolFixture.with { fixture in
            let address = try fixture.address(of: NginxPoolFixture.goodSite)
            let error = await #expect(throws: HTTPClientError.self) {
                _ = try await fixture.get("/large", at: address, maxResponseBytes: 64 * 1024)
            }
            #expect(error == .responseTooLarge(limit: 64 * 1024))
            #expect(error?.description == "response exceeded the limit of 65536 bytes")
            try await fixture.expectPoolStillUsable()
            let (whole, _) = try await fixture.get("/large", at: address, maxResponseBytes: 1 << 20)
            #expect(whole.body.readableBytes == fixture.nginx.largeBodyBytes)
        }
    }
}
