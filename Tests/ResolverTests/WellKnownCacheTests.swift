import Federation
import NIOCore
import Resolver
import Testing

@Suite("WellKnownResolver caching: periods, clamps, jitter, failures and the grace window")
struct WellKnownCacheTests {
    private static let path = WellKnownFixture.wellKnownPath

    /// After a first fetch, checks that the next lookup fetches again exactly `after` later on the test clock (±1 s).
    private func expectRefetch(_ resolver: WellKnownResolver, clock: WellKnownTestClock, after: TimeAmount,
                               sourceLocation: SourceLocation = #_sourceLocation) async {
        let before = await resolver.statistics.fetches
        clock.advance(by: after - .seconds(1))
        _ = await resolver.delegatedServerName(for: "wk.test")
        #expect(await resolver.statistics.fetches == before, "fetched again before \(after)", sourceLocation: sourceLocation)
        clock.advance(by: .seconds(2))
        _ = await resolver.delegatedServerName(for: "wk.test")
        #expect(await resolver.statistics.fetches == before + 1, "did not fetch again at \(after)", sourceLocation: sourceLocation)
    }

    /// The point in a valid answer's period where it is refreshed: the last 20 % are the grace window.
    private func refreshPoint(of period: TimeAmount) -> TimeAmount {
        .nanoseconds(period.nanoseconds / 5 * 4)
    }

    @Test("without caching headers a valid answer is kept 24 h × U(0.9, 1.1)", arguments: [
        (0.5, 86_400), (0.0, 77_760), (0.75, 90_720),
    ] as [(Double, Int64)])
    func defaultPeriodWithJitter(randomUnit: Double, seconds: Int64) async throws {
        try await WellKnownFixture.with { fixture in
            fixture.server.set(Self.path, .delegation("delegated.test"))
            let resolver = try fixture.resolver(randomUnit: randomUnit)
            #expect(await resolver.delegatedServerName(for: "wk.test") == .delegated(try ServerName("delegated.test")))
            #expect(await resolver.delegatedServerName(for: "wk.test") == .delegated(try ServerName("delegated.test")))
            #expect(await resolver.statistics.cacheHits == 1)
            await expectRefetch(resolver, clock: fixture.clock, after: refreshPoint(of: .seconds(seconds)))
        }
    }

    @Test("caching headers are honoured, clamped to 5 min–48 h, without jitter (no headers: the default, with jitter)", arguments: [
        ([("Cache-Control", "max-age=60")], 5 * 60),
        ([("Cache-Control", "max-age=3600")], 3600),
        ([("Cache-Control", "max-age=604800")], 48 * 3600),
        ([("Cache-Control", "max-age=99999999999999999999999")], 48 * 3600),
        ([("Cache-Control", "max-age=0")], 5 * 60),
        ([("Cache-Control", "no-store")], 5 * 60),
        ([("Cache-Control", "no-cache, max-age=86400")], 5 * 60),
        ([("Cache-Control", "private, max-age=7200")], 7200),
        ([("Cache-Control", "public, max-age=\"7200\"")], 7200),
        ([("Cache-Control", "Max-Age=7200")], 7200),
        ([("Cache-Control", "max-age=abc")], 5 * 60),
        ([("Cache-Control", "max-age=7200, max-age=3600")], 3600),
        ([("Cache-Control", "public"), ("Cache-Control", "max-age=3600")], 3600),
        ([("Cache-Control", "max-age=3600"), ("Expires", "Sun, 06 Nov 1994 08:49:37 GMT")], 3600),
        ([("Date", "Sun, 06 Nov 1994 08:49:37 GMT"), ("Expires", "Sun, 06 Nov 1994 11:49:37 GMT")], 3 * 3600),
        ([("Date", "Sunday, 06-Nov-94 08:49:37 GMT"), ("Expires", "Sun Nov  6 10:49:37 1994")], 2 * 3600),
        ([("Date", "Sun, 06 Nov 1994 08:49:37 GMT"), ("Expires", "0")], 5 * 60),
        ([("Cache-Control", "public")], 77_760),
    ] as [([(String, String)], Int64)])
    func cachingHeaders(headers: [(String, String)], seconds: Int64) async throws {
        try await WellKnownFixture.with { fixture in
            fixture.server.set(Self.path, .delegation("delegated.test", headers: headers.map { (name: $0.0, value: $0.1) }))
            // With the lowest jitter a header-given period would show as 10 % shorter; only the default has jitter.
            let resolver = try fixture.resolver(randomUnit: 0)
            #expect(await resolver.delegatedServerName(for: "wk.test") == .delegated(try ServerName("delegated.test")))
            await expectRefetch(resolver, clock: fixture.clock, after: refreshPoint(of: .seconds(seconds)))
        }
    }

    @Test("a failure is kept 1 h × U(0.9, 1.1)", arguments: [(0.5, 3600), (0.0, 3240), (0.75, 3780)] as [(Double, Int64)])
    func failurePeriod(randomUnit: Double, seconds: Int64) async throws {
        try await WellKnownFixture.with { fixture in
            let resolver = try fixture.resolver(randomUnit: randomUnit)
            let failure = try #require(await resolver.delegatedServerName(for: "wk.test").failure)
            #expect(failure.problem == .httpStatus(404))
            #expect(await resolver.delegatedServerName(for: "wk.test") == .none(reason: failure))
            #expect(await resolver.statistics.cacheHits == 1)
            await expectRefetch(resolver, clock: fixture.clock, after: .seconds(seconds))
        }
    }

    @Test("a failure is kept 2 min while the name had a valid answer less than 2 h ago, 1 h after that")
    func failureAfterValidAnswer() async throws {
        try await WellKnownFixture.with { fixture in
            fixture.server.set(Self.path, .delegation("delegated.test", headers: [("Cache-Control", "max-age=600")]))
            let resolver = try fixture.resolver()
            #expect(await resolver.delegatedServerName(for: "wk.test") == .delegated(try ServerName("delegated.test")))
            fixture.server.set(Self.path, .init(status: 404))
            fixture.clock.advance(by: .seconds(601))
            #expect(await resolver.delegatedServerName(for: "wk.test").failure?.problem == .httpStatus(404))
            #expect(await resolver.statistics.fetches == 2)
            await expectRefetch(resolver, clock: fixture.clock, after: .minutes(2))
            // The valid answer expired at 10 min; it counts as recent until 2 h 10 min.
            fixture.clock.advance(by: .hours(2) - .minutes(2) - .seconds(1))
            #expect(await resolver.delegatedServerName(for: "wk.test").failure != nil)
            #expect(await resolver.statistics.fetches == 4)
            await expectRefetch(resolver, clock: fixture.clock, after: .hours(1))
        }
    }

    @Test("a refresh in the grace window that fails temporarily keeps the previous answer until it expires")
    func graceWindowKeepsPreviousAnswer() async throws {
        try await WellKnownFixture.with { fixture in
            fixture.server.set(Self.path, .delegation("delegated.test", headers: [("Cache-Control", "max-age=3600")]))
            var limits = WellKnownResolver.Limits()
            limits.retryDelay = .milliseconds(10)
            let resolver = try fixture.resolver(limits: limits)
            let delegated = WellKnownResult.delegated(try ServerName("delegated.test"))
            #expect(await resolver.delegatedServerName(for: "wk.test") == delegated)

            fixture.server.set(Self.path, .init(status: 503))
            fixture.clock.advance(by: .seconds(2881))
            #expect(await resolver.delegatedServerName(for: "wk.test") == delegated)
            // A name with a recent valid answer gets 3 attempts for a 5xx.
            #expect(fixture.server.requestCount(Self.path) == 1 + 3)
            #expect(await resolver.statistics.previousAnswersKept == 1)

            // Not asked again for the down period (2 min).
            fixture.clock.advance(by: .seconds(119))
            #expect(await resolver.delegatedServerName(for: "wk.test") == delegated)
            #expect(fixture.server.requestCount(Self.path) == 4)
            fixture.clock.advance(by: .seconds(2))
            #expect(await resolver.delegatedServerName(for: "wk.test") == delegated)
            #expect(fixture.server.requestCount(Self.path) == 7)

            // Past its expiry the previous answer is gone: the failure is the answer, kept 2 min.
            fixture.clock.advance(by: .seconds(3600 - 2881 - 121 + 1))
            #expect(await resolver.delegatedServerName(for: "wk.test").failure?.problem == .httpStatus(503))
            #expect(await resolver.statistics.previousAnswersKept == 2)
            await expectRefetch(resolver, clock: fixture.clock, after: .minutes(2))
        }
    }

    @Test("a refresh in the grace window that gets an invalid answer drops the previous answer")
    func graceWindowPermanentFailure() async throws {
        try await WellKnownFixture.with { fixture in
            fixture.server.set(Self.path, .delegation("delegated.test", headers: [("Cache-Control", "max-age=3600")]))
            let resolver = try fixture.resolver()
            #expect(await resolver.delegatedServerName(for: "wk.test") == .delegated(try ServerName("delegated.test")))
            fixture.server.set(Self.path, .json("{}"))
            fixture.clock.advance(by: .seconds(2881))
            #expect(await resolver.delegatedServerName(for: "wk.test").failure?.problem == .missingServer)
            #expect(fixture.server.requestCount(Self.path) == 2)
            await expectRefetch(resolver, clock: fixture.clock, after: .minutes(2))
        }
    }

    @Test("a refresh in the grace window replaces the answer when the server changed it")
    func graceWindowNewAnswer() async throws {
        try await WellKnownFixture.with { fixture in
            fixture.server.set(Self.path, .delegation("delegated.test", headers: [("Cache-Control", "max-age=3600")]))
            let resolver = try fixture.resolver()
            _ = await resolver.delegatedServerName(for: "wk.test")
            fixture.server.set(Self.path, .delegation("moved.test:8443"))
            fixture.clock.advance(by: .seconds(2881))
            #expect(await resolver.delegatedServerName(for: "wk.test") == .delegated(try ServerName("moved.test:8443")))
            #expect(await resolver.delegatedServerName(for: "wk.test") == .delegated(try ServerName("moved.test:8443")))
            #expect(fixture.server.requestCount(Self.path) == 2)
        }
    }

    @Test("the cache holds at most maxEntries names, dropping the oldest")
    func boundedEntries() async throws {
        let names = (1...5).map { "n\($0).test" }
        try await WellKnownFixture.with(certificateNames: names) { fixture in
            fixture.server.set(Self.path, .delegation("delegated.test"))
            var limits = WellKnownResolver.Limits()
            limits.maxEntries = 3
            let resolver = try fixture.resolver(
                limits: limits, addresses: Dictionary(uniqueKeysWithValues: names.map { ($0, ["127.0.0.1"]) }))
            for name in names {
                #expect(await resolver.delegatedServerName(for: name) == .delegated(try ServerName("delegated.test")))
                fixture.clock.advance(by: .seconds(1))
            }
            #expect(await resolver.cachedNameCount == 3)
            _ = await resolver.delegatedServerName(for: "n5.test")
            #expect(await resolver.statistics.cacheHits == 1)
            _ = await resolver.delegatedServerName(for: "n1.test")
            #expect(await resolver.statistics.fetches == 6)
            #expect(await resolver.cachedNameCount == 3)
        }
    }
}
