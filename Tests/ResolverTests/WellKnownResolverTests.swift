import Federation
import NIOCore
import Resolver
import Testing

@Suite("WellKnownResolver: .well-known/matrix/server over real HTTPS")
struct WellKnownResolverTests {
    private static let path = WellKnownFixture.wellKnownPath

    @Test("a valid m.server is the delegation, whatever the content type", arguments: [
        ("{\"m.server\": \"delegated.test\"}", "application/json", "delegated.test"),
        ("{\"m.server\": \"delegated.test:1234\"}", "application/json", "delegated.test:1234"),
        ("{\"m.server\": \"10.0.0.2\"}", "application/json", "10.0.0.2"),
        ("{\"m.server\": \"[::1]:8449\"}", "application/json", "[::1]:8449"),
        ("{\"m.server\": \"delegated.test\", \"other\": {\"x\": [1, 2]}}", "application/json", "delegated.test"),
        ("  {\"m.server\":\"delegated.test\"}\n", "text/html", "delegated.test"),
        ("{\"m.server\": \"delegated.test\"}", "", "delegated.test"),
    ])
    func valid(body: String, contentType: String, expected: String) async throws {
        try await WellKnownFixture.with { fixture in
            let headers: [(name: String, value: String)] = contentType.isEmpty ? [] : [("Content-Type", contentType)]
            fixture.server.set(Self.path, .init(headers: headers, body: Array(body.utf8)))
            let resolver = try fixture.resolver()
            let result = await resolver.delegatedServerName(for: "wk.test")
            #expect(result == .delegated(try ServerName(expected)))
            #expect(fixture.server.requests == [.init(target: Self.path, host: "wk.test:\(fixture.port)")])
            #expect(await resolver.statistics.fetches == 1)
        }
    }

    @Test("any invalid answer is none, naming the URL and what was wrong", arguments: [
        ("not JSON", WellKnownTestServer.Answer.json("{\"m.server\": "), "invalidJSON", "not JSON"),
        ("no m.server", .json("{\"server\": \"delegated.test\"}"), "missingServer", "no \"m.server\""),
        ("m.server not a string", .json("{\"m.server\": 8448}"), "serverNotAString", "not a string"),
        ("invalid server name", .json("{\"m.server\": \"bad name!\"}"), "invalidServerName", "\"bad name!\""),
        ("not an object", .json("[\"m.server\"]"), "notAnObject", "not an object"),
        ("404", .init(status: 404, body: Array("nothing here".utf8)), "httpStatus", "HTTP 404"),
        ("500", .init(status: 500), "httpStatus", "HTTP 500"),
        ("204", .init(status: 204), "httpStatus", "HTTP 204"),
        ("redirect without Location", .init(status: 302), "redirectWithoutLocation", "without a Location"),
        ("redirect to http", .redirect(to: "http://wk.test/x"), "invalidRedirect", "only https"),
        ("redirect with user information", .redirect(to: "https://user@wk.test/x"), "invalidRedirect", "user information"),
    ])
    func invalid(name: String, answer: WellKnownTestServer.Answer, problem: String, text: String) async throws {
        try await WellKnownFixture.with { fixture in
            fixture.server.set(Self.path, answer)
            let result = try await fixture.resolver().delegatedServerName(for: "wk.test")
            let failure = try #require(result.failure)
            #expect(failure.problem.caseName == problem)
            #expect(failure.url == fixture.url())
            #expect(failure.description.contains(text))
            #expect(failure.description.hasPrefix(fixture.url()))
        }
    }

    @Test("the body may be 50 KiB, not a byte more", arguments: [
        (50 * 1024, true), (50 * 1024 + 1, false), (1024 * 1024, false),
    ])
    func bodyLimit(size: Int, accepted: Bool) async throws {
        try await WellKnownFixture.with { fixture in
            let json = Array("{\"m.server\": \"delegated.test\"}".utf8)
            let body = json + Array(repeating: UInt8(ascii: " "), count: size - json.count)
            fixture.server.set(Self.path, .init(body: body))
            let result = try await fixture.resolver().delegatedServerName(for: "wk.test")
            if accepted {
                #expect(result == .delegated(try ServerName("delegated.test")))
            } else {
                #expect(result.failure?.problem == .bodyTooLarge(limit: 50 * 1024))
            }
        }
    }

    @Test("redirects are followed: every redirect status, relative and absolute Location, other hosts", arguments: [
        (301, "/moved", "/moved", "wk.test"),
        (302, "moved", "/.well-known/matrix/moved", "wk.test"),
        (303, "../elsewhere?v=1", "/.well-known/elsewhere?v=1", "wk.test"),
        (307, "https://wk.test:{port}/absolute", "/absolute", "wk.test"),
        (308, "HTTPS://other.test:{port}/other#fragment", "/other", "other.test"),
        (302, "//other.test:{port}/scheme-relative", "/scheme-relative", "other.test"),
    ])
    func redirects(status: Int, location: String, finalTarget: String, finalHost: String) async throws {
        try await WellKnownFixture.with { fixture in
            let resolvedLocation = location.replacing("{port}", with: String(fixture.port))
            fixture.server.set(Self.path, .redirect(status, to: resolvedLocation))
            fixture.server.set(finalTarget, .delegation("delegated.test:4433"))
            let result = try await fixture.resolver().delegatedServerName(for: "wk.test")
            #expect(result == .delegated(try ServerName("delegated.test:4433")))
            #expect(fixture.server.requests == [
                .init(target: Self.path, host: "wk.test:\(fixture.port)"),
                .init(target: finalTarget, host: "\(finalHost):\(fixture.port)"),
            ])
        }
    }

    @Test("a redirect back to a URL already requested is a loop")
    func redirectLoop() async throws {
        try await WellKnownFixture.with { fixture in
            fixture.server.set(Self.path, .redirect(to: "/a"))
            fixture.server.set("/a", .redirect(to: "/b"))
            fixture.server.set("/b", .redirect(to: fixture.url("/a")))
            let result = try await fixture.resolver().delegatedServerName(for: "wk.test")
            let failure = try #require(result.failure)
            #expect(failure.problem == .redirectLoop(url: fixture.url("/a")))
            #expect(failure.url == fixture.url("/b"))
            #expect(fixture.server.requests.map(\.target) == [Self.path, "/a", "/b"])
        }
    }

    @Test("a redirect to itself is a loop")
    func redirectToItself() async throws {
        try await WellKnownFixture.with { fixture in
            fixture.server.set(Self.path, .redirect(301, to: Self.path))
            let result = try await fixture.resolver().delegatedServerName(for: "wk.test")
            #expect(result.failure?.problem == .redirectLoop(url: fixture.url()))
            #expect(fixture.server.requestCount(Self.path) == 1)
        }
    }

    @Test("at most 5 redirects are followed", arguments: [(5, true), (6, false)])
    func redirectLimit(redirects: Int, accepted: Bool) async throws {
        try await WellKnownFixture.with { fixture in
            fixture.server.set(Self.path, .redirect(to: "/hop1"))
            for hop in 1..<redirects {
                fixture.server.set("/hop\(hop)", .redirect(to: "/hop\(hop + 1)"))
            }
            fixture.server.set("/hop\(redirects)", .delegation("delegated.test"))
            let result = try await fixture.resolver().delegatedServerName(for: "wk.test")
            if accepted {
                #expect(result == .delegated(try ServerName("delegated.test")))
                #expect(fixture.server.requests.count == 6)
            } else {
                #expect(result.failure?.problem == .tooManyRedirects(limit: 5))
                #expect(fixture.server.requests.count == 6)
            }
        }
    }

    @Test("a redirect to a host whose addresses are all blocked is none, and that host is never contacted")
    func redirectToBlockedHost() async throws {
        try await WellKnownFixture.with { fixture in
            fixture.server.set(Self.path, .redirect(to: "https://blocked.test/.well-known/matrix/server"))
            let resolver = try fixture.resolver(addresses: ["wk.test": ["127.0.0.1"], "blocked.test": ["10.1.2.3", "192.168.0.1"]])
            let failure = try #require(await resolver.delegatedServerName(for: "wk.test").failure)
            #expect(failure.problem == .allAddressesBlocked(host: "blocked.test", address: "10.1.2.3", range: "10.0.0.0/8"))
            #expect(failure.url == "https://blocked.test/.well-known/matrix/server")
            #expect(fixture.server.requests.count == 1)
        }
    }

    @Test("without an allowlist, loopback is blocked: none names the address and the range, nothing is requested")
    func blockedAddress() async throws {
        try await WellKnownFixture.with { fixture in
            let resolver = try fixture.resolver(allowlist: [])
            let failure = try #require(await resolver.delegatedServerName(for: "wk.test").failure)
            #expect(failure.problem == .allAddressesBlocked(host: "wk.test", address: "127.0.0.1", range: "127.0.0.0/8"))
            #expect(failure.description.contains("127.0.0.1 is in 127.0.0.0/8"))
            #expect(failure.description.contains("network.ip_range_allowlist"))
            #expect(fixture.server.requests.isEmpty)
        }
    }

    @Test("blocked addresses are skipped when another address of the name is allowed")
    func someAddressesBlocked() async throws {
        try await WellKnownFixture.with { fixture in
            fixture.server.set(Self.path, .delegation("delegated.test"))
            let resolver = try fixture.resolver(addresses: ["wk.test": ["10.9.9.9", "127.0.0.1"]])
            #expect(await resolver.delegatedServerName(for: "wk.test") == .delegated(try ServerName("delegated.test")))
        }
    }

    @Test("a name without addresses is none")
    func unknownName() async throws {
        try await WellKnownFixture.with { fixture in
            let failure = try #require(await fixture.resolver().delegatedServerName(for: "missing.test").failure)
            #expect(failure.problem.caseName == "noAddresses")
            #expect(failure.description.contains("missing.test"))
        }
    }

    @Test("a slow server is none once the configured timeout has passed")
    func slowServer() async throws {
        try await WellKnownFixture.with { fixture in
            fixture.server.set(Self.path, .json("{\"m.server\": \"delegated.test\"}", delay: .seconds(30)))
            var limits = WellKnownResolver.Limits()
            limits.timeout = .milliseconds(300)
            let resolver = try fixture.resolver(limits: limits)
            let started = ContinuousClock.now
            let failure = try #require(await resolver.delegatedServerName(for: "wk.test").failure)
            let elapsed = ContinuousClock.now - started
            #expect(failure.problem.caseName == "timedOut")
            #expect(elapsed >= .milliseconds(300))
            // Well before the server's 30 s answer, with room for a loaded CI machine.
            #expect(elapsed < .seconds(10))
        }
    }

    @Test("a certificate that is not valid for the name is none, and no request is sent")
    func wrongCertificate() async throws {
        try await WellKnownFixture.with(certificateNames: ["other.test"]) { fixture in
            let failure = try #require(await fixture.resolver().delegatedServerName(for: "wk.test").failure)
            #expect(failure.problem.caseName == "connectionFailed")
            #expect(fixture.server.requests.isEmpty)
        }
    }

    @Test("only a DNS name without a port has a .well-known", arguments: ["1.2.3.4", "[::1]", "wk.test:8448", "bad name!", ""])
    func notADNSName(name: String) async throws {
        try await WellKnownFixture.with { fixture in
            let resolver = try fixture.resolver()
            let failure = try #require(await resolver.delegatedServerName(for: name).failure)
            #expect(failure.problem == .notADNSName)
            #expect(await resolver.statistics.fetches == 0)
            #expect(fixture.server.requests.isEmpty)
        }
    }

    @Test("concurrent askers for one name share one fetch")
    func concurrentAskersShareOneFetch() async throws {
        try await WellKnownFixture.with { fixture in
            fixture.server.set(Self.path, .json("{\"m.server\": \"delegated.test\"}", delay: .milliseconds(300)))
            let resolver = try fixture.resolver()
            let results = await withTaskGroup(of: WellKnownResult.self) { group in
                for _ in 0..<50 {
                    group.addTask { await resolver.delegatedServerName(for: "wk.test") }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            #expect(results.count == 50)
            #expect(results.allSatisfy { $0 == .delegated(try! ServerName("delegated.test")) })
            #expect(fixture.server.requestCount(Self.path) == 1)
            let statistics = await resolver.statistics
            #expect(statistics.fetches == 1)
            #expect(statistics.sharedFetches == 49)
        }
    }

    @Test("the cache ignores the case of the name")
    func caseInsensitiveCache() async throws {
        try await WellKnownFixture.with { fixture in
            fixture.server.set(Self.path, .delegation("delegated.test"))
            let resolver = try fixture.resolver()
            _ = await resolver.delegatedServerName(for: "wk.test")
            #expect(await resolver.delegatedServerName(for: "WK.Test") == .delegated(try ServerName("delegated.test")))
            #expect(await resolver.statistics.cacheHits == 1)
            #expect(fixture.server.requests.count == 1)
        }
    }
}
