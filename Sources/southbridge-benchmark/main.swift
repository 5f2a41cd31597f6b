import Federation
import Glibc
import Logging
import NIOCore
import NIOPosix
import Resolver
import SouthbridgeDaemon
import SouthbridgeSwarm
import SouthbridgeTestSupport
import Transport

/// Benchmarks that drive the real `southbridge` binary (built next to this one) against
/// a swarm of fake homeservers in this process, and measure the daemon's process alone.
///
///     swift build -c release --static-swift-stdlib
///     .build/release/southbridge-benchmark delivery --destinations 20 --pdus 10000 \
///         [--max-connections 64] [--max-tls-handshakes 4] [--new-connections-per-second 20]
///     .build/release/southbridge-benchmark room [--servers 500] [--blackholed-percent 20] [--silent-percent 0] [--refusing-percent 10] \
///         [--messages 5] [--lifted] [--max-connections N] [--max-tls-handshakes N] \
///         [--new-connections-per-second N] [--bound-seconds 300]
///     .build/release/southbridge-benchmark resolve --names 2000 --rounds 20
///     .build/release/southbridge-benchmark tls --seconds 3 --rounds 5
///     .build/release/southbridge-benchmark idle-connections --connections 1000 [--tls 1.2|1.3]
///     .build/release/southbridge-benchmark storage-writes [--destinations 1,10,500,5000] [--rates 1,100,1000] [--seconds 10] [--live]
///         [--commit-window-ms 0]
///     .build/release/southbridge-benchmark storage-pragmas [--pdus 2000]
///     .build/release/southbridge-benchmark replication [--pdus 20000] [--followers 10]
///     .build/release/southbridge-benchmark soak [--minutes 10 | --seconds N] [--servers 300] [--rate 2] [--clients 3] [--seed N]
///         [--fault-interval-seconds 45] [--faulty-percent 30] [--restarts 2] [--warm-up-seconds 60] [--drain-seconds 180]
///     .build/release/southbridge-benchmark scale fanout [--destinations 1000] [--lifted-pacing] [--bound-seconds 900] [--no-header]
///     .build/release/southbridge-benchmark scale meltdown [--servers 500] [--faulty-percent 30] [--seconds 60] [--lifted-pacing]
///     .build/release/southbridge-benchmark scale restart [--destinations 10000] [--pdus 1] [--lifted-pacing]
///     .build/release/southbridge-benchmark scale burst [--servers 500] [--pdus 20] [--interval-ms 50] [--cold] [--lifted-pacing]

func option(_ name: String, default value: Int) -> Int {
    optionalOption(name) ?? value
}

/// The value of `--name N`, or nil when the option is not given; a value that is not a
/// whole number ends the run with a line saying so.
func optionalOption(_ name: String) -> Int? {
    guard let text = optionalStringOption(name) else { return nil }
    guard let number = Int(text) else { exitWithUsageError("\(name) needs a whole number, not \(text.debugDescription)") }
    return number
}

func stringOption(_ name: String, default value: String) -> String {
    optionalStringOption(name) ?? value
}

private func optionalStringOption(_ name: String) -> String? {
    let arguments = CommandLine.arguments
    guard let index = arguments.firstIndex(of: name) else { return nil }
    guard index + 1 < arguments.count, !arguments[index + 1].hasPrefix("--") else {
        exitWithUsageError("\(name) needs a value")
    }
    return arguments[index + 1]
}

func exitWithUsageError(_ message: String) -> Never {
    var text = "southbridge-benchmark: \(message)\n"
    _ = text.withUTF8 { write(STDERR_FILENO, $0.baseAddress, $0.count) }
    exit(2)
}

/// CPU seconds (user + system) the process has used, from `/proc/<pid>/stat`.
func cpuSeconds(pid: pid_t) -> Double {
    guard let file = fopen("/proc/\(pid)/stat", "r") else { return 0 }
    defer { fclose(file) }
    var line = [CChar](repeating: 0, count: 2048)
    guard fgets(&line, Int32(line.count), file) != nil else { return 0 }
    let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    guard let close = text.lastIndex(of: ")") else { return 0 }
    let fields = text[text.index(after: close)...].split(separator: " ")
    guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

func delivery(destinations: Int, pdus: Int, maxConnections: Int, maxTLSHandshakes: Int, newConnectionsPerSecond: Int) async throws {
    let fixture = try await DaemonProcess(destinations: destinations) { configuration in
        configuration.log.level = "warning"
        configuration.limits.maxConnections = maxConnections
        configuration.limits.maxTLSHandshakes = maxTLSHandshakes
        configuration.limits.maxNewConnectionsPerSecond = newConnectionsPerSecond
    }
    try await fixture.start()
    guard let process = fixture.process else { return }
    try await Task.sleep(for: .seconds(2))
    let idleKiB = ProcessMemory.currentKiB(pid: process.pid)

    let client = try await fixture.client()
    let started = ContinuousClock.now
    let cpuBefore = cpuSeconds(pid: process.pid)
    let batch = 500
    var submitted = 0
    while submitted < pdus {
        let count = min(batch, pdus - submitted)
        let body = DaemonProcess.ingestBody(submitted..<(submitted + count), destinations: fixture.swarm.serverNames)
        let response = try await client.send(txnID: "bench-\(submitted)", body: body)
        guard response.status == 200 else {
            print("ingest answered \(response.status): \(String(decoding: response.body, as: UTF8.self))")
            exit(1)
        }
        submitted += count
    }
    await client.close()
    let acceptedAfter = ContinuousClock.now - started
    let expected = pdus * destinations
    let delivered = await DaemonProcess.eventually(timeout: .seconds(600)) { fixture.swarm.receivedPDUCount >= expected }
    let elapsed = ContinuousClock.now - started
    let cpu = cpuSeconds(pid: process.pid) - cpuBefore
    let afterKiB = ProcessMemory.currentKiB(pid: process.pid)
    let peakKiB = ProcessMemory.peakKiB(pid: process.pid)
    await fixture.tearDown()
    guard delivered else {
        print("only \(fixture.swarm.receivedPDUCount) of \(expected) PDU copies arrived")
        exit(1)
    }
    print("""
        delivery: \(pdus) PDUs × \(destinations) destinations = \(expected) PDU copies
          limits: max_connections \(maxConnections), max_tls_handshakes \(maxTLSHandshakes), \
        max_new_connections_per_second \(newConnectionsPerSecond)
          accepted (ingest, fsync'd) in \(acceptedAfter), all delivered in \(elapsed)
          daemon CPU: \((cpu * 100).rounded() / 100) s; \(Int(Double(expected) / max(cpu, 0.001))) PDU deliveries per CPU-second
          daemon RSS idle after start: \(idleKiB / 1024) MiB (\(idleKiB) KiB)
          daemon RSS after delivery:  \(afterKiB / 1024) MiB (\(afterKiB) KiB); peak \(peakKiB / 1024) MiB
        """)
}

/// Server discovery through `FederationResolver` against a local dnsmasq: `names`
/// distinct `hN.example.test:8448` names (A and AAAA lookups, no `.well-known`), first
/// with a cold cache, then `rounds` more times from the caches.
func resolve(names: Int, rounds: Int) async throws {
    let records = (0..<names).map { "host-record=h\($0).example.test,10.\($0 / 65536 % 256).\($0 / 256 % 256).\($0 % 256)" }
    let dnsmasq = try await DnsmasqServer.start(records, ttl: 3600)
    defer { dnsmasq.stop() }
    let directory = try TemporaryDirectory(prefix: "southbridge-bench-resolve")
    defer { directory.remove() }
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let logger = Logger(label: "benchmark") { _ in SwiftLogNoOpLogHandler() }
    let dns = DNSResolver(configuration: .init(nameservers: [dnsmasq.address], hostsFilePath: directory.path + "/no-hosts"),
                          group: group, logger: logger)
    let pool = ConnectionPool(
        limits: .init(maxConnections: 4, maxTLSHandshakes: 1, connectTimeout: .seconds(1), tlsHandshakeTimeout: .seconds(1)),
        tlsContext: try TLSContext.client(caFile: nil), group: group, logger: logger)
    let allowlist = [try IPRange(parsing: "10.0.0.0/8")]
    let wellKnown = WellKnownResolver(fetcher: PoolWellKnownFetcher(pool: pool), lookUpAddresses: { try await dns.addresses(for: $0) },
                                      ipRangeAllowlist: allowlist, logger: logger)
    let resolver = FederationResolver(dns: dns, wellKnown: wellKnown, ipRangeAllowlist: allowlist, logger: logger)
    let serverNames = try (0..<names).map { try ServerName("h\($0).example.test:8448") }

    func resolveAll() async throws -> Duration {
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for name in serverNames { tasks.addTask { _ = try await resolver.resolve(name) } }
            try await tasks.waitForAll()
        }
        return ContinuousClock.now - started
    }
    let cold = try await resolveAll()
    var cached: Duration = .zero
    for _ in 0..<rounds { cached += try await resolveAll() }
    let statistics = dns.statistics
    func perSecond(_ count: Int, _ duration: Duration) -> Int {
        Int(Double(count) / (Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18))
    }
    print("""
        resolve: \(names) names (A + AAAA at a local dnsmasq), then \(rounds) rounds from the caches
          cold cache:   \(perSecond(names, cold)) resolutions/s (\(cold) for \(names))
          cached:       \(perSecond(names * rounds, cached)) resolutions/s (\(cached) for \(names * rounds))
          DNS queries sent: \(statistics.queriesSent), peak in flight \(statistics.peakQueriesInFlight)
        """)
    try await group.shutdownGracefully()
}

let usage = "usage: southbridge-benchmark delivery [--destinations N] [--pdus N] [--max-connections N] [--max-tls-handshakes N] [--new-connections-per-second N] | room [--servers N] [--blackholed-percent N] [--silent-percent N] [--refusing-percent N] [--messages N] [--lifted] [--max-connections N] [--max-tls-handshakes N] [--new-connections-per-second N] [--bound-seconds N] | resolve [--names N] [--rounds N] | tls [--seconds N] [--rounds N] | idle-connections [--connections N] [--tls 1.2|1.3] | storage-writes [--destinations 1,10,500,5000] [--rates 1,100,1000] [--seconds N] [--commit-window-ms N] [--live] | storage-pragmas [--pdus N] | replication [--pdus N] [--followers N] | soak [--minutes N | --seconds N] [--servers N] [--rate N] [--clients N] [--seed N] [--fault-interval-seconds N] [--faulty-percent N] [--restarts N] [--warm-up-seconds N] [--drain-seconds N] | scale fanout [--destinations N] [--lifted-pacing] | scale meltdown [--servers N] [--faulty-percent N] [--seconds N] [--lifted-pacing] | scale restart [--destinations N] [--pdus N] [--lifted-pacing] | scale burst [--servers N] [--pdus N] [--interval-ms N] [--cold] [--lifted-pacing] (every scale scenario: [--bound-seconds N] [--no-header])"

let arguments = CommandLine.arguments.dropFirst()
if arguments.contains("--help") || arguments.contains("-h") {
    print(usage)
    exit(0)
}
// A mistyped option must not run a long benchmark with its default instead.
let knownOptions = Set(usage.split(separator: " ").map { String($0.filter { !"[]()|".contains($0) }) }.filter { $0.hasPrefix("--") })
if let unknown = arguments.first(where: { $0.hasPrefix("--") && !knownOptions.contains($0) }) {
    exitWithUsageError("unknown option \(unknown); --help lists them")
}
do {
    switch arguments.first {
    case "delivery":
        try await delivery(destinations: option("--destinations", default: 20), pdus: option("--pdus", default: 10_000),
                           maxConnections: option("--max-connections", default: 64),
                           maxTLSHandshakes: option("--max-tls-handshakes", default: 4),
                           newConnectionsPerSecond: option("--new-connections-per-second", default: 20))
    case "room":
        try await RoomBenchmark.fromCommandLine().run()
    case "resolve":
        try await resolve(names: option("--names", default: 2000), rounds: option("--rounds", default: 20))
    case "tls":
        try await TLSBenchmark.run(seconds: option("--seconds", default: 3), rounds: option("--rounds", default: 5))
    case "storage-writes":
        try await StorageWritesBenchmark.fromCommandLine().run()
    case "storage-pragmas":
        try await StoragePragmasBenchmark.fromCommandLine().run()
    case "replication":
        try await ReplicationBenchmark.fromCommandLine().run()
    case "soak":
        try await SoakBenchmark.fromCommandLine().run()
    case "scale":
        try await ScaleBenchmark.fromCommandLine().run()
    case "idle-connections":
        try await IdleConnectionsBenchmark.run(
            connections: option("--connections", default: 1000), tlsVersion: stringOption("--tls", default: "1.3"))
    default:
        print(usage)
        exit(2)
    }
} catch {
    // A benchmark that cannot run says why in one line, not with a crash report.
    var text = "southbridge-benchmark: \(error)\n"
    _ = text.withUTF8 { write(STDERR_FILENO, $0.baseAddress, $0.count) }
    exit(1)
}
