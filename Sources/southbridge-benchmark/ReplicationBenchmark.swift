import Glibc
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Replication
import SouthbridgeDaemon
import SouthbridgeSwarm
import SouthbridgeTestSupport

/// `southbridge-benchmark replication`: rows per second from the real daemon's replication endpoint to 1 and to
/// 10 followers, live while PDUs are ingested and from history, and what one follower that stops reading costs
/// the others (it is cut off; they should not slow down).
///
///     .build/release/southbridge-benchmark replication [--pdus 20000] [--followers 10]
struct ReplicationBenchmark {
    let pdus: Int
    let followers: Int

    static func fromCommandLine() -> ReplicationBenchmark {
        ReplicationBenchmark(pdus: option("--pdus", default: 20_000), followers: option("--followers", default: 10))
    }

    func run() async throws {
        print("replication: \(pdus) PDUs ingested in batches of 1,000 for 1 destination; rows counted at each follower")
        let ingestAlone = try await scenario(followers: 0, slow: false)
        print("  ingest alone:                      \(ingestAlone.rate) PDUs/s accepted")
        for (count, slow) in [(1, false), (followers, false), (followers, true)] {
            let result = try await scenario(followers: count, slow: slow)
            let label = slow ? "\(count) live followers, 1 not reading" : "\(count) live follower\(count == 1 ? "" : "s")"
            print("  \(label.padding(34)) \(result.rate) rows/s to every reading follower (last row \(result.lastRowAfter) after the first ingest)"
                  + (slow ? "; the one not reading: \(result.slowOutcome)" : ""))
            if count == 1 || slow { continue }
            print("  \("history to \(count) followers".padding(34)) \(result.historyRate) rows/s each (REPLICATE federation 0 of all \(pdus) rows)")
        }
    }

    struct Result {
        var rate: Int
        var lastRowAfter: Duration
        var historyRate: Int
        var slowOutcome: String
    }

    private func scenario(followers count: Int, slow: Bool) async throws -> Result {
        let fixture = try await DaemonProcess(destinations: 1) { configuration in
            configuration.log.level = "warning"
            configuration.replication.listen = .tcp(host: "127.0.0.1", port: 0)
            configuration.replication.maxConnections = 64
        }
        return try await fixture.withTearDown {
            try await fixture.start()
            guard let port = fixture.replicationPort else { throw BenchmarkError("no replication port") }
            var counters: [RowCounter] = []
            for _ in 0..<count { counters.append(try await RowCounter.follow(port: port, from: "NOW", group: fixture.group)) }
            var silent: RowCounter?
            if slow { silent = try await RowCounter.follow(port: port, from: "NOW", group: fixture.group, reading: false) }

            let client = try await fixture.client()
            let started = ContinuousClock.now
            var submitted = 0
            while submitted < pdus {
                let batch = min(1000, pdus - submitted)
                let body = DaemonProcess.ingestBody(submitted..<submitted + batch, destinations: fixture.swarm.serverNames)
                let response = try await client.send(txnID: "bench-\(submitted)", body: body)
                guard response.status == 200 else { throw BenchmarkError("ingest answered \(response.status)") }
                submitted += batch
            }
            let ingested = ContinuousClock.now - started
            await client.close()
            for counter in counters { try await counter.waitFor(rows: pdus, timeout: .seconds(300)) }
            let lastRow = counters.map(\.lastRowAt).max().map { $0 - started } ?? ingested
            var slowOutcome = ""
            if let silent {
                let cutOff = await fixture.eventually(metricsContain: "southbridge_replication_disconnects_total{reason=\"failed_to_keep_up\"} 1",
                                                      timeout: .seconds(10))
                slowOutcome = cutOff ? "cut off with ERROR Failed to keep up" : "not cut off"
                silent.close()
            }
            var historyRate = 0
            if count > 1 && !slow {
                let historyStarted = ContinuousClock.now
                var history: [RowCounter] = []
                for _ in 0..<count { history.append(try await RowCounter.follow(port: port, from: "0", group: fixture.group)) }
                for counter in history { try await counter.waitFor(rows: pdus, timeout: .seconds(300)) }
                historyRate = Self.perSecond(pdus, ContinuousClock.now - historyStarted)
                for counter in history { counter.close() }
            }
            for counter in counters { counter.close() }
            return Result(rate: Self.perSecond(pdus, count == 0 ? ingested : lastRow), lastRowAfter: lastRow,
                          historyRate: historyRate, slowOutcome: slowOutcome)
        }
    }

    static func perSecond(_ count: Int, _ duration: Duration) -> Int {
        Int(Double(count) / (Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18))
    }
}

/// A follower that only counts its `RDATA` lines, on the event loop, so that the benchmark measures the daemon
/// rather than itself.
final class RowCounter: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer

    private let lock = NIOLock()
    private var rows = 0
    private var lastRow: ContinuousClock.Instant?
    private var channel: (any Channel)?
    private var atLineStart = true

    var lastRowAt: ContinuousClock.Instant { lock.withLock { lastRow ?? .now } }

    static func follow(port: Int, from token: String, group: any EventLoopGroup, reading: Bool = true) async throws -> RowCounter {
        let counter = RowCounter()
        var bootstrap = ClientBootstrap(group: group).channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(counter) }
        }
        if !reading {
            bootstrap = bootstrap.channelOption(.socketOption(.so_rcvbuf), value: 4096).channelOption(.autoRead, value: false)
        }
        let channel = try await bootstrap.connect(host: "127.0.0.1", port: port).get()
        counter.lock.withLock { counter.channel = channel }
        try await channel.writeAndFlush(channel.allocator.buffer(string: "REPLICATE federation \(token)\n"))
        return counter
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        var count = 0
        for byte in buffer.readableBytesView {
            if atLineStart && byte == UInt8(ascii: "R") { count += 1 }
            atLineStart = byte == 0x0A
        }
        // Lines starting with R are RDATA and REMOTE_SERVER_UP; none of the latter is sent here.
        if count > 0 { lock.withLock { rows += count; lastRow = .now } }
    }

    func waitFor(rows target: Int, timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while lock.withLock({ rows }) < target {
            guard ContinuousClock.now < deadline else { throw BenchmarkError("a follower got \(lock.withLock { rows }) of \(target) rows") }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    func close() {
        lock.withLock { channel }?.close(promise: nil)
    }
}

extension String {
    func padding(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
