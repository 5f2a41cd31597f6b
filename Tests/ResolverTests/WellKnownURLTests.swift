import Federation
@testable import Resolver
import Testing

@Suite("WellKnownURL: following Location values (RFC 3986 §5.2) and HTTP dates")
struct WellKnownURLTests {
    private static let base = WellKnownURL(wellKnownOf: .dns("wk.test"), port: 443)

    @Test("a Location resolves against the URL it answered", arguments: [
        ("/a", "https://wk.test/a"),
        ("a", "https://wk.test/.well-known/matrix/a"),
        ("../a", "https://wk.test/.well-known/a"),
        ("../../../../a", "https://wk.test/a"),
        ("./a/./b/../c", "https://wk.test/.well-known/matrix/a/c"),
        ("?x=1", "https://wk.test/.well-known/matrix/server?x=1"),
        ("#fragment", "https://wk.test/.well-known/matrix/server"),
        ("/a?b=c#d", "https://wk.test/a?b=c"),
        (" /padded\t", "https://wk.test/padded"),
        ("https://Other.Test:8443/p?q", "https://other.test:8443/p?q"),
        ("HTTPS://other.test:443/p", "https://other.test/p"),
        ("https://other.test", "https://other.test/"),
        ("https://1.2.3.4/p", "https://1.2.3.4/p"),
        ("https://[2001:DB8::1]:8443/", "https://[2001:db8::1]:8443/"),
        ("//other.test/x/../y", "https://other.test/y"),
    ])
    func resolves(location: String, expected: String) throws {
        #expect(try Self.base.resolving(location).description == expected)
    }

    @Test("a Location that cannot be followed says why", arguments: [
        ("http://wk.test/", "only https:// redirects"),
        ("ftp://wk.test/", "only https:// redirects"),
        ("mailto:admin@wk.test", "only https:// redirects"),
        ("https:/x", "needs an authority"),
        ("https://user:secret@wk.test/", "user information"),
        ("https://wk.test:0/", "not a host with an optional port"),
        ("https://bad_name/", "not a host with an optional port"),
        ("https://::1/", "not a host with an optional port"),
        ("/with space", "visible ASCII"),
        ("/caf\u{E9}", "visible ASCII"),
        ("", "empty"),
    ])
    func refuses(location: String, reason: String) {
        #expect {
            _ = try Self.base.resolving(location)
        } throws: { error in
            guard let error = error as? WellKnownURLError else { return false }
            return error.location == location && error.description.contains(reason)
        }
    }

    @Test("dot segments are removed as RFC 3986 §5.2.4 says", arguments: [
        ("/a/b/c/./../../g", "/a/g"),
        ("/mid/content=5/../6", "/mid/6"),
        ("/..", "/"),
        ("/a/..", "/"),
        ("/a/.", "/a/"),
        ("/", "/"),
    ])
    func dotSegments(path: String, expected: String) {
        #expect(WellKnownURL.removingDotSegments(path) == expected)
    }

    @Test("the three HTTP date formats parse to Unix time", arguments: [
        ("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_777),
        ("Sunday, 06-Nov-94 08:49:37 GMT", 784_111_777),
        ("Sun Nov  6 08:49:37 1994", 784_111_777),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0),
        ("Tue, 29 Feb 2000 12:00:00 GMT", 951_825_600),
        ("Fri, 31 Dec 2049 23:59:59 GMT", 2_524_607_999),
    ] as [(String, Int64)])
    func httpDates(text: String, seconds: Int64) {
        #expect(HTTPDate.secondsSinceEpoch(text) == seconds)
    }

    @Test("anything else is not an HTTP date", arguments: [
        "0", "", "Thu, 29 Feb 2001 00:00:00 GMT", "Sun, 06 Nov 1994 24:00:00 GMT", "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 6 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 8:49:37 GMT",
    ])
    func notHTTPDates(text: String) {
        #expect(HTTPDate.secondsSinceEpoch(text) == nil)
    }
}
