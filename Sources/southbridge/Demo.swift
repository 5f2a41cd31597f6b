import Federation
import Glibc
import Logging
import NIOCore
import NIOPosix
import Resolver
import SouthbridgeDaemon
import SouthbridgeSwarm
import Systemd

/// `southbridge demo`: the whole daemon against fake homeservers on loopback.
///
/// It makes a temporary directory with a throwaway signing key, ingest token and CA,
/// starts `serverCount` swarm servers that check every X-Matrix signature, starts the
/// real daemon on that configuration, hands it `pduCount` PDUs addressed to every server,
/// shows progress, and ends with a summary.
struct Demo {
    let serverCount: Int
    let pduCount: Int
    static let serverName = "demo.southbridge.localhost"
    static let pdusPerIngestTransaction = 100

    func run() async throws {
        SouthbridgeLogging.bootstrap(level: .warning)
        let logger = Logger(label: "southbridge")
        let directory = try TemporaryDirectory(prefix: "southbridge-demo")
        defer { directory.remove() }

        let key = try SigningKey.generate(version: "demo")
        try SigningKeyFile.write(key, path: directory.path + "/signing.key")
        let token = Base64.encodeURLSafeUnpadded(try randomBytes(24))
        try writeFile(directory.path + "/ingest.token", token + "\n")

        // The fake servers get their own event loop, apart from the daemon's.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        print("starting \(serverCount) fake homeservers on 127.0.0.1 with a temporary CA…")
        let swarm = try await Swarm.start(count: serverCount, origin: Self.serverName, originKey: key.verifyKey, group: group)
        try swarm.certificateAuthority.writeCACertificate(to: directory.path + "/ca.pem")

        var configuration = Configuration.withDefaults(serverName: Self.serverName)
        configuration.server.signingKeyPath = directory.path + "/signing.key"
        configuration.storage.path = directory.path + "/outbox.sqlite3"
        configuration.ingest.listen = .tcp(host: "127.0.0.1", port: 0)
        configuration.ingest.tokenFile = directory.path + "/ingest.token"
        configuration.tls.caFile = directory.path + "/ca.pem"
        configuration.network.ipRangeAllowlist = [try IPRange(parsing: "127.0.0.0/8")]
        configuration.sender.retryInitialInterval = .seconds(1)

        let daemon = try await Daemon.start(configuration: configuration, logger: logger)
        let runTask = Task { try await daemon.run() }
        guard case .tcp(let host, let port) = daemon.ingestEndpoint else { return }
        let client = try await IngestClient.connect(host: host, port: port, token: token, group: group)

        let started = ContinuousClock.now
        let expected = pduCount * serverCount
        print("handing \(pduCount) PDUs for \(serverCount) destinations to southbridge at \(daemon.ingestEndpoint)…")
        var submitted = 0
        while submitted < pduCount {
            let batch = min(Self.pdusPerIngestTransaction, pduCount - submitted)
            let body = ingestBody(first: submitted, count: batch, destinations: swarm.serverNames)
            let response = try await client.send(txnID: "demo-\(submitted)", body: body)
            guard response.status == 200 else {
                throw DemoError("ingest answered \(response.status): \(String(decoding: response.body, as: UTF8.self))")
            }
            submitted += batch
        }
        await client.close()

        var lastShown = -1
        while swarm.receivedPDUCount < expected {
            let delivered = swarm.receivedPDUCount
            if delivered != lastShown {
                print("  delivered \(delivered) of \(expected) PDU copies")
                lastShown = delivered
            }
            if ContinuousClock.now - started > .seconds(600) { throw DemoError("gave up waiting after 10 minutes") }
            try await Task.sleep(for: .milliseconds(250))
        }
        let elapsed = ContinuousClock.now - started
        let counts = await daemon.pool.counts
        await daemon.stop()
        try await runTask.value
        await swarm.stop()
        try? await group.shutdownGracefully()

        print("""
            done: \(expected) PDU copies (\(pduCount) PDUs × \(serverCount) destinations) delivered and signature-checked \
            in \(elapsed.formattedSeconds) s
              signatures rejected by the fake servers: \(swarm.rejectedSignatureCount)
              TLS handshakes: \(counts.handshakesCompleted), most connections open at once: \(counts.peakOpen) \
            (limit \(configuration.limits.maxConnections))
              peak RSS of this process (daemon, fake servers and client together): \(ProcessMemory.peakKiB() / 1024) MiB
            """)
    }

    private func ingestBody(first: Int, count: Int, destinations: [String]) -> [UInt8] {
        let destinationList: JSONValue = .array(destinations.map { .string($0) })
        let pdus: [JSONValue] = (first..<(first + count)).map { index in
            .object([
                "pdu": .object([
                    "type": "m.room.message",
                    "room_id": .string("!demo\(index % 10):\(Self.serverName)"),
                    "sender": .string("@alice:\(Self.serverName)"),
                    "origin_server_ts": .integer(WallClock.nowMS()),
                    "depth": .integer(Int64(index + 1)),
                    "prev_events": .array([]),
                    "auth_events": .array([]),
                    "content": .object(["msgtype": "m.text", "body": .string("hello from the southbridge demo #\(index)")]),
                ]),
                "destinations": destinationList,
            ])
        }
        return CanonicalJSON.encode(.object(["pdus": .array(pdus)]))
    }
}

struct DemoError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}


extension Duration {
    var formattedSeconds: String {
        let fraction = milliseconds % 1000
        return "\(milliseconds / 1000).\(fraction < 100 ? "0" : "")\(fraction < 10 ? "0" : "")\(fraction)"
    }
}
