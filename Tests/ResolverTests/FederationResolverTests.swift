import Federation
import Logging
import NIOCore
import NIOPosix
import Resolver
import SouthbridgeSwarm
import SouthbridgeTestSupport
import Testing
import Transport

/// Server discovery end to end: a real dnsmasq answers DNS, a real HTTPS server answers
/// `.well-known`, and `FederationResolver` must give the spec's answer for every row of
/// its table (matrix-spec.md §2, "Resolution test cases").
@Suite("FederationResolver: the spec's discovery table against dnsmasq and HTTPS", .serialized)
struct FederationResolverTests {
    /// What a row expects: endpoints, `Host` header and certificate name.
    struct Row: Sendable, CustomTestStringConvertible {
        var serverName: String
        var endpoints: [String]
        var hostHeader: String
        var certificate: ResolvedFederationAddress.CertificateName
        var testDescription: String { serverName }
    }

    static let zone = "example.test"
    /// 245 bytes: a valid server name, too long to put `_matrix-fed._tcp.` in front of.
    static let longName = [String(repeating: "a", count: 63), String(repeating: "b", count: 63),
                           String(repeating: "c", count: 63), String(repeating: "d", count: 40), "example.test"].joined(separator: ".")
    /// Names with a `.well-known` answer point at the HTTPS server on 127.0.0.1.
    static let wellKnownAnswers: [String: JSONValue] = [
        "wk-ip.example.test": ["m.server": "10.0.0.2"],
        "wk-ip6.example.test": ["m.server": "[::1]:8449"],
        "wk-port.example.test": ["m.server": "d1.example.test:1234"],
        "wk-srv.example.test": ["m.server": "d2.example.test"],
        "wk-oldsrv.example.test": ["m.server": "d3.example.test"],
        "wk-nosrv.example.test": ["m.server": "d4.example.test"],
        "wk-bad.example.test": ["m.server": "bad name!"],
        "wk-chain.example.test": ["m.server": "wk-port.example.test"],
    ]
    static let records = [
        "host-record=named.example.test,10.0.0.1",
        "host-record=d1.example.test,10.0.0.3",
        "srv-host=_matrix-fed._tcp.d2.example.test,t.example.test,8443,10,5",
        "host-record=t.example.test,10.0.0.4",
        "srv-host=_matrix._tcp.d3.example.test,t2.example.test,8450,0,0",
        "host-record=t2.example.test,10.0.0.6",
        "host-record=d4.example.test,10.0.0.5",
        "srv-host=_matrix-fed._tcp.nowk-srv.example.test,fed.example.test,443,10,0",
        "host-record=fed.example.test,10.0.0.7",
        "host-record=nowk.example.test,::1",
        "srv-host=_matrix-fed._tcp.dot.example.test,.",
        "host-record=dot.example.test,127.0.0.1",
        "host-record=two.example.test,10.0.1.1",
        "srv-host=_matrix-fed._tcp.two.example.test,low.example.test,8001,10,0",
        "srv-host=_matrix-fed._tcp.two.example.test,high.example.test,8002,20,0",
        "host-record=low.example.test,10.0.1.2",
        "host-record=high.example.test,10.0.1.3",
        // RFC 2782: an SRV target must name its own addresses, not be an alias.
        "cname=alias.example.test,t.example.test",
        "srv-host=_matrix-fed._tcp.srv-alias.example.test,alias.example.test,8001,10,0",
        "srv-host=_matrix-fed._tcp.srv-alias.example.test,t.example.test,8002,20,0",
        "srv-host=_matrix-fed._tcp.srv-alias-only.example.test,alias.example.test,8001,10,0",
        "host-record=\(longName),10.0.2.1",
    ] + (wellKnownAnswers.keys.sorted() + ["nowk-srv.example.test"]).map { "host-record=\($0),127.0.0.1" }

    static let rows: [Row] = [
        Row(serverName: "1.2.3.4", endpoints: ["1.2.3.4:8448"], hostHeader: "1.2.3.4", certificate: .ipAddress("1.2.3.4")),
        Row(serverName: "1.2.3.4:1234", endpoints: ["1.2.3.4:1234"], hostHeader: "1.2.3.4:1234", certificate: .ipAddress("1.2.3.4")),
        Row(serverName: "[1234:5678::abcd]", endpoints: ["[1234:5678::abcd]:8448"], hostHeader: "[1234:5678::abcd]",
            certificate: .ipAddress("1234:5678::abcd")),
        Row(serverName: "[1234:5678::abcd]:5678", endpoints: ["[1234:5678::abcd]:5678"], hostHeader: "[1234:5678::abcd]:5678",
            certificate: .ipAddress("1234:5678::abcd")),
        Row(serverName: "named.example.test:8888", endpoints: ["10.0.0.1:8888"], hostHeader: "named.example.test:8888",
            certificate: .hostname("named.example.test")),
        Row(serverName: "wk-ip.example.test", endpoints: ["10.0.0.2:8448"], hostHeader: "10.0.0.2", certificate: .ipAddress("10.0.0.2")),
        Row(serverName: "wk-ip6.example.test", endpoints: ["[::1]:8449"], hostHeader: "[::1]:8449", certificate: .ipAddress("::1")),
        Row(serverName: "wk-port.example.test", endpoints: ["10.0.0.3:1234"], hostHeader: "d1.example.test:1234",
            certificate: .hostname("d1.example.test")),
        Row(serverName: "wk-srv.example.test", endpoints: ["10.0.0.4:8443"], hostHeader: "d2.example.test",
            certificate: .hostname("d2.example.test")),
        Row(serverName: "wk-oldsrv.example.test", endpoints: ["10.0.0.6:8450"], hostHeader: "d3.example.test",
            certificate: .hostname("d3.example.test")),
        Row(serverName: "wk-nosrv.example.test", endpoints: ["10.0.0.5:8448"], hostHeader: "d4.example.test",
            certificate: .hostname("d4.example.test")),
        Row(serverName: "nowk-srv.example.test", endpoints: ["10.0.0.7:443"], hostHeader: "nowk-srv.example.test",
            certificate: .hostname("nowk-srv.example.test")),
        Row(serverName: "nowk.example.test", endpoints: ["[::1]:8448"], hostHeader: "nowk.example.test",
            certificate: .hostname("nowk.example.test")),
        Row(serverName: "wk-bad.example.test", endpoints: ["127.0.0.1:8448"], hostHeader: "wk-bad.example.test",
            certificate: .hostname("wk-bad.example.test")),
        // Delegation happens once: wk-port's own .well-known is not followed.
        Row(serverName: "wk-chain.example.test", endpoints: ["127.0.0.1:8448"], hostHeader: "wk-port.example.test",
            certificate: .hostname("wk-port.example.test")),
        // An SRV target of "." means no service: fall through to A/AAAA on 8448.
        Row(serverName: "dot.example.test", endpoints: ["127.0.0.1:8448"], hostHeader: "dot.example.test",
            certificate: .hostname("dot.example.test")),
        // Lower SRV priority first.
        Row(serverName: "two.example.test", endpoints: ["10.0.1.2:8001", "10.0.1.3:8002"], hostHeader: "two.example.test",
            certificate: .hostname("two.example.test")),
        // A target that is a CNAME is not followed; the other target is used.
        Row(serverName: "srv-alias.example.test", endpoints: ["10.0.0.4:8002"], hostHeader: "srv-alias.example.test",
            certificate: .hostname("srv-alias.example.test")),
        // No SRV record can have a name longer than DNS allows: straight to A/AAAA on 8448.
        Row(serverName: longName, endpoints: ["10.0.2.1:8448"], hostHeader: longName, certificate: .hostname(longName)),
    ]

    /// A resolver wired as the daemon wires it, against the test's DNS and HTTPS servers.
    final class Discovery: Sendable {
        let dnsmasq: DnsmasqServer
        let wellKnownServer: SwarmServer
        let resolver: FederationResolver
        /// Sends through `resolver`, as the sender does.
        let client: FederationClient
        let directory: TemporaryDirectory
        let group = MultiThreadedEventLoopGroup.singleton

        /// `records` and `authoritative` go to `DnsmasqServer.start`; `configureDNS` adjusts
        /// the DNS client (shorter timeouts for a test that expects them).
        init(allowlist: [String], records: [String] = FederationResolverTests.records, authoritative: Bool = true,
             configureDNS: (inout DNSResolver.Configuration) -> Void = { _ in }) async throws {
            directory = try TemporaryDirectory(prefix: "southbridge-discovery")
            dnsmasq = try await DnsmasqServer.start(records, authoritative: authoritative)
            let key = try SigningKey.generate(version: "discovery")
            let authority = try TestCertificateAuthority()
            wellKnownServer = try await SwarmServer.start(
                certificateNames: Array(FederationResolverTests.wellKnownAnswers.keys) + ["nowk-srv.example.test", "dot.example.test"],
                wellKnownAnswers: FederationResolverTests.wellKnownAnswers, certificateAuthority: authority,
                trustedOrigins: ["origin.example.test": key.verifyKey], group: group)
            try authority.writeCACertificate(to: directory.path + "/ca.pem")
            let logger = Logger(label: "discovery-test")
            let pool = ConnectionPool(
                limits: .init(maxConnections: 8, maxTLSHandshakes: 4, connectTimeout: .seconds(2), tlsHandshakeTimeout: .seconds(2)),
                tlsContext: try TLSContext.client(caFile: directory.path + "/ca.pem"), group: group, logger: logger)
            var dnsConfiguration = DNSResolver.Configuration(nameservers: [dnsmasq.address], hostsFilePath: directory.path + "/no-hosts")
            configureDNS(&dnsConfiguration)
            let dns = DNSResolver(configuration: dnsConfiguration, group: group, logger: logger)
            let ranges = try allowlist.map { try IPRange(parsing: $0) }
            let wellKnown = WellKnownResolver(
                fetcher: PoolWellKnownFetcher(pool: pool), lookUpAddresses: { try await dns.addresses(for: $0) },
                ipRangeAllowlist: ranges, port: wellKnownServer.port, logger: logger)
            resolver = FederationResolver(dns: dns, wellKnown: wellKnown, ipRangeAllowlist: ranges, logger: logger)
            client = FederationClient(origin: "origin.example.test", signingKey: key, resolver: resolver, pool: pool,
                                      requestTimeout: .seconds(2), maxResponseBytes: 1 << 20)
        }

        func stop() async {
            dnsmasq.stop()
            await wellKnownServer.stop()
            directory.remove()
        }

        /// Runs `body` against a fresh fixture and stops it afterwards, whether `body` threw or not.
        @discardableResult
        static func with<Value>(allowlist: [String], records: [String] = FederationResolverTests.records, authoritative: Bool = true,
                                configureDNS: (inout DNSResolver.Configuration) -> Void = { _ in },
                                _ body: (Discovery) async throws -> Value) async throws -> Value {
            let discovery = try await Discovery(allowlist: allowlist, records: records, authoritative: authoritative,
                                                configureDNS: configureDNS)
            do {
                let value = try await body(discovery)
                await discovery.stop()
                return value
            } catch {
                await discovery.stop()
                throw error
            }
        }
    }

    static let testAllowlist = ["10.0.0.0/8", "127.0.0.0/8", "::1/128"]

    @Test("every row of the spec's table", arguments: rows)
    func specTable(row: Row) async throws {
        let address = try await Discovery.with(allowlist: Self.testAllowlist) { discovery in
            try await discovery.resolver.resolve(try ServerName(row.serverName))
        }
        #expect(address.endpoints.map(\.description) == row.endpoints)
        #expect(address.hostHeader == row.hostHeader)
        #expect(address.certificateName == row.certificate)
        #expect(address.destination.description == row.serverName)
    }

    @Test("a name whose every address is blocked fails naming the address and the range")
    func blockedAddresses() async throws {
        try await Discovery.with(allowlist: ["127.0.0.0/8"]) { discovery in
            await #expect {
                _ = try await discovery.resolver.resolve(try ServerName("named.example.test:8888"))
            } throws: { error in
                guard let error = error as? ResolutionError else { return false }
                return error == .allAddressesBlocked(host: "named.example.test", address: "10.0.0.1", range: "10.0.0.0/8")
            }
        }
    }

    @Test("a name that does not exist is a typed error naming it")
    func noSuchName() async throws {
        try await Discovery.with(allowlist: Self.testAllowlist) { discovery in
            await #expect {
                _ = try await discovery.resolver.resolve(try ServerName("missing.example.test:8448"))
            } throws: { error in
                (error as? ResolutionError) == .noSuchName(host: "missing.example.test")
            }
        }
    }

    @Test("an SRV record whose only target is a CNAME fails naming the target, and 8448 is not tried")
    func aliasTarget() async throws {
        let result = try await Discovery.with(allowlist: Self.testAllowlist) { discovery in
            do {
                return Result<ResolvedFederationAddress, ResolutionError>.success(
                    try await discovery.resolver.resolve(try ServerName("srv-alias-only.example.test")))
            } catch let error as ResolutionError {
                return .failure(error)
            }
        }
        let reason = DNSError.aliasNotAllowed(name: "alias.example.test", target: "t.example.test").description
        #expect(result == .failure(.unusableServiceTarget(host: "alias.example.test", reason: reason)))
        #expect(reason.contains("CNAME"))
    }

    @Test("resolving a name again is answered from the caches")
    func cachedSecondResolution() async throws {
        try await Discovery.with(allowlist: Self.testAllowlist) { discovery in
            _ = try await discovery.resolver.resolve(try ServerName("wk-srv.example.test"))
            let queries = await discovery.dnsmasq.queries().count
            let wellKnownRequests = discovery.wellKnownServer.requestCount
            _ = try await discovery.resolver.resolve(try ServerName("wk-srv.example.test"))
            #expect(await discovery.dnsmasq.queries().count == queries)
            #expect(discovery.wellKnownServer.requestCount == wellKnownRequests)
        }
    }
}
