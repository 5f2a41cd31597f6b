import Glibc
import NIOCore
import NIOPosix
import SouthbridgeSwarm
import SouthbridgeTestSupport
import Transport

/// `southbridge-benchmark tls --seconds N --rounds R`: the client's TLS handshakes and keep-alive
/// requests per second against one local nginx, each next to what `openssl s_time` or `wrk` (both
/// built on the same system OpenSSL) reach against the same nginx in the same run, one connection
/// at a time on both sides.
///
/// Each figure alternates R times between our loop and the tool, N seconds each, and reports the
/// median of the R ratios. On a small shared machine one side's rate moves by a fifth from one
/// window to the next (the scheduler putting client and nginx on one core or two, other work);
/// back-to-back pairs see the same conditions, and the median drops the odd pair.
///
/// - full handshakes: `HTTPClientConnection.connect` + `close` through one `TLSContext`, each
///   connection to a name the context has never met (the certificate covers `*.bench.test`), so
///   no session is ever offered, as when the daemon reaches a new destination; against
///   `openssl s_time -new`.
/// - resumed handshakes: the same with one name, so every connection offers the session the
///   previous one received; against `openssl s_time -reuse`. `s_time` asks for the session right
///   after the handshake, before a TLS 1.3 ticket can have arrived, so over TLS 1.3 it resumes
///   only with `-www` (one GET per connection); the TLS 1.3 row therefore does one GET per
///   connection on both sides. Our client resumes a TLS 1.2 server's session with a TLS 1.2-only
///   ClientHello while `s_time` still offers TLS 1.3 and a key share, so the TLS 1.2 row is
///   measured once more against `s_time -tls1_2`, which sends what we send.
/// - keep-alive requests: sequential `GET /small` on one connection against `wrk -t1 -c1`.
///
/// Our loops run on the event loop that carries the connections (`EventLoopTaskExecutor`), as a
/// caller that adopts it does, so awaiting a handshake or a response crosses no thread. The
/// resumed TLS 1.2 and keep-alive rows are measured once more with the loop on Swift's global
/// executor, where every await hops between two threads, against the same tool run.
///
/// The OpenSSL figures are counts divided by the wall time of the tool's process, which is more
/// precise than the whole seconds `s_time` prints.
struct TLSBenchmark {
    /// One figure: `rounds` alternations of our loop and the reference tool.
    struct Row {
        var what: String
        var reference: String
        var rounds: [Round]
        var note: String

        /// The median of the per-round ratios: the figure BENCHMARKS.md quotes.
        var medianRatio: Double { median(rounds.map(\.ratio)) }
    }

    /// Our loop and then the tool, back to back, so both see the machine in the same state.
    struct Round {
        var ours: Measurement
        var theirs: Measurement

        var ratio: Double { theirs.rate > 0 ? ours.rate / theirs.rate : 0 }
    }

    /// Operations per second, and the CPU time spent per operation by the client (user and
    /// system apart: the kernel's share of a loopback connection is much the same for any
    /// client, so the user share shows what the client's own code costs) and by nginx.
    struct Measurement {
        var rate: Double
        var clientCPUPerOperation: CPUTime
        var nginxCPUPerOperation: Duration
    }

    struct CPUTime {
        var user: Duration
        var system: Duration

        static func - (lhs: CPUTime, rhs: CPUTime) -> CPUTime {
            CPUTime(user: lhs.user - rhs.user, system: lhs.system - rhs.system)
        }

        static func / (lhs: CPUTime, count: Int) -> CPUTime {
            CPUTime(user: lhs.user / count, system: lhs.system / count)
        }
    }

    let seconds: Int
    let rounds: Int
    let nginx: NginxServer
    let caFile: String
    let directory: TemporaryDirectory
    let group: MultiThreadedEventLoopGroup
    /// The executor of the group's single loop, which every connection uses.
    let loopExecutor: EventLoopTaskExecutor

    /// Where the measured loop runs.
    enum Caller {
        case eventLoop
        case globalExecutor
    }

    static let tls13Site = "tls13"
    static let tls12Site = "tls12"

    static func run(seconds: Int, rounds: Int) async throws {
        guard seconds > 0, rounds > 0 else {
            throw BenchmarkError("tls needs --seconds and --rounds of at least 1, got \(seconds) and \(rounds)")
        }
        let authority = try TestCertificateAuthority()
        let directory = try TemporaryDirectory(prefix: "southbridge-bench-tls")
        defer { directory.remove() }
        let caFile = directory.path + "/ca.pem"
        try authority.writeCACertificate(to: caFile)
        // One P-256 certificate (what TestCertificateAuthority issues) for both sites.
        let certificate = try authority.issue(dnsNames: ["localhost", "*.bench.test"])
        let nginx = try await NginxServer.start(sites: [
            .init(name: tls13Site, certificate: certificate, protocols: ["TLSv1.3"], keepaliveRequests: 100_000_000),
            .init(name: tls12Site, certificate: certificate, protocols: ["TLSv1.2"], keepaliveRequests: 100_000_000),
        ], errorLogLevel: "error")
        defer { nginx.stop() }
        let loadBefore = loadAverage()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let benchmark = TLSBenchmark(
            seconds: seconds, rounds: rounds, nginx: nginx, caFile: caFile, directory: directory, group: group,
            loopExecutor: EventLoopTaskExecutor(group.next()))
        var rows: [Row] = []
        rows.append(try await benchmark.fullHandshakes(site: tls13Site, version: "TLS 1.3"))
        rows.append(try await benchmark.fullHandshakes(site: tls12Site, version: "TLS 1.2"))
        rows += try await benchmark.resumedHandshakes(
            site: tls12Site, version: "TLS 1.2", withRequest: false, callers: [.eventLoop, .globalExecutor])
        rows += try await benchmark.resumedHandshakes(
            site: tls12Site, version: "TLS 1.2", withRequest: false, callers: [.eventLoop], toolOffersTLS12Only: true)
        rows += try await benchmark.resumedHandshakes(
            site: tls13Site, version: "TLS 1.3", withRequest: true, callers: [.eventLoop])
        rows += try await benchmark.keepAliveRequests(site: tls13Site, callers: [.eventLoop, .globalExecutor])
        try await group.shutdownGracefully()

        print(
            "tls: \(rounds) rounds of \(seconds) s per side, one connection at a time, nginx \(nginxVersion()) (one process), "
                + opensslVersion())
        print("load average before: \(loadBefore), after: \(loadAverage())")
        print("")
        print(
            "| what | ratio (median) | ratio per round | southbridge (median) | reference tool (median)"
                + " | client CPU per op, user + system, ours / tool (medians) | nginx CPU per op, ours / tool (medians) |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for row in rows {
            let ours = row.rounds.map(\.ours)
            let theirs = row.rounds.map(\.theirs)
            print(
                "| \(row.what) | \(format(ratio: row.medianRatio)) | \(row.rounds.map { format(ratio: $0.ratio) }.joined(separator: ", "))"
                    + " | \(format(median(ours.map(\.rate))))/s | \(format(median(theirs.map(\.rate))))/s"
                    + " | \(micros(medianCPU(ours))) / \(micros(medianCPU(theirs)))"
                    + " | \(micros(medianDuration(ours.map(\.nginxCPUPerOperation)))) / \(micros(medianDuration(theirs.map(\.nginxCPUPerOperation)))) |")
        }
        print("")
        for row in rows {
            print("\(row.what): `\(row.reference)`\(row.note.isEmpty ? "" : "; " + row.note)")
        }
    }

    private func connect(site: String, peer: TLSPeer, context: TLSContext) async throws -> HTTPClientConnection {
        try await HTTPClientConnection.connect(
            to: try SocketAddress(ipAddress: "127.0.0.1", port: nginx.port(of: site)), peer: peer,
            tlsContext: context, on: group, connectTimeout: .seconds(5), handshakeTimeout: .seconds(5))
    }

    private func getSmall(_ connection: HTTPClientConnection) async throws {
        let response = try await connection.execute(
            HTTPClientRequest(method: "GET", target: "/small", headers: [(name: "Host", value: "localhost")]),
            timeout: .seconds(5), maxResponseBytes: 4096)
        guard response.statusCode == 200, response.body.readableBytes == 5 else {
            throw BenchmarkError("GET /small answered \(response.statusCode) with \(response.body.readableBytes) bytes")
        }
    }

    private func fullHandshakes(site: String, version: String) async throws -> Row {
        let context = try TLSContext.client(caFile: caFile)
        var serial = 0
        var resumed = 0
        var tool = STimeTotals()
        let rounds = try await alternate(
            callers: [.eventLoop],
            ours: { _ in
                serial += 1
                let connection = try await connect(
                    site: site, peer: .hostname("c\(serial).bench.test"), context: context)
                if connection.isTLSSessionReused { resumed += 1 }
                await connection.close()
            },
            tool: { tool.add(try await sTime(site: site, mode: "-new", www: nil)) })
        return Row(
            what: "full handshakes, \(version)", reference: tool.command, rounds: rounds[0],
            note: "resumed: southbridge \(resumed) of \(serial), s_time \(tool.resumed) of \(tool.connections)")
    }

    /// With `toolOffersTLS12Only`, `s_time` runs with `-tls1_2`, so that it too sends no TLS 1.3
    /// offer and key share to the TLS 1.2 server: the same work on both sides.
    private func resumedHandshakes(
        site: String, version: String, withRequest: Bool, callers: [Caller], toolOffersTLS12Only: Bool = false
    ) async throws -> [Row] {
        let context = try TLSContext.client(caFile: caFile)
        let first = try await connect(site: site, peer: .hostname("localhost"), context: context)
        // Reading a response also takes in the TLS 1.3 tickets sent after the handshake.
        try await getSmall(first)
        await first.close()
        var counts = Array(repeating: (connections: 0, resumed: 0), count: callers.count)
        var tool = STimeTotals()
        let roundsByCaller = try await alternate(
            callers: callers,
            ours: { index in
                let connection = try await connect(site: site, peer: .hostname("localhost"), context: context)
                if withRequest { try await getSmall(connection) }
                counts[index].connections += 1
                if connection.isTLSSessionReused { counts[index].resumed += 1 }
                await connection.close()
            },
            tool: {
                tool.add(
                    try await sTime(
                        site: site, mode: "-reuse", www: withRequest ? "/small" : nil,
                        options: toolOffersTLS12Only ? ["-tls1_2"] : []))
            })
        return callers.indices.map { index in
            Row(
                what: "resumed handshakes, \(version)\(withRequest ? " + GET /small" : "")\(Self.suffix(callers[index]))"
                    + (toolOffersTLS12Only ? " (s_time offering TLS 1.2 alone too)" : ""),
                reference: tool.command, rounds: roundsByCaller[index],
                note: "resumed: southbridge \(counts[index].resumed) of \(counts[index].connections),"
                    + " s_time \(tool.resumed) of \(tool.connections)")
        }
    }

    private func keepAliveRequests(site: String, callers: [Caller]) async throws -> [Row] {
        let context = try TLSContext.client(caFile: caFile)
        let connection = try await connect(site: site, peer: .hostname("localhost"), context: context)
        let arguments = ["-t1", "-c1", "-d\(seconds)s", "https://127.0.0.1:\(nginx.port(of: site))/small"]
        var errors: [String] = []
        let roundsByCaller = try await alternate(
            callers: callers,
            ours: { _ in try await getSmall(connection) },
            tool: {
                let (run, nginxCPUTime) = try await runTool("wrk", arguments)
                let lines = run.output.split(separator: "\n")
                guard let line = lines.first(where: { $0.hasPrefix("Requests/sec:") }),
                    let rate = Double(line.dropFirst("Requests/sec:".count).trimmingPrefix(while: { $0 == " " })),
                    let total = lines.first(where: { $0.contains(" requests in ") })?.split(separator: " ").first
                        .flatMap({ Int($0) })
                else { throw BenchmarkError("no request count or Requests/sec line in wrk's output: \(run.output)") }
                errors += lines.filter { $0.contains("Non-2xx") || $0.contains("Socket errors") }.map(String.init)
                return Measurement(
                    rate: rate, clientCPUPerOperation: run.cpuTime / total, nginxCPUPerOperation: nginxCPUTime / total)
            })
        await connection.close()
        return callers.indices.map { index in
            Row(
                what: "keep-alive requests, TLS 1.3, GET /small\(Self.suffix(callers[index]))",
                reference: "wrk " + arguments.joined(separator: " "), rounds: roundsByCaller[index],
                note: errors.isEmpty ? "" : "wrk: " + errors.joined(separator: "; "))
        }
    }

    /// Alternates `rounds` times between our loop, once on each caller's executor (`ours` gets
    /// the caller's index), and one run of the tool; returns each caller's rounds, in order.
    private func alternate(
        callers: [Caller], ours: (Int) async throws -> Void, tool: () async throws -> Measurement
    ) async throws -> [[Round]] {
        var roundsByCaller = Array(repeating: [Round](), count: callers.count)
        for _ in 0..<rounds {
            var measured: [Measurement] = []
            for (index, caller) in callers.enumerated() {
                measured.append(try await repeatFor(on: caller) { try await ours(index) })
            }
            let theirs = try await tool()
            for index in callers.indices {
                roundsByCaller[index].append(Round(ours: measured[index], theirs: theirs))
            }
        }
        return roundsByCaller
    }

    /// The `s_time` runs of one figure, added up for its note.
    private struct STimeTotals {
        var command = ""
        var connections = 0
        var resumed = 0

        mutating func add(_ run: STimeResult) -> Measurement {
            command = run.command
            connections += run.connections
            resumed += run.resumed
            return run.measurement
        }
    }

    private static func suffix(_ caller: Caller) -> String {
        switch caller {
        case .eventLoop: ""
        case .globalExecutor: " (caller on the global executor)"
        }
    }

    /// Runs `body` back to back for `seconds` on `caller`'s executor and measures it.
    private func repeatFor(on caller: Caller, _ body: () async throws -> Void) async throws -> Measurement {
        let clock = ContinuousClock()
        let cpuBefore = Self.cpuTime(RUSAGE_SELF)
        let nginxBefore = cpuSeconds(pid: nginx.pid)
        let started = clock.now
        let deadline = started + .seconds(seconds)
        var count = 0
        let executor: EventLoopTaskExecutor? =
            switch caller {
            case .eventLoop: loopExecutor
            case .globalExecutor: nil
            }
        try await withTaskExecutorPreference(executor) {
            while clock.now < deadline {
                try await body()
                count += 1
            }
        }
        let elapsed = clock.now - started
        return Measurement(
            rate: Double(count) / elapsed.seconds,
            clientCPUPerOperation: (Self.cpuTime(RUSAGE_SELF) - cpuBefore) / count,
            nginxCPUPerOperation: .seconds(cpuSeconds(pid: nginx.pid) - nginxBefore) / count)
    }

    private struct STimeResult {
        var command: String
        var connections: Int
        var resumed: Int
        var measurement: Measurement
    }

    /// Runs `openssl s_time` against the nginx site and reads its figures (see `STimeRun`).
    private func sTime(site: String, mode: String, www: String?, options: [String] = []) async throws -> STimeResult {
        let nginxBefore = cpuSeconds(pid: nginx.pid)
        let run = try await STimeRun.run(
            port: nginx.port(of: site), caFile: caFile, mode: mode, seconds: seconds, www: www, options: options,
            directory: directory.path)
        let nginxCPUTime: Duration = .seconds(cpuSeconds(pid: nginx.pid) - nginxBefore)
        return STimeResult(
            command: run.command, connections: run.connections, resumed: run.resumed,
            measurement: Measurement(
                rate: Double(run.connections) / run.wallTime.seconds, clientCPUPerOperation: run.cpuTime / run.connections,
                nginxCPUPerOperation: nginxCPUTime / run.connections))
    }

    /// Runs `wrk` to completion and measures it with the nginx CPU it caused.
    private func runTool(_ executable: String, _ arguments: [String]) async throws -> (run: ToolRun, nginxCPUTime: Duration) {
        let nginxBefore = cpuSeconds(pid: nginx.pid)
        let run = try await ToolRun.run(executable, arguments, seconds: seconds, directory: directory.path)
        return (run, .seconds(cpuSeconds(pid: nginx.pid) - nginxBefore))
    }

    /// User and system CPU time of this process (`RUSAGE_SELF`) or of its reaped children (`RUSAGE_CHILDREN`).
    static func cpuTime(_ who: __rusage_who) -> CPUTime {
        var usage = rusage()
        getrusage(__rusage_who_t(who.rawValue), &usage)
        func duration(_ time: timeval) -> Duration { .seconds(time.tv_sec) + .microseconds(time.tv_usec) }
        return CPUTime(user: duration(usage.ru_utime), system: duration(usage.ru_stime))
    }

    /// The medians of the user and of the system time per operation.
    private static func medianCPU(_ measurements: [Measurement]) -> CPUTime {
        CPUTime(
            user: medianDuration(measurements.map(\.clientCPUPerOperation.user)),
            system: medianDuration(measurements.map(\.clientCPUPerOperation.system)))
    }

    private static func micros(_ duration: Duration) -> String {
        "\(Int((duration.seconds * 1e6).rounded())) µs"
    }

    private static func micros(_ time: CPUTime) -> String {
        "\(Int((time.user.seconds * 1e6).rounded())) + \(Int((time.system.seconds * 1e6).rounded())) µs"
    }

    private static func format(_ rate: Double) -> String {
        var digits = String(Int(rate.rounded()))
        var grouped = ""
        while digits.count > 3 {
            grouped = "," + digits.suffix(3) + grouped
            digits = String(digits.dropLast(3))
        }
        return digits + grouped
    }

    private static func format(ratio: Double) -> String {
        let hundredths = Int((ratio * 100).rounded())
        return "\(hundredths / 100).\(hundredths % 100 < 10 ? "0" : "")\(hundredths % 100)"
    }

    /// The 1, 5 and 15 minute load averages: other work on the machine moves every figure.
    private static func loadAverage() -> String {
        readFileText("/proc/loadavg").split(separator: " ").prefix(3).joined(separator: " ")
    }

    private static func nginxVersion() -> String {
        firstLine(of: "\(NginxServer.executable) -v 2>&1").split(separator: "/").last.map(String.init) ?? "?"
    }

    private static func opensslVersion() -> String {
        firstLine(of: "openssl version").split(separator: " ").prefix(2).joined(separator: " ")
    }

    private static func firstLine(of command: String) -> String {
        guard let pipe = popen(command, "r") else { return "" }
        defer { pclose(pipe) }
        var line = [CChar](repeating: 0, count: 256)
        guard fgets(&line, Int32(line.count), pipe) != nil else { return "" }
        return String(decoding: line.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// The middle value (the mean of the two middle ones for an even count); 0 for none.
private func median(_ values: [Double]) -> Double {
    guard !values.isEmpty else { return 0 }
    let sorted = values.sorted()
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

private func medianDuration(_ values: [Duration]) -> Duration {
    .seconds(median(values.map(\.seconds)))
}

/// A benchmark step that could not run, with what went wrong.
struct BenchmarkError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

extension Duration {
    fileprivate var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}

/// One run of a command-line tool to completion: what it printed, how long it ran and the CPU
/// it used (user and system, from `RUSAGE_CHILDREN` once it is reaped).
struct ToolRun {
    var output: String
    var wallTime: Duration
    var cpuTime: TLSBenchmark.CPUTime

    /// Runs `executable` for at most `seconds` + 30 s; with `cpus`, pinned to those CPUs.
    static func run(_ executable: String, _ arguments: [String], seconds: Int, directory: String,
                    cpus: [Int]? = nil) async throws -> ToolRun {
        let clock = ContinuousClock()
        let cpuBefore = TLSBenchmark.cpuTime(RUSAGE_CHILDREN)
        let started = clock.now
        let process = try ChildProcess(
            executable: executable, arguments: arguments, logPath: directory + "/\(executable).log", cpus: cpus)
        guard let status = await process.waitForExit(timeout: .seconds(seconds + 30)) else {
            await process.terminate()
            throw BenchmarkError("\(executable) did not finish: \(process.output())")
        }
        let wallTime = clock.now - started
        let output = process.output()
        unlink(process.logPath)
        guard status == 0 else { throw BenchmarkError("\(executable) \(arguments) exited with \(status): \(output)") }
        return ToolRun(output: output, wallTime: wallTime, cpuTime: TLSBenchmark.cpuTime(RUSAGE_CHILDREN) - cpuBefore)
    }
}

/// One run of `openssl s_time` against a TLS server on 127.0.0.1, trusting only `caFile` as
/// our client does: the connections it made (from its "N connections in T real seconds"
/// line), how many resumed a session (its `r` progress marks), and its own CPU.
struct STimeRun {
    var command: String
    var connections: Int
    var resumed: Int
    var wallTime: Duration
    var cpuTime: TLSBenchmark.CPUTime

    /// The client CPU (user + system) per connection.
    var cpuPerConnection: Duration { connections > 0 ? (cpuTime.user + cpuTime.system) / connections : .zero }

    static func run(port: Int, caFile: String, mode: String, seconds: Int, www: String? = nil, options: [String] = [],
                    directory: String, cpus: [Int]? = nil) async throws -> STimeRun {
        var arguments = [
            "s_time", "-connect", "127.0.0.1:\(port)", mode, "-time", "\(seconds)",
            "-CAfile", caFile, "-no-CApath", "-no-CAstore",
        ] + options
        if let www { arguments += ["-www", www] }
        let run = try await ToolRun.run("openssl", arguments, seconds: seconds, directory: directory, cpus: cpus)
        let lines = run.output.split(separator: "\n")
        guard let line = lines.first(where: { $0.contains(" real seconds") }),
            let connections = line.split(separator: " ").first.flatMap({ Int($0) })
        else { throw BenchmarkError("no \"real seconds\" line in s_time's output: \(run.output)") }
        let marks = lines.last { !$0.isEmpty && $0.allSatisfy { "r*tsf".contains($0) } }
        return STimeRun(
            command: "openssl " + arguments.map { $0 == caFile ? "ca.pem" : $0 }.joined(separator: " "),
            connections: connections, resumed: marks?.filter { $0 == "r" }.count ?? 0, wallTime: run.wallTime,
            cpuTime: run.cpuTime)
    }
}
