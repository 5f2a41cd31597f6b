import FuzzSupport
import Logging
import NIOCore
import NIOPosix
import Resolver
import SouthbridgeSwarm
import SouthbridgeTestSupport
import Testing

/// The records every dnsmasq in these tests serves (all in `example.test`, TTL 300 s).
private let zone: [String] = [
    "host-record=v4.example.test,192.0.2.1",
    "host-record=v6.example.test,2001:db8::1",
    "host-record=dual.example.test,192.0.2.2,2001:db8::2",
    // dnsmasq does not follow a CNAME to another CNAME: the client asks again for each link.
    "cname=c3.example.test,c2.example.test",
    "cname=c2.example.test,c1.example.test",
    "cname=c1.example.test,dual.example.test",
    "srv-host=_matrix-fed._tcp.example.test,a.example.test,8448,10,60",
    "srv-host=_matrix-fed._tcp.example.test,b.example.test,8449,10,40",
    "srv-host=_matrix-fed._tcp.example.test,c.example.test,8450,20,0",
    "srv-host=_matrix._tcp.example.test,legacy.example.test,8448,0,0",
    "srv-host=_matrix-fed._tcp.none.example.test,.",
] + (1...10).map { "cname=long\($0).example.test,\($0 == 1 ? "dual" : "long\($0 - 1)").example.test" }
    + (1...100).map { "host-record=big.example.test,10.0.\($0 / 256).\($0 % 256)" }
    + (0..<50).map { "host-record=n\($0).example.test,192.0.2.\($0 + 100),2001:db8::\($0 + 100)" }

@Suite("DNSResolver against a real dnsmasq on loopback")
struct DNSResolverTests {
    /// Runs `body` with a fresh dnsmasq and a resolver that asks only it, with an empty
    /// hosts file and a manual clock.
    private func withResolver(_ body: (DNSResolver, DnsmasqServer, ManualClock) async throws -> Void) async throws {
        try await withResolver(configure: { _ in }, hosts: "", body)
    }

    private func withResolver(
        configure: (inout DNSResolver.Configuration) -> Void,
        hosts: String = "",
        _ body: (DNSResolver, DnsmasqServer, ManualClock) async throws -> Void
    ) async throws {
        let server = try await DnsmasqServer.start(zone)
        defer { server.stop() }
        let directory = try TemporaryDirectory(prefix: "southbridge-dns-test")
        defer { directory.remove() }
        try writeFile(directory.path + "/hosts", hosts)
        var configuration = DNSResolver.Configuration(nameservers: [server.address], hostsFilePath: directory.path + "/hosts")
        configure(&configuration)
        let clock = ManualClock()
        let resolver = DNSResolver(configuration: configuration, group: MultiThreadedEventLoopGroup.singleton,
                                   logger: Logger(label: "dns-test"), now: { clock.now })
        try await body(resolver, server, clock)
    }

    @Test("A, AAAA and both: IPv6 first, then IPv4", arguments: [
        ("v4.example.test", ["192.0.2.1"]),
        ("v6.example.test", ["2001:db8::1"]),
        ("dual.example.test", ["2001:db8::2", "192.0.2.2"]),
    ])
    func addresses(name: String, expected: [String]) async throws {
        try await withResolver { resolver, server, _ in
            let addresses = try await resolver.addresses(for: name)
            #expect(addresses == expected)
            #expect(await server.queryCount(name, type: "A") == 1)
            #expect(await server.queryCount(name, type: "AAAA") == 1)
        }
    }

    @Test("names are case-insensitive and a trailing dot changes nothing: one cache entry for all spellings")
    func caseAndTrailingDot() async throws {
        try await withResolver { resolver, server, _ in
            let mixedCase = try await resolver.addresses(for: "Dual.EXAMPLE.test.")
            #expect(mixedCase == ["2001:db8::2", "192.0.2.2"])
            let canonical = try await resolver.addresses(for: "dual.example.test")
            #expect(canonical == ["2001:db8::2", "192.0.2.2"])
            #expect(await server.queryCount("dual.example.test") == 2)
        }
    }

    @Test("a CNAME chain is followed by asking for each target, then served from the cache")
    func cnameChain() async throws {
        try await withResolver { resolver, server, _ in
            let viaChain = try await resolver.addresses(for: "c3.example.test")
            #expect(viaChain == ["2001:db8::2", "192.0.2.2"])
            // c3 and c2 (one link each), then c1 whose answer includes dual's records: 3 × (A, AAAA).
            let queries = await server.queries().count
            #expect(queries == 6)
            let viaShorterChain = try await resolver.addresses(for: "c2.example.test")
            #expect(viaShorterChain == ["2001:db8::2", "192.0.2.2"])
            #expect(await server.queries().count == queries)
        }
    }

    @Test("a chain of more than 8 CNAMEs fails with the name and type in the error")
    func longChain() async throws {
        try await withResolver { resolver, _, _ in
            await #expect {
                _ = try await resolver.addresses(for: "long10.example.test")
            } throws: { error in
                guard case .tooManyAliases(let name, _, 8) = error as? DNSError else { return false }
                return name == "long10.example.test" && "\(error)".contains("\"long10.example.test\"")
            }
            let answer = try await resolver.addresses(for: "long8.example.test")
            #expect(answer == ["2001:db8::2", "192.0.2.2"])
        }
    }

    @Test("an SRV target that is a CNAME is refused naming the alias and its target, from the cache too")
    func serviceTargetAlias() async throws {
        try await withResolver { resolver, server, _ in
            for _ in 0..<2 {
                await #expect(throws: DNSError.aliasNotAllowed(name: "c1.example.test", target: "dual.example.test")) {
                    try await resolver.addresses(ofServiceTarget: "C1.example.test.")
                }
            }
            #expect(await server.queryCount("c1.example.test") == 2)
            #expect("\(DNSError.aliasNotAllowed(name: "c1.example.test", target: "dual.example.test"))"
                == #"DNS name "c1.example.test" is an alias (CNAME) of "dual.example.test", which an SRV target must not be (RFC 2782)"#)
            let target = try await resolver.addresses(ofServiceTarget: "dual.example.test")
            #expect(target == ["2001:db8::2", "192.0.2.2"])
            let followed = try await resolver.addresses(for: "c1.example.test")
            #expect(followed == ["2001:db8::2", "192.0.2.2"])
        }
    }

    @Test("NXDOMAIN is an error naming the name, cached for the SOA's negative TTL: no second query until it expires")
    func nameErrorCached() async throws {
        try await withResolver { resolver, server, clock in
            for _ in 0..<3 {
                await #expect(throws: DNSError.noSuchName(name: "nx.example.test")) {
                    try await resolver.addresses(for: "nx.example.test")
                }
            }
            #expect(await server.queryCount("nx.example.test", type: "A") == 1)
            #expect(await server.queryCount("nx.example.test", type: "AAAA") == 1)
            clock.advance(by: .seconds(299))
            _ = try? await resolver.addresses(for: "nx.example.test")
            #expect(await server.queryCount("nx.example.test") == 2)
            clock.advance(by: .seconds(2))
            _ = try? await resolver.addresses(for: "nx.example.test")
            #expect(await server.queryCount("nx.example.test") == 4)
            #expect(DNSError.noSuchName(name: "nx.example.test").description.contains("\"nx.example.test\""))
        }
    }

    @Test("a name with neither AAAA nor A fails with noAddresses")
    func noAddresses() async throws {
        try await withResolver { resolver, _, _ in
            await #expect(throws: DNSError.noAddresses(name: "_matrix-fed._tcp.example.test")) {
                try await resolver.addresses(for: "_matrix-fed._tcp.example.test")
            }
        }
    }

    @Test("SRV records with several priorities and weights, ordered by RFC 2782")
    func serviceRecords() async throws {
        try await withResolver { resolver, _, _ in
            let records = try await resolver.serviceRecords("_matrix-fed._tcp.example.test")
            #expect(Set(records) == [
                SRVRecord(priority: 10, weight: 60, port: 8448, target: "a.example.test"),
                SRVRecord(priority: 10, weight: 40, port: 8449, target: "b.example.test"),
                SRVRecord(priority: 20, weight: 0, port: 8450, target: "c.example.test"),
            ])
            var generator = SplitMix64(seed: 7)
            let ordered = DNSResolver.orderForConnection(records, using: &generator)
            #expect(ordered.map(\.priority) == [10, 10, 20])
            #expect(try await resolver.serviceRecords("_MATRIX._tcp.example.test.")
                == [SRVRecord(priority: 0, weight: 0, port: 8448, target: "legacy.example.test")])
        }
    }

    @Test("no service is an empty answer: a '.' target, NXDOMAIN and NODATA", arguments: [
        "_matrix-fed._tcp.none.example.test", "_matrix-fed._tcp.absent.example.test", "v4.example.test",
    ])
    func noService(name: String) async throws {
        try await withResolver { resolver, server, _ in
            let first = try await resolver.serviceRecords(name)
            #expect(first == [])
            let cached = try await resolver.serviceRecords(name)
            #expect(cached == [])
            #expect(await server.queryCount(name, type: "SRV") == 1)
        }
    }

    @Test("answers live for their TTL on the injected clock, clamped by minimumTTL")
    func ttlExpiry() async throws {
        try await withResolver { resolver, server, clock in
            _ = try await resolver.addresses(for: "v4.example.test")
            clock.advance(by: .seconds(299))
            _ = try await resolver.addresses(for: "v4.example.test")
            #expect(await server.queryCount("v4.example.test", type: "A") == 1)
            clock.advance(by: .seconds(1))
            _ = try await resolver.addresses(for: "v4.example.test")
            #expect(await server.queryCount("v4.example.test", type: "A") == 2)
        }
        try await withResolver(configure: { $0.minimumTTL = .seconds(600) }) { resolver, server, clock in
            _ = try await resolver.addresses(for: "v4.example.test")
            clock.advance(by: .seconds(599))
            _ = try await resolver.addresses(for: "v4.example.test")
            #expect(await server.queryCount("v4.example.test", type: "A") == 1)
            clock.advance(by: .seconds(1))
            _ = try await resolver.addresses(for: "v4.example.test")
            #expect(await server.queryCount("v4.example.test", type: "A") == 2)
        }
    }

    @Test("the hosts file is consulted first and costs no query")
    func hostsFile() async throws {
        let hosts = "192.0.2.77 pinned.example.test v4.example.test\n2001:db8::77 pinned.example.test\n"
        try await withResolver(configure: { _ in }, hosts: hosts) { resolver, server, _ in
            let pinned = try await resolver.addresses(for: "pinned.example.test")
            #expect(pinned == ["2001:db8::77", "192.0.2.77"])
            let overridden = try await resolver.addresses(for: "V4.example.test.")
            #expect(overridden == ["192.0.2.77"])
            let notListed = try await resolver.addresses(for: "v6.example.test")
            #expect(notListed == ["2001:db8::1"])
            let queries = await server.queries()
            #expect(!queries.contains { $0.name == "pinned.example.test" || $0.name.lowercased() == "v4.example.test" })
            #expect(resolver.statistics.hostsFileAnswers == 2)
        }
    }

    @Test("a truncated UDP answer is asked again over TCP", arguments: [true, false])
    func tcpFallback(usesEDNS: Bool) async throws {
        try await withResolver(configure: { $0.usesEDNS = usesEDNS }) { resolver, server, _ in
            let addresses = try await resolver.addresses(for: "big.example.test")
            #expect(addresses.count == 100)
            #expect(Set(addresses).contains("10.0.0.100"))
            #expect(resolver.statistics.tcpQueriesSent == 1)
            #expect(await server.queryCount("big.example.test", type: "A") == 2)
        }
    }

    @Test("REFUSED on every attempt is a serverFailure naming the name, the type and the code")
    func refused() async throws {
        try await withResolver { resolver, server, _ in
            await #expect {
                _ = try await resolver.serviceRecords("_matrix-fed._tcp.other.test")
            } throws: { error in
                (error as? DNSError) == .serverFailure(name: "_matrix-fed._tcp.other.test", type: .srv, responseCode: .refused)
                    && "\(error)".contains("SRV") && "\(error)".contains("\"_matrix-fed._tcp.other.test\"")
                    && "\(error)".contains("REFUSED")
            }
            #expect(await server.queryCount("_matrix-fed._tcp.other.test") == 2)
        }
    }

    @Test("a nameserver that never answers: each attempt times out fast and the error names the name and type")
    func timeout() async throws {
        let silent = try await SilentNameserver()
        var configuration = DNSResolver.Configuration(nameservers: [silent.address], hostsFilePath: "/nonexistent/hosts")
        configuration.queryTimeout = .milliseconds(200)
        let resolver = DNSResolver(configuration: configuration, group: MultiThreadedEventLoopGroup.singleton,
                                   logger: Logger(label: "dns-test"))
        let started = ContinuousClock.now
        await #expect {
            _ = try await resolver.serviceRecords("_matrix-fed._tcp.silent.example")
        } throws: { error in
            (error as? DNSError) == .timeout(name: "_matrix-fed._tcp.silent.example", type: .srv)
                && "\(error)" == "DNS SRV query for \"_matrix-fed._tcp.silent.example\" timed out"
        }
        let elapsed = ContinuousClock.now - started
        // Two 200 ms attempts; the upper bound leaves room for a loaded CI machine.
        #expect(elapsed >= .milliseconds(400) && elapsed < .seconds(10))
        // The server's event loop may read the second datagram a little after the client gave up.
        let deadline = ContinuousClock.now + .seconds(5)
        while silent.arrivalTimes.count < 2, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(silent.arrivalTimes.count == 2)
        #expect(resolver.statistics.timeouts == 2)
        await silent.stop()
    }

    @Test("maxQueriesInFlight is a hard cap: with 1, queries reach the server one at a time, the rest wait")
    func queryCap() async throws {
        let silent = try await SilentNameserver()
        var configuration = DNSResolver.Configuration(nameservers: [silent.address], hostsFilePath: "/nonexistent/hosts")
        configuration.queryTimeout = .milliseconds(100)
        configuration.attempts = 1
        configuration.maxQueriesInFlight = 1
        let resolver = DNSResolver(configuration: configuration, group: MultiThreadedEventLoopGroup.singleton,
                                   logger: Logger(label: "dns-test"))
        let maximumWaiting = await withTaskGroup(of: Int.self) { group in
            for index in 0..<4 {
                group.addTask { _ = try? await resolver.addresses(for: "silent\(index).example"); return 0 }
            }
            // Until a query is seen waiting for the one slot (bounded), the cap is never passed.
            group.addTask {
                var maximum = 0
                let deadline = ContinuousClock.now + .seconds(10)
                while maximum == 0, ContinuousClock.now < deadline {
                    maximum = max(maximum, resolver.statistics.queriesWaiting)
                    #expect(resolver.statistics.queriesInFlight <= 1)
                    try? await Task.sleep(for: .milliseconds(1))
                }
                return maximum
            }
            return await group.reduce(0, max)
        }
        #expect(maximumWaiting > 0)
        #expect(resolver.statistics.peakQueriesInFlight == 1)
        // Every query still reached the server, one after another (the peak above shows
        // none overlapped; arrival spacing is not checked because a loaded machine delays timers).
        #expect(silent.arrivalTimes.count == 8)
        await silent.stop()
    }

    @Test("1,000 concurrent resolutions of 50 names cost at most 50 × 2 queries; cached answers cost none until they expire")
    func concurrentResolutions() async throws {
        try await withResolver { resolver, server, clock in
            func wave() async throws {
                try await withThrowingTaskGroup(of: (Int, [String]).self) { group in
                    for index in 0..<1000 {
                        group.addTask { (index % 50, try await resolver.addresses(for: "n\(index % 50).example.test")) }
                    }
                    for try await (name, addresses) in group {
                        #expect(addresses == ["2001:db8::\(name + 100)", "192.0.2.\(name + 100)"])
                    }
                }
            }
            try await wave()
            let cold = await server.queries().filter { $0.name.hasPrefix("n") }
            #expect(cold.count <= 50 * 2)
            #expect(Set(cold).count == cold.count)
            #expect(resolver.statistics.peakQueriesInFlight <= 32)

            clock.advance(by: .seconds(299))
            try await wave()
            #expect(await server.queries().filter { $0.name.hasPrefix("n") }.count == cold.count)

            clock.advance(by: .seconds(1))
            try await wave()
            #expect(await server.queries().filter { $0.name.hasPrefix("n") }.count <= cold.count + 50 * 2)
            let statistics = resolver.statistics
            #expect(statistics.cacheMisses == 2 * 50 * 2)
            #expect(statistics.sharedLookups > 0)
            #expect(statistics.queriesSent <= 2 * 50 * 2)
            #expect(statistics.cacheHits >= 1000 * 2)
        }
    }

    @Test("without configured nameservers, resolv.conf's are used, and 127.0.0.1:53 when it lists none")
    func nameserversFromResolvConf() async throws {
        let directory = try TemporaryDirectory(prefix: "southbridge-dns-test")
        defer { directory.remove() }
        try writeFile(directory.path + "/resolv.conf", "search example.test\nnameserver 192.0.2.53\n")
        try writeFile(directory.path + "/empty.conf", "options edns0\n")
        var configuration = DNSResolver.Configuration(hostsFilePath: "/nonexistent/hosts")
        configuration.resolvConfPath = directory.path + "/resolv.conf"
        let fromFile = DNSResolver(configuration: configuration, group: MultiThreadedEventLoopGroup.singleton,
                                   logger: Logger(label: "dns-test"))
        #expect(fromFile.nameservers == [try SocketAddress(ipAddress: "192.0.2.53", port: 53)])
        configuration.resolvConfPath = directory.path + "/empty.conf"
        let fallback = DNSResolver(configuration: configuration, group: MultiThreadedEventLoopGroup.singleton,
                                   logger: Logger(label: "dns-test"))
        #expect(fallback.nameservers == [try SocketAddress(ipAddress: "127.0.0.1", port: 53)])
    }

    @Test("IP literals are returned as they are, canonical; invalid names are refused before any query")
    func literalsAndInvalidNames() async throws {
        try await withResolver { resolver, _, _ in
            let ipv6 = try await resolver.addresses(for: "2001:DB8:0:0::1")
            #expect(ipv6 == ["2001:db8::1"])
            let ipv4 = try await resolver.addresses(for: "192.0.2.9")
            #expect(ipv4 == ["192.0.2.9"])
            await #expect(throws: DNSError.self) { try await resolver.addresses(for: "bad name.example.test") }
            #expect(resolver.statistics.queriesSent == 0)
        }
    }
}
