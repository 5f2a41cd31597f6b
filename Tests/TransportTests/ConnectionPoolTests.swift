import Federation
import Logging
import NIOCore
import NIOPosix
import Resolver
import SouthbridgeSwarm
import Testing
import Transport

@Suite("ConnectionPool caps against real TLS servers")
struct ConnectionPoolTests {
    private func withSwarm(
        servers: Int, maxConnections: Int, maxTLSHandshakes: Int, idleTimeout: TimeAmount = .seconds(120),
        _ body: (ConnectionPool, [ResolvedFederationAddress]) async throws -> Void
    ) async throws {
        // The shared group outlives every connection, so closes that finish after the test never hit a stopped loop.
        let group = MultiThreadedEventLoopGroup.singleton
        let key = try SigningKey.generate(version: "pool")
        let swarm = try await Swarm.start(count: servers, origin: "origin.example", originKey: key.verifyKey, group: group)
        let directory = try TemporaryDirectory(prefix: "southbridge-pool")
        try swarm.certificateAuthority.writeCACertificate(to: directory.path + "/ca.pem")
        let pool = ConnectionPool(
            limits: .init(maxConnections: maxConnections, maxTLSHandshakes: maxTLSHandshakes,
                          connectTimeout: .seconds(5), tlsHandshakeTimeout: .seconds(5), idleTimeout: idleTimeout),
            tlsContext: try TLSContext.client(caFile: directory.path + "/ca.pem"), group: group, logger: Logger(label: "test"))
        let addresses = try swarm.servers.map { server in
            ResolvedFederationAddress(destination: try ServerName(server.serverName), hostHeader: server.serverName,
                                      certificateName: .ipAddress("127.0.0.1"),
                                      endpoints: [.init(ipAddress: "127.0.0.1", port: server.port)])
        }
        try await body(pool, addresses)
        await pool.closeIdleConnections()
        await swarm.stop()
        directory.remove()
    }

    /// One key-server GET through a leased connection, then the connection goes back.
    private func fetchKeys(_ pool: ConnectionPool, _ address: ResolvedFederationAddress,
                           class requestClass: RequestClass = .pduTransaction) async throws -> Int {
        let connection = try await pool.lease(for: address, class: requestClass).connection
        let response = try await connection.execute(
            HTTPClientRequest(method: "GET", target: "/_matrix/key/v2/server", headers: [("Host", address.hostHeader)]),
            timeout: .seconds(5), maxResponseBytes: 65536)
        await pool.release(connection, for: address, outcome: .success(latency: .milliseconds(10)))
        return response.statusCode
    }

    @Test("many destinations at once never exceed max_connections or max_tls_handshakes")
    func capsHold() async throws {
        try await withSwarm(servers: 12, maxConnections: 3, maxTLSHandshakes: 1) { pool, addresses in
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for round in 0..<3 {
                    for address in addresses {
                        let requestClass = RequestClass.allCases[round]
                        group.addTask { try await fetchKeys(pool, address, class: requestClass) }
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(statuses.count == 36)
            #expect(statuses.allSatisfy { $0 == 200 })
            let counts = await pool.counts
            #expect(counts.peakOpen <= 3)
            #expect(counts.peakHandshaking == 1)
            #expect(counts.open <= 3)
            #expect(counts.waiting == 0)
        }
    }

    @Test("an idle connection is reused for the same destination")
    func reusesIdleConnections() async throws {
        try await withSwarm(servers: 1, maxConnections: 2, maxTLSHandshakes: 1) { pool, addresses in
            for _ in 0..<5 {
                let status = try await fetchKeys(pool, addresses[0])
                #expect(status == 200)
            }
            let counts = await pool.counts
            #expect(counts.handshakesCompleted == 1)
            #expect(counts.idle == 1)
        }
    }

    @Test("a full pool closes the least recently used idle connection for a new destination")
    func evictsIdleConnectionWhenFull() async throws {
        try await withSwarm(servers: 3, maxConnections: 2, maxTLSHandshakes: 2) { pool, addresses in
            for address in addresses {
                let status = try await fetchKeys(pool, address)
                #expect(status == 200)
            }
            let counts = await pool.counts
            #expect(counts.open == 2)
            #expect(counts.peakOpen == 2)
            #expect(counts.handshakesCompleted == 3)
        }
    }
}

extension ConnectionPoolTests {
    @Test("idle connections older than the idle timeout are closed and their slots freed")
    func idleTimeoutClosesConnections() async throws {
        try await withSwarm(servers: 2, maxConnections: 2, maxTLSHandshakes: 2) { pool, addresses in
            for address in addresses { _ = try await fetchKeys(pool, address) }
            #expect(await pool.counts.idle == 2)
            await pool.closeIdleConnections(idleSince: .now() - .hours(1))
            #expect(await pool.counts.idle == 2, "connections idle for less than the timeout were closed")
            await pool.closeIdleConnections(idleSince: .now() + .seconds(1))
            #expect(await pool.counts.idle == 0)
            // Closed connections hold their sockets until the close is done.
            #expect(try await eventually { await pool.counts.open == 0 })
        }
    }
}

extension ConnectionPoolTests {
    @Test("idle connections close on the pool's own timer after the idle timeout")
    func idleTimerClosesConnections() async throws {
        try await withSwarm(servers: 1, maxConnections: 2, maxTLSHandshakes: 1, idleTimeout: .milliseconds(200)) { pool, addresses in
            _ = try await fetchKeys(pool, addresses[0])
            #expect(await pool.counts.idle == 1)
            #expect(try await eventually { await pool.counts.open == 0 })
        }
    }

    @Test("a waiting lease ends when its task is cancelled, and leaves the line")
    func cancelWaitingLease() async throws {
        try await withSwarm(servers: 2, maxConnections: 1, maxTLSHandshakes: 1) { pool, addresses in
            let held = try await pool.lease(for: addresses[0])
            let waiting = Task { try await pool.lease(for: addresses[1], class: .catchUp) }
            #expect(try await eventually { await pool.counts.waitingByClass[.catchUp] == 1 })
            waiting.cancel()
            await #expect(throws: HTTPClientError.cancelled) { _ = try await waiting.value }
            #expect(await pool.counts.waiting == 0)
            await pool.release(held.connection, for: addresses[0])
            let counts = await pool.counts
            #expect(counts.handshakesCompleted == 1)
            #expect(counts.idle == 1)
        }
    }

    @Test("a lease still waiting at its deadline fails with the cap that held it back")
    func leaseDeadline() async throws {
        try await withSwarm(servers: 2, maxConnections: 1, maxTLSHandshakes: 1) { pool, addresses in
            let held = try await pool.lease(for: addresses[0])
            let error = await #expect(throws: ConnectionPoolError.self) {
                _ = try await pool.lease(for: addresses[1], class: .eduTransaction, deadline: .now() + .milliseconds(200))
            }
            guard case .waitTimeout(let destination, let requestClass, let waited, let reason) = error else {
                Issue.record("expected a wait timeout, got \(String(describing: error))")
                return
            }
            #expect(destination == addresses[1].destination.description)
            #expect(requestClass == .eduTransaction)
            #expect(waited >= .milliseconds(200))
            #expect(reason == .maxConnections(1))
            await pool.release(held.connection, for: addresses[0])
            #expect(try await fetchKeys(pool, addresses[1]) == 200)
        }
    }

    @Test("a connection that cannot be opened fails the lease with the attempt's error")
    func connectFailure() async throws {
        try await withSwarm(servers: 1, maxConnections: 2, maxTLSHandshakes: 1) { pool, addresses in
            let closedPort = ResolvedFederationAddress(
                destination: try ServerName("closed.example"), hostHeader: "closed.example",
                certificateName: .ipAddress("127.0.0.1"), endpoints: [.init(ipAddress: "127.0.0.1", port: 1)])
            await #expect(throws: HTTPClientError.connectionRefused(address: "127.0.0.1:1")) {
                _ = try await pool.lease(for: closedPort)
            }
            #expect(try await eventually { await pool.counts.open == 0 })
            #expect(await pool.counts.waiting == 0)
            #expect(try await fetchKeys(pool, addresses[0]) == 200)
        }
    }
}
