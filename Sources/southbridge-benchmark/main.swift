import Glibc
import SouthbridgeDaemon
import SouthbridgeSwarm

/// Benchmarks that drive the real `southbridge` binary (built next to this one) against
/// a swarm of fake homeservers in this process, and measure the daemon's process alone.
///
///     swift build -c release --static-swift-stdlib
///     .build/release/southbridge-benchmark delivery --destinations 20 --pdus 10000

func option(_ name: String, default value: Int) -> Int {
    let arguments = CommandLine.arguments
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count, let number = Int(arguments[index + 1]) else {
        return value
    }
    return number
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

func delivery(destinations: Int, pdus: Int) async throws {
    let fixture = try await DaemonProcess(destinations: destinations) { configuration in
        configuration.log.level = "warning"
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
          accepted (ingest, fsync'd) in \(acceptedAfter), all delivered in \(elapsed)
          daemon CPU: \((cpu * 100).rounded() / 100) s
          daemon RSS idle after start: \(idleKiB / 1024) MiB (\(idleKiB) KiB)
          daemon RSS after delivery:  \(afterKiB / 1024) MiB (\(afterKiB) KiB); peak \(peakKiB / 1024) MiB
        """)
}

let arguments = CommandLine.arguments.dropFirst()
switch arguments.first {
case "delivery":
    try await delivery(destinations: option("--destinations", default: 20), pdus: option("--pdus", default: 10_000))
default:
    print("usage: southbridge-benchmark delivery [--destinations N] [--pdus N]")
    exit(2)
}
