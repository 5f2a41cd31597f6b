import Federation
import Glibc
import NIOCore
import NIOPosix
import Replication
import Resolver
import SouthbridgeDaemon
import SouthbridgeSwarm

/// The real `southbridge` binary run as a child with a config in a temporary directory,
/// a swarm of fake homeservers, and a notify socket standing in for systemd: what the
/// end-to-end tests and the benchmarks drive.
public final class DaemonProcess: AwaitedTearDown, @unchecked Sendable {
    public static let serverName = "origin.southbridge.localhost"

    public let directory: TemporaryDirectory
    public let key: SigningKey
    public let token = "test-token-0123456789"
    public let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    public let swarm: Swarm
    public let configPath: String
    /// The configuration the next `start()` uses.
    public private(set) var configuration: Configuration
    public let ingestSocketPath: String
    public private(set) var process: ChildProcess?
    public private(set) var notifySocket: NotifySocket?
    private var starts = 0

    public init(destinations: Int, adjust: (inout Configuration) -> Void = { _ in }) async throws {
        directory = try TemporaryDirectory(prefix: "southbridge-test")
        key = try SigningKey.generate(version: "test")
        try SigningKeyFile.write(key, path: directory.path + "/signing.key")
        try writeFile(directory.path + "/ingest.token", token + "\n")
        swarm = try await Swarm.start(count: destinations, origin: Self.serverName, originKey: key.verifyKey, group: group)
        try swarm.certificateAuthority.writeCACertificate(to: directory.path + "/ca.pem")
        ingestSocketPath = directory.path + "/ingest.sock"

        var configuration = Configuration.withDefaults(serverName: Self.serverName)
        configuration.server.signingKeyPath = directory.path + "/signing.key"
        configuration.storage.path = directory.path + "/outbox.sqlite3"
        configuration.ingest.listen = .unix(path: ingestSocketPath)
        configuration.ingest.tokenFile = directory.path + "/ingest.token"
        configuration.replication.listen = nil
        configuration.tls.caFile = directory.path + "/ca.pem"
        configuration.network.ipRangeAllowlist = [try IPRange(parsing: "127.0.0.0/8")]
        configuration.sender.retryInitialInterval = .milliseconds(200)
        configuration.sender.retryMaxInterval = .milliseconds(1000)
        configuration.log.level = "info"
        adjust(&configuration)
        self.configuration = configuration
        configPath = directory.path + "/southbridge.toml"
        try writeFile(configPath, configuration.renderTOML())
    }

    /// `southbridge` in the same build directory as the running test or benchmark executable,
    /// or `SOUTHBRIDGE_BINARY` when set (the installed `/usr/bin/southbridge`, say).
    public static var binaryPath: String {
        if let binary = getenv("SOUTHBRIDGE_BINARY"), binary.pointee != 0 { return String(cString: binary) }
        var buffer = [CChar](repeating: 0, count: 4096)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let exe = String(decoding: buffer[0..<max(0, length)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let directory = exe.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        return directory + "/southbridge"
    }

    /// Changes the configuration for the next `start()`, for settings that depend on peers
    /// started after the fixture (a DNS server's port, say).
    public func reconfigure(_ adjust: (inout Configuration) -> Void) throws {
        adjust(&configuration)
        try writeFile(configPath, configuration.renderTOML())
    }

    /// Starts the binary and waits for READY=1; with `cpus`, pinned to those CPUs.
    public func start(environment: [String: String] = [:], cpus: [Int]? = nil) async throws {
        starts += 1
        let notify = try NotifySocket(path: directory.path + "/notify-\(starts).sock")
        notifySocket = notify
        let child = try ChildProcess(
            executable: Self.binaryPath, arguments: ["run", "--config", configPath],
            environment: environment.merging(["NOTIFY_SOCKET": notify.path]) { $1 },
            logPath: directory.path + "/southbridge-\(starts).log", cpus: cpus)
        process = child
        let deadline = ContinuousClock.now + .seconds(20)
        while !notify.messages().contains(where: { $0.contains("READY=1") }) {
            if let code = await child.waitForExit(timeout: .zero) {
                throw FixtureError("southbridge exited with \(code) before READY=1; it printed:\n\(child.output())")
            }
            guard ContinuousClock.now < deadline else {
                await child.terminate()
                throw FixtureError("southbridge did not send READY=1 within 20 s; it printed:\n\(child.output())")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// The replication endpoint's TCP port, from the READY status of the last start
    /// (`replication.listen` = "127.0.0.1:0" lets the kernel choose it).
    public var replicationPort: Int? {
        guard let status = notifySocket?.messages().last(where: { $0.contains("replication on ") }),
              let range = status.firstRange(of: "replication on ") else { return nil }
        let address = status[range.upperBound...].prefix { $0 != "\n" && $0 != ";" }
        return address.split(separator: ":").last.flatMap { Int($0) }
    }

    /// A new follower of the replication endpoint over TCP.
    public func replicationClient(receiveBufferBytes: Int? = nil) async throws -> ReplicationClient {
        guard let port = replicationPort else { throw FixtureError("southbridge reported no replication endpoint") }
        return try await ReplicationClient.connect(port: port, receiveBufferBytes: receiveBufferBytes, group: group)
    }

    /// The daemon's `/metrics` text.
    public func metrics() async throws -> String {
        let client = try await client()
        let response: IngestClient.Response
        do {
            response = try await client.request(method: .GET, target: "/metrics")
        } catch {
            await client.close()
            throw error
        }
        await client.close()
        return String(decoding: response.body, as: UTF8.self)
    }

    /// Asks `/metrics` until it holds `line`, for at most `timeout`; returns whether it did.
    public func eventually(metricsContain line: String, timeout: Duration = .seconds(20)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let text = try? await metrics(), text.contains(line) { return true }
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(50))
        }
    }

    public func client() async throws -> IngestClient {
        try await IngestClient.connect(unixPath: ingestSocketPath, token: token, group: group)
    }

    /// An ingest body with PDUs numbered `range`, each for every destination given.
    public static func ingestBody(_ range: Range<Int>, destinations: [String], room: String = "!room:origin.southbridge.localhost") -> [UInt8] {
        let pdus: [JSONValue] = range.map { index in
            .object([
                "pdu": .object([
                    "type": .string("m.room.message"),
                    "room_id": .string(room),
                    "sender": .string("@alice:\(serverName)"),
                    "origin_server_ts": .integer(1_700_000_000_000 + Int64(index)),
                    "depth": .integer(Int64(index + 1)),
                    "content": .object(["body": .string("message \(index)"), "n": .integer(Int64(index))]),
                ]),
                "destinations": .array(destinations.map { .string($0) }),
            ])
        }
        return CanonicalJSON.encode(.object(["pdus": .array(pdus)]))
    }

    /// Waits until `condition` holds, polling.
    public static func eventually(timeout: Duration, _ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return condition()
    }

    /// Asks the admin API about `destination` until its answer satisfies `condition`, for at
    /// most `timeout`; returns whether it did.
    public func eventually(destination: String, timeout: Duration = .seconds(20),
                           _ condition: (JSONValue) -> Bool) async throws -> Bool {
        let client = try await client()
        let deadline = ContinuousClock.now + timeout
        var matched = false
        while true {
            let answer = try? await client.request(method: .GET, target: "/_southbridge/v1/destinations/\(destination)")
            if let json = answer?.json, condition(json) {
                matched = true
                break
            }
            guard ContinuousClock.now < deadline else { break }
            try? await Task.sleep(for: .milliseconds(20))
        }
        await client.close()
        return matched
    }

    public func tearDown() async {
        if let process { await process.terminate() }
        await swarm.stop()
        try? await group.shutdownGracefully()
        directory.remove()
    }
}

struct FixtureError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The numbers `n` (see `DaemonProcess.ingestBody`) of the PDUs a server received.
public func pduNumbers(_ server: SwarmServer) -> [Int] {
    server.receivedPDUs.compactMap { pdu in
        guard case .object(let event) = pdu, case .object(let content)? = event["content"],
              case .integer(let number)? = content["n"] else { return nil }
        return Int(number)
    }
}
