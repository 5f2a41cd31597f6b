import Federation
import FuzzSupport
import NIOCore
import Testing

@testable import Resolver

/// `.well-known/matrix/server` answers a remote server could give, mutated in their body, their
/// header fields and their status: discovery always finishes within its redirect limit with a
/// valid server name or a failure, and whatever lifetime the headers ask for is clamped by the
/// cache without trapping.
struct WellKnownFuzzTests {
    static let bodies = Mutator(
        corpus: [
            #"{"m.server":"matrix.example.org"}"#,
            #"{"m.server":"matrix.example.org:8448","other":{"nested":[1,2,3]}}"#,
            #"{"m.server":"[2001:db8::1]:443"}"#,
            #"{"m.server":"192.0.2.1"}"#,
            #" { "m.server" : "a.b" } "#,
        ].map { Array($0.utf8) },
        tokens: [#"""#, "{", "}", ":", "[", "]", ".", ":65536", ":0", "m.server", "\\u0000", "xn--"].map { Array($0.utf8) },
        seed: 0x574B_424F, maxLength: 1024)

    /// Caching header sections as "name: value" lines, so mutants change names, values and line structure.
    static let headerSections = Mutator(
        corpus: [
            "Cache-Control: max-age=3600\nContent-Type: application/json",
            "Cache-Control: no-cache, max-age=86400\nCache-Control: private",
            "Cache-Control: public, max-age=\"7200\", s-maxage=60",
            "Date: Sun, 06 Nov 1994 08:49:37 GMT\nExpires: Sun, 06 Nov 1994 11:49:37 GMT",
            "Date: Sunday, 06-Nov-94 08:49:37 GMT\nExpires: Sun Nov  6 10:49:37 1994",
            "Expires: Thu, 01 Jan 9999 00:00:00 GMT\nDate: Sat, 01 Jan 0000 00:00:00 GMT",
        ].map { Array($0.utf8) },
        tokens: ["max-age=", "no-store", "Expires: ", "Date: ", "GMT", "Feb 29", "99999999999999999999", "\n", ",", "\""]
            .map { Array($0.utf8) },
        seed: 0x574B_4844, maxLength: 1024)

    static let locations = Mutator(
        corpus: [
            "https://other.example/.well-known/matrix/server",
            "https://Other.Example:8443/x?y=1",
            "/elsewhere?x=1#frag",
            "../../a/./b/../c",
            "https://user@host.example/",
            "//[2001:db8::1]:8448/p",
            "?only-a-query",
        ].map { Array($0.utf8) },
        tokens: ["https://", "http://", "//", "/..", "/.", "%2e%2e", "[::1]", ":0", ":65536", "@", "#", "?", " "]
            .map { Array($0.utf8) },
        seed: 0x574B_4C4F, maxLength: 1024)

    static let statuses = [200, 200, 200, 301, 302, 303, 307, 308, 204, 404, 500, 503, 0, 999]

    @Test("4,000 mutated answers end discovery within the redirect limit, with a clamped lifetime or a failure")
    func mutatedAnswers() throws {
        let limits = WellKnownResolver.Limits()
        let start = WellKnownURL(wellKnownOf: .dns("origin.example"), port: 443)
        var cache = WellKnownCache(limits: limits)
        let now = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
        for index in 0..<4000 {
            var discovery = WellKnownDiscovery(start: start, maxRedirects: limits.maxRedirects,
                                               maxBodyBytes: limits.maxBodyBytes)
            var action = discovery.firstAction
            var requests = 0
            var step = 0
            while case .fetch = action {
                requests += 1
                // Each request of one discovery gets its own answer, so redirect chains go on.
                let response = Self.response(index * 8 + step)
                step += 1
                action = discovery.received(response)
                guard requests <= limits.maxRedirects + 1 else { break }
            }
            #expect(requests <= limits.maxRedirects + 1, "case \(index) made \(requests) requests")
            guard case .finish(let outcome) = action else {
                Issue.record("case \(index) did not finish")
                continue
            }
            switch outcome {
            case .valid(let serverName, let lifetime):
                #expect((try? ServerName(serverName.description)) == serverName, "case \(index)")
                let period = cache.storeValid("origin.example", serverName: serverName, lifetime: lifetime, now: now,
                                              randomUnit: Double(index % 100) / 100)
                #expect(period >= limits.minCachePeriod && period <= .nanoseconds(limits.maxCachePeriod.nanoseconds * 11 / 10),
                        "case \(index): \(lifetime) kept for \(period)")
            case .invalid(let failure):
                #expect(failure.description.utf8.count <= 2000 && !failure.description.contains(where: \.isNewline),
                        "case \(index): \(failure)")
            }
        }
    }

    @Test("lifetimes at the edges of Int64 are clamped to the cache's bounds", arguments: [
        Int64.min, Int64.min + 1, -9_223_372_037, -1, 0, 1, 9_223_372_036, 9_223_372_037, Int64.max,
    ])
    func extremeLifetimes(_ seconds: Int64) throws {
        let limits = WellKnownResolver.Limits()
        var cache = WellKnownCache(limits: limits)
        let period = cache.storeValid("a.example", serverName: try ServerName("b.example"), lifetime: .seconds(seconds),
                                      now: .uptimeNanoseconds(1_000_000_000_000), randomUnit: 0.5)
        #expect(period >= limits.minCachePeriod && period <= limits.maxCachePeriod)
    }

    @Test("Expires and Date at the edges of what the date formats allow give a lifetime, never a trap", arguments: [
        ("Sat, 01 Jan 0000 00:00:00 GMT", "Fri, 31 Dec 9999 23:59:60 GMT"),
        ("Fri, 31 Dec 9999 23:59:60 GMT", "Sat, 01 Jan 0000 00:00:00 GMT"),
        ("Sun, 01 Jan -999 00:00:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT"),
        ("Sun Feb 29 00:00:00 +400", "Sun Feb 29 00:00:00 2000"),
        ("Sunday, 31-Dec-99 23:59:59 GMT", "Monday, 01-Jan-00 00:00:00 GMT"),
    ])
    func extremeDates(_ expires: String, _ date: String) {
        let response = WellKnownFetchResponse(status: 200, headers: [("Expires", expires), ("Date", date)], body: [])
        _ = WellKnownCacheLifetime(headers: response)
        let withoutDate = WellKnownFetchResponse(status: 200, headers: [("Expires", expires)], body: [])
        // The wall clock of a machine whose clock was never set, and one of the year 2106.
        _ = WellKnownCacheLifetime(headers: withoutDate, wallClockSeconds: { 0 })
        _ = WellKnownCacheLifetime(headers: withoutDate, wallClockSeconds: { 4_294_967_296 })
    }

    /// The answer for one request: a status, and header fields and a body of which some are
    /// mutated and some valid, so that mutants also reach the later checks.
    private static func response(_ index: Int) -> WellKnownFetchResponse {
        var generator = SplitMix64(seed: UInt64(index))
        let status = statuses[Int(generator.next() % UInt64(statuses.count))]
        var headers: [(name: String, value: String)] = []
        if WellKnownDiscovery.redirectStatuses.contains(status) {
            if generator.next() % 8 != 0 {
                headers.append(("Location", String(decoding: locations.input(index).bytes, as: UTF8.self)))
            }
        } else {
            for line in headerSections.input(index).bytes.split(separator: UInt8(ascii: "\n")) {
                let text = String(decoding: line, as: UTF8.self)
                guard let colon = text.firstIndex(of: ":") else { continue }
                headers.append((String(text[..<colon]), String(text[text.index(after: colon)...])))
            }
        }
        let body = generator.next() % 2 == 0
            ? bodies.input(index).bytes : bodies.corpus[Int(generator.next() % UInt64(bodies.corpus.count))]
        return WellKnownFetchResponse(status: status, headers: headers, body: body)
    }
}
