import Glibc
import Logging
import NIOCore
import NIOPosix
import Resolver
import SouthbridgeSwarm
import Synchronization

/// A real dnsmasq on 127.0.0.1, authoritative for `example.test` (so negative answers carry
/// an SOA), answering from the records given and logging every query it receives.
///
/// Started with `authoritative: false` it is a forwarding resolver instead, as on a home
/// router: it answers from the records given and passes other names on as its `server=`
/// lines say, so a test can put a failing upstream behind chosen names.
///
/// It runs on a port found free for both UDP and TCP (it answers on both); if dnsmasq
/// cannot take that port after all, another one is tried. `stop()` ends it and removes its directory.
public final class DnsmasqServer: Sendable {
    /// One query as dnsmasq logged it: `auth[A] name from 127.0.0.1` or `query[A] ...`.
    public struct LoggedQuery: Hashable, Sendable {
        public var type: String
        public var name: String
    }

    /// The TTL of every answer (and of the zone's SOA, hence of negative answers).
    public let ttl: Int
    public let address: SocketAddress
    private let directory: TemporaryDirectory
    private let process: ChildProcess
    private let probe: DNSResolver
    private let probes = Mutex(0)

    private static let probeSuffix = ".probe.example.test"

    private init(ttl: Int, address: SocketAddress, directory: TemporaryDirectory, process: ChildProcess) {
        self.ttl = ttl
        self.address = address
        self.directory = directory
        self.process = process
        var configuration = DNSResolver.Configuration(nameservers: [address], hostsFilePath: directory.path + "/no-hosts")
        configuration.queryTimeout = .milliseconds(200)
        configuration.attempts = 1
        probe = DNSResolver(configuration: configuration, group: MultiThreadedEventLoopGroup.singleton,
                            logger: Logger(label: "dnsmasq-probe"))
    }

    /// Starts dnsmasq with extra configuration lines such as `host-record=a.example.test,192.0.2.1`.
    public static func start(_ records: [String], ttl: Int = 300, authoritative: Bool = true) async throws -> DnsmasqServer {
        let directory = try TemporaryDirectory(prefix: "southbridge-dnsmasq")
        var lastOutput = ""
        for _ in 0..<5 {
            let port = try LoopbackSocket.freeUDPAndTCPPort()
            let logPath = directory.path + "/dnsmasq.log"
            let configPath = directory.path + "/dnsmasq.conf"
            let configuration = [
                "port=\(port)",
                "listen-address=127.0.0.1",
                "bind-interfaces",
                "no-resolv",
                "no-hosts",
                "log-queries",
                "log-facility=\(logPath)",
                "pid-file=\(directory.path)/dnsmasq.pid",
                "local-ttl=\(ttl)",
            ] + (authoritative ? [
                "auth-server=ns.example.test,127.0.0.1",
                "auth-zone=example.test",
                "auth-soa=1,hostmaster.example.test,1200,120,604800",
                "auth-ttl=\(ttl)",
            ] : []) + records
            try writeFile(configPath, configuration.joined(separator: "\n") + "\n", mode: 0o644)
            let process = try ChildProcess(
                executable: "/usr/sbin/dnsmasq", arguments: ["--keep-in-foreground", "--conf-file=\(configPath)"],
                logPath: directory.path + "/dnsmasq.out")
            let server = DnsmasqServer(ttl: ttl, address: try SocketAddress(ipAddress: "127.0.0.1", port: port),
                                       directory: directory, process: process)
            if await server.waitUntilAnswering() { return server }
            lastOutput = process.output() + readFileText(logPath)
            await process.terminate()
        }
        directory.remove()
        throw DnsmasqError("dnsmasq did not start: \(lastOutput)")
    }

    public func stop() {
        process.stop()
        directory.remove()
    }

    /// Every query dnsmasq received so far, oldest first. Waits until dnsmasq has logged a
    /// marker query sent after the call, so no earlier query is still unwritten.
    public func queries() async -> [LoggedQuery] {
        let marker = "marker-\(probes.withLock { $0 += 1; return $0 })\(Self.probeSuffix)"
        _ = try? await probe.addresses(for: marker)
        for _ in 0..<200 {
            let logged = parseLog()
            if logged.contains(where: { $0.name == marker }) {
                return logged.filter { !$0.name.hasSuffix(Self.probeSuffix) }
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return parseLog().filter { !$0.name.hasSuffix(Self.probeSuffix) }
    }

    /// How many queries dnsmasq received for `name` (any case), of `type` if given.
    public func queryCount(_ name: String, type: String? = nil) async -> Int {
        await queries().filter { $0.name.lowercased() == name && (type == nil || $0.type == type) }.count
    }

    private func waitUntilAnswering() async -> Bool {
        for _ in 0..<50 {
            if await process.waitForExit(timeout: .zero) != nil { return false }
            do throws(DNSError) {
                _ = try await probe.addresses(for: "ready\(Self.probeSuffix)")
                return true
            } catch .timeout {
                continue
            } catch {
                return true
            }
        }
        return false
    }

    private func parseLog() -> [LoggedQuery] {
        return readFileText(directory.path + "/dnsmasq.log").split(separator: "\n").compactMap { line in
            let words = line.split(separator: " ")
            guard let index = words.firstIndex(where: { $0.hasPrefix("query[") || $0.hasPrefix("auth[") }),
                  index + 2 < words.count, words[index + 2] == "from", words[index].hasSuffix("]")
            else { return nil }
            let type = words[index].drop { $0 != "[" }.dropFirst().dropLast()
            return LoggedQuery(type: String(type), name: String(words[index + 1]))
        }
    }
}

struct DnsmasqError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
