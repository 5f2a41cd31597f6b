import Federation
import FuzzSupport
import Logging
import NIOCore
import NIOPosix
import Resolver
import SouthbridgeSwarm
import SouthbridgeTestSupport
import Testing
import Transport

/// The mutated responses of `HTTPResponseParserFuzzTests`, sent by a real TLS server to the real
/// client through the pool: each request ends promptly in a response or a documented
/// `HTTPClientError` on one short line, and no failure keeps a connection or a handshake slot.
@Suite(.timeLimit(.minutes(2)))
struct HTTPClientMutatedResponseTests {
    @Test("100 mutated responses over TLS end in a response or an error, and the pool leaks nothing")
    func mutatedResponsesOverTLS() async throws {
        let authority = try TestCertificateAuthority()
        let directory = try TemporaryDirectory(prefix: "southbridge-mutated-responses")
        defer { directory.remove() }
        try authority.writeCACertificate(to: directory.path + "/ca.pem")
        let tlsContext = try TLSContext.client(caFile: directory.path + "/ca.pem")
        let mutants = HTTPResponseParserFuzzTests.mutator.cases(100).map(\.bytes)
        // After the mutants, every connection gets a valid answer.
        let valid = Array("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello".utf8)
        let server = try await MisbehavingServer.start(
            behaviour: .answers(mutants + [valid]), certificate: try authority.issue(dnsNames: ["localhost"]),
            group: MultiThreadedEventLoopGroup.singleton)
        let pool = ConnectionPool(
            limits: .init(maxConnections: 1, maxTLSHandshakes: 1, connectTimeout: .seconds(5), tlsHandshakeTimeout: .seconds(5)),
            tlsContext: tlsContext, group: MultiThreadedEventLoopGroup.singleton, logger: Logger(label: "mutated-responses"))
        let address = ResolvedFederationAddress(
            destination: try ServerName("localhost:\(server.port)"), hostHeader: "localhost:\(server.port)",
            certificateName: .hostname("localhost"), endpoints: [.init(ipAddress: "127.0.0.1", port: server.port)])
        do {
            var outcomes: [String: Int] = [:]
            for index in mutants.indices {
                let started = ContinuousClock.now
                let outcome = await Self.get(address, from: pool)
                // The server closes after each answer, so nothing waits for the 20 s request timeout.
                #expect(ContinuousClock.now - started < .seconds(10), "case \(index) took \(ContinuousClock.now - started)")
                switch outcome {
                case .success(let status):
                    outcomes["status", default: 0] += 1
                    #expect((100...999).contains(status), "case \(index)")
                case .failure(let error):
                    outcomes[String("\(error)".prefix(30)), default: 0] += 1
                    #expect(error.description.utf8.count <= 400 && !error.description.contains(where: \.isNewline),
                            "case \(index): \(error)")
                }
            }
            #expect(outcomes["status", default: 0] > 0 && outcomes.count > 2, "\(outcomes)")
            // Whatever failed, the pool's one slot comes back: once the server runs out of
            // mutants (a reused connection took none), the valid answer gets through.
            var last = await Self.get(address, from: pool)
            for _ in mutants.indices where (try? last.get()) != 200 {
                last = await Self.get(address, from: pool)
            }
            #expect(try last.get() == 200)
            let counts = await pool.counts
            #expect(counts.handshaking == 0 && counts.waiting == 0, "\(counts)")
        } catch {
            await pool.closeIdleConnections()
            await server.stop()
            throw error
        }
        await pool.closeIdleConnections()
        await server.stop()
    }

    /// One GET through a leased connection, which goes back to the pool whatever happened.
    private static func get(_ address: ResolvedFederationAddress, from pool: ConnectionPool) async -> Result<Int, HTTPClientError> {
        let lease: ConnectionPool.Lease
        do {
            lease = try await pool.lease(for: address)
        } catch let error as HTTPClientError {
            return .failure(error)
        } catch {
            return .failure(.networkFailure(address: "localhost", reason: "\(error)"))
        }
        let outcome: Result<Int, HTTPClientError>
        do {
            let response = try await lease.connection.execute(
                HTTPClientRequest(method: "GET", target: "/fuzz", headers: [(name: "Host", value: address.hostHeader)]),
                timeout: .seconds(20), maxResponseBytes: 64 * 1024)
            outcome = .success(response.statusCode)
        } catch {
            outcome = .failure(error)
        }
        await pool.release(lease.connection, for: address)
        return outcome
    }
}
