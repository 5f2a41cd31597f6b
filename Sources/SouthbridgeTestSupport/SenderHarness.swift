import Federation
import Glibc
import Logging
import NIOCore
import NIOPosix
import Outbox
import Resolver
import Sender
import SouthbridgeDaemon
import SouthbridgeSwarm
import Transport

/// The daemon's sending half in this process (`FederationStack` over a real Outbox on
/// disk) with a `ManualSenderClock`, and fake homeservers on loopback standing in for any
/// number of servers: each group `g` is one `SwarmServer` answering to every
/// `<name>.g.swarm.test:<port>`, the names resolved by a real dnsmasq. Days of backoff
/// pass in a call, and the process's own memory can be measured.
public final class SenderHarness: AwaitedTearDown, @unchecked Sendable {
    public static let origin = "origin.southbridge.localhost"

    public let directory: TemporaryDirectory
    public let key: SigningKey
    public let clock: ManualSenderClock
    public let authority: TestCertificateAuthority
    public let dnsmasq: DnsmasqServer
    public let outbox: Outbox
    public let stack: FederationStack
    public var sender: FederationSender { stack.sender }
    private var servers: [String: SwarmServer] = [:]
    /// The sender's `run()`, until `tearDown`.
    private var running: Task<Void, Never>?

    /// - Parameter hosts: how many names each group has (`s0.<group>.swarm.test` …), all
    ///   resolving to 127.0.0.1 in dnsmasq's authoritative `swarm.test` zone.
    public init(hosts: [String: Int], startMS: Int64 = 1_700_000_000_000,
                adjust: (inout Configuration) -> Void = { _ in }) async throws {
        directory = try TemporaryDirectory(prefix: "southbridge-sender")
        key = try SigningKey.generate(version: "test")
        clock = ManualSenderClock(startMS: startMS)
        authority = try TestCertificateAuthority()
        try authority.writeCACertificate(to: directory.path + "/ca.pem")
        var records = ["auth-zone=swarm.test"]
        for (group, count) in hosts.sorted(by: { $0.key < $1.key }) {
            records += (0..<count).map { "host-record=s\($0).\(group).swarm.test,127.0.0.1" }
        }
        dnsmasq = try await DnsmasqServer.start(records)
        var configuration = Configuration.withDefaults(serverName: Self.origin)
        configuration.storage.path = directory.path + "/outbox.sqlite3"
        configuration.tls.caFile = directory.path + "/ca.pem"
        configuration.network.ipRangeAllowlist = [try IPRange(parsing: "127.0.0.0/8")]
        configuration.resolver.nameservers = [try Configuration.Nameserver(parsing: "127.0.0.1:\(dnsmasq.address.port!)")]
        configuration.limits.maxNewConnectionsPerSecond = 10_000
        configuration.transport.requestTimeout = .seconds(5)
        adjust(&configuration)
        var logger = Logger(label: "southbridge.sender-harness")
        // SOUTHBRIDGE_TEST_LOG=debug shows what the sender does while a test runs.
        logger.logLevel = getenv("SOUTHBRIDGE_TEST_LOG").flatMap { Logger.Level(rawValue: String(cString: $0)) } ?? .error
        outbox = try Outbox(path: configuration.storage.path, logger: logger)
        stack = try FederationStack(
            configuration: configuration, signingKey: key, tlsContext: try TLSContext.client(caFile: configuration.tls.caFile),
            outbox: outbox, group: MultiThreadedEventLoopGroup.singleton, clock: clock, logger: logger)
        try await stack.sender.start()
        running = Task { [stack] in try? await stack.runSender() }
    }

    /// Starts (or restarts, on `port`) the server answering to every name in `group`.
    ///
    /// A new server gets a port below Linux's ephemeral range (32768 and up), so that when it
    /// is stopped to play a dead server, no other test's connection or listener takes the
    /// port before it is revived.
    @discardableResult
    public func startGroup(_ group: String, port: Int? = nil) async throws -> SwarmServer {
        var lastError: (any Error)?
        for _ in 0..<50 {
            do {
                let server = try await SwarmServer.start(
                    port: port ?? Int.random(in: 20_000..<32_000), certificateNames: ["*.\(group).swarm.test"],
                    virtualHostSuffix: ".\(group).swarm.test", certificateAuthority: authority,
                    trustedOrigins: [Self.origin: key.verifyKey], group: MultiThreadedEventLoopGroup.singleton)
                servers[group] = server
                return server
            } catch {
                lastError = error
                if port != nil { try await Task.sleep(for: .milliseconds(100)) }
            }
        }
        throw lastError!
    }

    /// Stops the group's server: its names then refuse connections (a dead server).
    public func stopGroup(_ group: String) async {
        await servers[group]?.stop()
    }

    public func server(_ group: String) -> SwarmServer? { servers[group] }

    /// `count` destination names in `group`, served by the group's server on `port`.
    public static func names(_ count: Int, in group: String, port: Int) -> [String] {
        (0..<count).map { "s\($0).\(group).swarm.test:\(port)" }
    }

    /// A PDU whose `event_id` is `$<n>` and whose content carries `n`.
    public static func pdu(_ number: Int, room: String, destinations: [String]) -> IncomingPDU {
        let event: JSONValue = .object([
            "event_id": .string("$\(number)"), "room_id": .string(room), "type": "m.room.message",
            "sender": .string("@alice:\(origin)"), "content": .object(["n": .integer(Int64(number))]),
        ])
        return IncomingPDU(roomID: room, eventID: "$\(number)", canonicalJSON: CanonicalJSON.encode(event),
                           destinations: destinations)
    }

    /// Stores PDUs `numbers` (in rooms chosen round-robin from `rooms`) for `destinations`, as ingest does.
    @discardableResult
    public func ingest(_ numbers: Range<Int>, rooms: [String], destinations: [String]) async throws -> IngestReceipt {
        let pdus = numbers.map { Self.pdu($0, room: rooms[$0 % rooms.count], destinations: destinations) }
        return try await outbox.accept(IngestBatch(txnID: "ingest-\(numbers.lowerBound)-\(numbers.upperBound)", pdus: pdus))
    }

    /// Moves the sender's clock on by `milliseconds`, in steps no longer than `stepMS`, and
    /// after each step waits until the sender has acted on everything then due
    /// (`FederationSender.isSettled`): retries that came due have been answered, except those
    /// to the destinations in `ignoring`. Returns false if that took longer than `timeout` at any step.
    @discardableResult
    public func advance(byMS milliseconds: Int64, stepMS: Int64 = 60_000, ignoring: Set<String> = [],
                        timeout: Duration = .seconds(60)) async -> Bool {
        var left = milliseconds
        var settledEveryTime = true
        while left > 0 {
            let step = min(stepMS, left)
            clock.advance(byMS: step)
            left -= step
            if await !waitUntilSettled(ignoring: ignoring, timeout: timeout) { settledEveryTime = false }
        }
        return settledEveryTime
    }

    /// Waits until the sender has acted on everything due now and no destination is sending
    /// (besides those in `ignoring`), or `timeout`.
    @discardableResult
    public func waitUntilSettled(ignoring: Set<String> = [], timeout: Duration = .seconds(60)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if await stack.sender.isSettled(ignoring: ignoring) { return true }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return await stack.sender.isSettled(ignoring: ignoring)
    }

    public func tearDown() async {
        // The test is over: whatever is still in flight is cancelled rather than waited for.
        _ = await stack.sender.shutdown(within: .zero)
        await running?.value
        await stack.pool.closeIdleConnections()
        for server in servers.values { await server.stop() }
        dnsmasq.stop()
        outbox.close()
        directory.remove()
    }
}
