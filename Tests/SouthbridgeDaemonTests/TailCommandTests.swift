import Glibc
import SouthbridgeDaemon
import SouthbridgeSwarm
import SouthbridgeTestSupport
import Testing

@Suite("southbridge tail, against the real daemon")
struct TailCommandTests {
    @Test("prints one line per row, reconnects after a restart with its last tokens, and exits 0 on Ctrl-C")
    func followsAcrossARestart() async throws {
        let port = try LoopbackSocket.freePort()
        let fixture = try await replicationFixture(destinations: 2) { $0.replication.listen = .tcp(host: "127.0.0.1", port: port) }
        try await fixture.withTearDown {
            let (healthy, flaky) = (fixture.swarm.servers[0], fixture.swarm.servers[1])
            flaky.fail(next: 1, with: .fail(status: 503))
            try await fixture.start()
            var ingest = try await fixture.client()
            #expect(try await ingest.send(txnID: "one", body: DaemonProcess.ingestBody(0..<2, destinations: fixture.swarm.serverNames)).status == 200)
            #expect(try await ingest.send(txnID: "edu", body: toDeviceBody([healthy.serverName])).status == 200)
            await ingest.close()

            let tail = try ChildProcess(
                executable: DaemonProcess.binaryPath, arguments: ["tail", "--connect", "127.0.0.1:\(port)", "--from", "0"],
                environment: ["TZ": "UTC"], logPath: fixture.directory.path + "/tail.log")
            func rows() -> [String] {
                tail.output().split(separator: "\n").filter { $0.first?.isNumber == true }.map { String($0.dropFirst(21)) }
            }
            let flakyUp = "\(flaky.serverName)  up, delivered up to 2"
            #expect(await DaemonProcess.eventually(timeout: .seconds(20)) {
                rows().filter { $0.hasPrefix("federation") }.count == 3 && rows().contains { $0.hasSuffix(flakyUp) }
            }, "tail printed:\n\(tail.output())")

            fixture.process?.signal(SIGTERM)
            #expect(await fixture.process?.waitForExit(timeout: .seconds(20)) == 0)
            try await fixture.start()
            ingest = try await fixture.client()
            #expect(try await ingest.send(txnID: "two", body: DaemonProcess.ingestBody(2..<3, destinations: [healthy.serverName])).status == 200)
            await ingest.close()
            #expect(await DaemonProcess.eventually(timeout: .seconds(20)) {
                rows().filter { $0.hasPrefix("federation") }.count == 4
            }, "tail printed:\n\(tail.output())")

            tail.signal(SIGINT)
            #expect(await tail.waitForExit(timeout: .seconds(10)) == 0)
            let printed = rows()
            #expect(printed.filter { $0.hasPrefix("federation") } == [
                "federation 1  !room:origin.southbridge.localhost  pdu to 2 servers",
                "federation 2  !room:origin.southbridge.localhost  pdu to 2 servers",
                "federation 3  m.direct_to_device to 1 server",
                "federation 4  !room:origin.southbridge.localhost  pdu to 1 server",
            ])
            let destinations = printed.filter { $0.hasPrefix("destinations") }
            #expect(destinations.count == 2, "\(destinations)")
            #expect(destinations.first?.hasPrefix("destinations 1  \(flaky.serverName)  backoff: retry in ") == true)
            #expect(destinations.first?.hasSuffix(", 1 failure, delivered up to 0") == true)
            #expect(destinations.last == "destinations 2  \(flakyUp)")
            #expect(tail.output().contains("tail: connection closed; reconnecting"))
        }
    }
}
