import Glibc
import NIOCore
import NIOPosix
import SouthbridgeSwarm
import SouthbridgeTestSupport
import Transport

/// `southbridge-benchmark idle-connections`: what an idle TLS connection costs the client.
///
/// Opens `connections` connections through `HTTPClientConnection` to one local nginx (TLS 1.3
/// or 1.2,
/// one certificate for `*.bench.test`), each to a name it has never met (a full handshake, and
/// a resumable session kept per name, as for distinct destinations), sends one `GET /small` on
/// each and leaves it idle. Reports this process's RSS per connection, before and after
/// glibc's `malloc_trim`, so what the connections hold is told apart from what the allocator
/// keeps; then sends a second GET on each, so every idle connection is shown to still work.
enum IdleConnectionsBenchmark {
    static func run(connections count: Int, tlsVersion: String) async throws {
        try OpenFileLimit.raiseToHardLimit()
        let authority = try TestCertificateAuthority()
        let directory = try TemporaryDirectory(prefix: "southbridge-bench-idle")
        defer { directory.remove() }
        let caFile = directory.path + "/ca.pem"
        try authority.writeCACertificate(to: caFile)
        let certificate = try authority.issue(dnsNames: ["localhost", "*.bench.test"])
        let nginx = try await NginxServer.start(
            sites: [.init(name: "site", certificate: certificate, protocols: ["TLSv" + tlsVersion], keepaliveRequests: 1000)],
            errorLogLevel: "error")
        defer { nginx.stop() }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let context = try TLSContext.client(caFile: caFile)
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: nginx.port(of: "site"))

        func get(on connection: HTTPClientConnection) async throws {
            let response = try await connection.execute(
                HTTPClientRequest(method: "GET", target: "/small", headers: [(name: "Host", value: "localhost")]),
                timeout: .seconds(5), maxResponseBytes: 4096)
            guard response.statusCode == 200 else { throw BenchmarkError("GET /small answered \(response.statusCode)") }
        }

        func connect(_ name: String) async throws -> HTTPClientConnection {
            let connection = try await HTTPClientConnection.connect(
                to: address, peer: .hostname(name), tlsContext: context, on: group,
                connectTimeout: .seconds(5), handshakeTimeout: .seconds(5))
            try await get(on: connection)
            return connection
        }

        // One-time allocations (OpenSSL's tables, NIO's loop) happen before the baseline.
        for index in 0..<20 { await (try connect("warm\(index).bench.test")).close() }
        let before = Snapshot.take()
        var open: [HTTPClientConnection] = []
        for index in 0..<count { open.append(try await connect("h\(index).bench.test")) }
        let idle = Snapshot.take()
        _ = mallocTrim(0)
        let trimmed = Snapshot.take()
        // Every idle connection still carries a request.
        for connection in open { try await get(on: connection) }
        for connection in open { await connection.close() }
        open.removeAll()
        _ = mallocTrim(0)
        let closed = Snapshot.take()
        try await group.shutdownGracefully()

        func perConnection(_ bytes: Int) -> String {
            "\(bytes / count / 1024).\(bytes / count % 1024 * 10 / 1024) KiB"
        }
        print("""
            idle-connections: \(count) TLS \(tlsVersion) connections to nginx, one GET each, then idle \
            (session store keeps \(context.cachedSessionCount) sessions)

            | figure | total | per connection |
            | --- | ---: | ---: |
            | RSS growth with every connection idle | \((idle.rssKiB - before.rssKiB) / 1024) MiB | \(perConnection((idle.rssKiB - before.rssKiB) * 1024)) |
            | RSS growth after mallocTrim(0) | \((trimmed.rssKiB - before.rssKiB) / 1024) MiB | \(perConnection((trimmed.rssKiB - before.rssKiB) * 1024)) |
            | RSS growth left after closing them all and mallocTrim(0) | \((closed.rssKiB - before.rssKiB) / 1024) MiB | |

            Each connection then carried a second GET before it was closed.
            """)
    }

    struct Snapshot {
        var rssKiB: Int

        static func take() -> Snapshot {
            Snapshot(rssKiB: ProcessMemory.currentKiB())
        }
    }
}

/// glibc's `malloc_trim` (malloc.h is not in the Glibc module): gives free heap memory back.
@_silgen_name("malloc_trim")
private func mallocTrim(_ pad: Int) -> Int32
