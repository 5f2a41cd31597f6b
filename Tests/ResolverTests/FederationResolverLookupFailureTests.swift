import Federation
import Resolver
import SouthbridgeSwarm
import SouthbridgeTestSupport
import Testing
import Transport

/// Server discovery when the DNS cannot answer: dnsmasq forwards chosen SRV names to an
/// upstream that answers SERVFAIL or REFUSED or never answers, as a home router does when a
/// remote zone's nameservers are broken or its own upstream is down.
///
/// Only NXDOMAIN and NODATA say there is no SRV record. Any other failure must fail the
/// resolution, so the destination is tried again later, instead of sending its traffic to
/// `_matrix._tcp` or port 8448 where it may not be served.
@Suite("FederationResolver: an SRV lookup that fails is not 'no SRV record'", .serialized)
struct FederationResolverLookupFailureTests {
    enum Upstream: String, Sendable, CaseIterable {
        case servfail, refused, silent
    }

    struct Case: Sendable, CustomTestStringConvertible {
        var serverName: String
        /// The SRV name whose lookup fails.
        var failingName: String
        var upstream: Upstream
        var testDescription: String { "\(failingName) (\(upstream))" }
    }

    static let cases = Upstream.allCases.map {
        Case(serverName: "\($0).flaky.test", failingName: "_matrix-fed._tcp.\($0).flaky.test", upstream: $0)
    } + [
        // `_matrix-fed._tcp` does not exist; the deprecated `_matrix._tcp` lookup fails.
        Case(serverName: "legacy-servfail.flaky.test", failingName: "_matrix._tcp.legacy-servfail.flaky.test", upstream: .servfail),
    ]

    /// Every server name has an address, so port 8448 would "work", and, where
    /// `_matrix-fed._tcp` fails, a `_matrix._tcp` record, so falling through to it would
    /// "work" too; neither may be used. Other names in `flaky.test` do not exist.
    static func records(upstreamPorts ports: [Upstream: Int]) -> [String] {
        var records = ["local=/flaky.test/", "host-record=legacy.flaky.test,127.0.0.2"]
        for testCase in cases {
            records.append("host-record=\(testCase.serverName),127.0.0.1")
            records.append("server=/\(testCase.failingName)/127.0.0.1#\(ports[testCase.upstream]!)")
            if testCase.failingName.hasPrefix("_matrix-fed.") {
                records.append("srv-host=_matrix._tcp.\(testCase.serverName),legacy.flaky.test,8450,0,0")
            }
        }
        return records
    }

    struct Outcome {
        var resolution: Result<ResolvedFederationAddress, ResolutionError>
        /// What a federation request to the server name threw, as the sender sees it.
        var requestError: FederationRequestError?
        var queries: [DnsmasqServer.LoggedQuery]
    }

    /// What the resolver answered, what a request through it threw, and every query dnsmasq
    /// received meanwhile.
    func resolve(_ serverName: String) async throws -> Outcome {
        let servfail = try await FailingNameserver(answering: .serverFailure)
        let refused = try await FailingNameserver(answering: .refused)
        let silent = try await SilentNameserver()
        func stopUpstreams() async {
            await servfail.stop()
            await refused.stop()
            await silent.stop()
        }
        let records = Self.records(upstreamPorts: [
            .servfail: servfail.address.port!, .refused: refused.address.port!, .silent: silent.address.port!,
        ])
        do {
            let outcome = try await FederationResolverTests.Discovery.with(
                allowlist: ["127.0.0.0/8"], records: records, authoritative: false,
                configureDNS: { $0.queryTimeout = .milliseconds(300) }
            ) { discovery in
                let name = try ServerName(serverName)
                let resolution: Result<ResolvedFederationAddress, ResolutionError>
                do throws(ResolutionError) {
                    resolution = .success(try await discovery.resolver.resolve(name))
                } catch {
                    resolution = .failure(error)
                }
                var requestError: FederationRequestError?
                do throws(FederationRequestError) {
                    _ = try await discovery.client.send(
                        FederationRequest(method: "GET", target: "/_matrix/federation/v1/version", body: nil), to: name)
                } catch {
                    requestError = error
                }
                return Outcome(resolution: resolution, requestError: requestError, queries: await discovery.dnsmasq.queries())
            }
            await stopUpstreams()
            return outcome
        } catch {
            await stopUpstreams()
            throw error
        }
    }

    @Test("the resolution fails naming the SRV name and why; nothing after it is tried", arguments: cases)
    func failedLookup(testCase: Case) async throws {
        let outcome = try await resolve(testCase.serverName)
        let expected: ResolutionError = switch testCase.upstream {
        case .servfail:
            .lookupFailed(host: testCase.failingName, reason: DNSError.serverFailure(
                name: testCase.failingName, type: .srv, responseCode: .serverFailure).description)
        case .refused:
            .lookupFailed(host: testCase.failingName, reason: DNSError.serverFailure(
                name: testCase.failingName, type: .srv, responseCode: .refused).description)
        case .silent:
            .timeout(host: testCase.failingName, reason: DNSError.timeout(name: testCase.failingName, type: .srv).description)
        }
        #expect(outcome.resolution == .failure(expected))
        #expect(expected.description.contains("\"\(testCase.failingName)\""))
        if testCase.failingName.hasPrefix("_matrix-fed.") {
            #expect(!outcome.queries.contains { $0.name == "_matrix._tcp.\(testCase.serverName)" })
        }
        // Retried after the destination's backoff, like any unresolvable name; not given up on.
        #expect(outcome.requestError?.reason == expected.description)
        #expect(outcome.requestError?.isPermanent == false)
        #expect(outcome.requestError?.isLocalLimit == false)
    }
}
