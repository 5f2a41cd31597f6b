import Glibc

/// How long a valid `.well-known` answer may be cached, as its response's header fields ask;
/// `WellKnownCache` applies the default, the jitter and the clamp.
///
/// Decisions (the spec only says "respect the cache-control headers"):
/// - Cache-Control directives from every `Cache-Control` field count, names case-insensitive.
/// - `no-store` or `no-cache` → the minimum period (5 min). Synapse does not cache such an
///   answer at all, which makes every request to the destination refetch it; a remote server
///   must not be able to make us fetch per request, and 5 min is the least any answer is trusted.
/// - `private` is ignored: it restricts shared caches, and this cache serves only this sender.
/// - `max-age=N` (token or quoted) → N s; with several, the smallest; an invalid value counts as 0
///   (stale, RFC 9111 §4.2.1), which the clamp raises to the minimum. `s-maxage` is for shared caches.
/// - Without `max-age`, `Expires` minus `Date` (minus our wall clock when `Date` is absent or
///   invalid), as RFC 9111 §4.2.1 computes a freshness lifetime; an invalid `Expires` counts as 0.
/// - With none of these, the default period applies.
enum WellKnownCacheLifetime: Sendable, Equatable {
    /// The response says nothing: the default period with jitter.
    case unspecified
    /// The response gives a lifetime in seconds, possibly 0 or negative, before clamping.
    case seconds(Int64)
    /// `no-store` or `no-cache`: the minimum period.
    case minimum

    init(headers response: WellKnownFetchResponse, wallClockSeconds: () -> Int64 = { Int64(time(nil)) }) {
        var maxAge: Int64?
        var forbidsCaching = false
        for field in response.headerValues("cache-control") {
            for directive in field.split(separator: ",") {
                let parts = directive.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let name = parts[0].trimmed.lowercased()
                switch name {
                case "no-store", "no-cache":
                    forbidsCaching = true
                case "max-age":
                    let value = parts.count == 2 ? Self.seconds(parts[1]) : nil
                    maxAge = min(maxAge ?? .max, value ?? 0)
                default:
                    break
                }
            }
        }
        if forbidsCaching {
            self = .minimum
        } else if let maxAge {
            self = .seconds(maxAge)
        } else if let expires = response.headerValues("expires").first {
            guard let expiry = HTTPDate.secondsSinceEpoch(String(expires.trimmed)) else {
                self = .seconds(0)
                return
            }
            let date = response.headerValues("date").first.flatMap { HTTPDate.secondsSinceEpoch(String($0.trimmed)) }
            self = .seconds(expiry - (date ?? wallClockSeconds()))
        } else {
            self = .unspecified
        }
    }

    /// A delta-seconds value (RFC 9111 §1.2.2), quoted or not; one too large for Int64 is the largest value.
    private static func seconds(_ text: Substring) -> Int64? {
        var value = text.trimmed
        if value.count >= 2, value.first == "\"", value.last == "\"" {
            value = value.dropFirst().dropLast()
        }
        guard !value.isEmpty, value.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
            return nil
        }
        return Int64(value) ?? .max
    }
}

extension StringProtocol {
    fileprivate var trimmed: Substring {
        var text = self[...]
        while let first = text.first, first == " " || first == "\t" { text = text.dropFirst() }
        while let last = text.last, last == " " || last == "\t" { text = text.dropLast() }
        return Substring(text)
    }
}
