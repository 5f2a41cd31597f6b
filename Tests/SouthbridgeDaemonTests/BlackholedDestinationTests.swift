import SouthbridgeSwarm
import SouthbridgeTestSupport
import Testing

@Suite("blackholed destinations on the real binary")
struct BlackholedDestinationTests {
    @Test("100 blackholed destinations delay a live one by at most one handshake deadline, and it never backs off")
    func blackholesCostLiveDestinationsNothing() async throws {
        // The shipped limits (1,024 connections, 4 handshakes, 20 new connections a second).
        let fixture = try await DaemonProcess(destinations: 1) {
            $0.sender.retryInitialInterval = .seconds(600)
            $0.sender.retryMaxInterval = .seconds(600)
        }
        var blackholes: [FaultyServer] = []
        for _ in 0..<100 { blackholes.append(try FaultyServer.start(.blackholed)) }
        let live = fixture.swarm.servers[0]
        let handshakeDeadline = fixture.configuration.transport.tlsHandshakeTimeout
        try await fixture.start()
        let client = try await fixture.client()
        // The blackholes come first, so they are asked for first.
        let names = blackholes.map(\.serverName) + [live.serverName]
        let started = ContinuousClock.now
        _ = try await client.send(txnID: "room", body: DaemonProcess.ingestBody(0..<1, destinations: names))
        let arrived = await DaemonProcess.eventually(timeout: .seconds(30)) { live.receivedPDUCount == 1 }
        let elapsed = ContinuousClock.now - started
        let detail = try await client.request(method: .GET, target: "/_southbridge/v1/destinations/\(live.serverName)")
        await client.close()
        await fixture.tearDown()
        for blackhole in blackholes { blackhole.stop() }
        #expect(arrived)
        #expect(elapsed <= handshakeDeadline, "the live destination got its PDU after \(elapsed)")
        #expect(detail.json?["retry_interval_ms"]?.intValue == 0)
    }

    @Test("servers that accept TCP and never answer the handshake give their handshake slots up to a live one")
    func silentServersGiveTheirSlotsUp() async throws {
        let fixture = try await DaemonProcess(destinations: 1) {
            $0.sender.retryInitialInterval = .seconds(600)
            $0.sender.retryMaxInterval = .seconds(600)
        }
        var silent: [FaultyServer] = []
        for _ in 0..<20 { silent.append(try FaultyServer.start(.silent)) }
        let live = fixture.swarm.servers[0]
        let handshakeDeadline = fixture.configuration.transport.tlsHandshakeTimeout
        try await fixture.start()
        let client = try await fixture.client()
        let started = ContinuousClock.now
        _ = try await client.send(txnID: "room", body: DaemonProcess.ingestBody(
            0..<1, destinations: silent.map(\.serverName) + [live.serverName]))
        let arrived = await DaemonProcess.eventually(timeout: .seconds(30)) { live.receivedPDUCount == 1 }
        let elapsed = ContinuousClock.now - started
        await client.close()
        await fixture.tearDown()
        for server in silent { server.stop() }
        #expect(arrived)
        // Twenty silent handshakes over four slots, each given up after a second of silence.
        #expect(elapsed <= handshakeDeadline, "the live destination got its PDU after \(elapsed)")
    }
}
