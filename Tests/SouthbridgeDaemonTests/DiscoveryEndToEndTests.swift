import Federation
import NIOCore
import SouthbridgeDaemon
import SouthbridgeSwarm
import SouthbridgeTestSupport
import Testing

@Suite("southbridge binary, server discovery end to end")
struct DiscoveryEndToEndTests {
    @Test("PDUs reach destinations found through .well-known delegation and through SRV")
    func deliversThroughDelegationAndSRV() async throws {
        let fixture = try await DaemonProcess(destinations: 0)
        try await fixture.withTearDown {
            let authority = fixture.swarm.certificateAuthority
            let trusted = [DaemonProcess.serverName: fixture.key.verifyKey]

            // wk.example.test delegates to fed.example.test, whose SRV record points at `delegated`.
            let delegated = try await SwarmServer.start(
                serverName: "wk.example.test", certificateNames: ["fed.example.test"],
                certificateAuthority: authority, trustedOrigins: trusted, group: fixture.group)
            // srv.example.test has no .well-known; its SRV record points at `viaSRV`.
            let viaSRV = try await SwarmServer.start(
                serverName: "srv.example.test", certificateNames: ["srv.example.test"],
                certificateAuthority: authority, trustedOrigins: trusted, group: fixture.group)
            let wellKnown = try await SwarmServer.start(
                certificateNames: ["wk.example.test", "srv.example.test"],
                wellKnownAnswers: ["wk.example.test": ["m.server": "fed.example.test"]],
                certificateAuthority: authority, trustedOrigins: trusted, group: fixture.group)
            let dnsmasq = try await DnsmasqServer.start([
                "host-record=wk.example.test,127.0.0.1",
                "host-record=srv.example.test,127.0.0.1",
                "srv-host=_matrix-fed._tcp.fed.example.test,target1.example.test,\(delegated.port),10,0",
                "srv-host=_matrix-fed._tcp.srv.example.test,target2.example.test,\(viaSRV.port),10,0",
                "host-record=target1.example.test,127.0.0.1",
                "host-record=target2.example.test,127.0.0.1",
            ])
            defer { dnsmasq.stop() }
            try fixture.reconfigure {
                $0.resolver.nameservers = [try! Configuration.Nameserver(parsing: "127.0.0.1:\(dnsmasq.address.port!)")]
                $0.resolver.wellKnownPort = wellKnown.port
            }
            try await fixture.start()

            let client = try await fixture.client()
            let response = try await client.send(
                txnID: "discovery", body: DaemonProcess.ingestBody(0..<10, destinations: ["wk.example.test", "srv.example.test"]))
            #expect(response.status == 200)
            await client.close()
            let arrived = await DaemonProcess.eventually(timeout: .seconds(30)) {
                delegated.receivedPDUCount >= 10 && viaSRV.receivedPDUCount >= 10
            }
            #expect(arrived, "\(fixture.process?.output() ?? "")")
            #expect(pduNumbers(delegated) == Array(0..<10))
            #expect(pduNumbers(viaSRV) == Array(0..<10))
            #expect(delegated.rejectedSignatureCount + viaSRV.rejectedSignatureCount == 0)
            for server in [delegated, viaSRV, wellKnown] { await server.stop() }
        }
    }
}
