import Federation

/// The decisions of one `.well-known` lookup, with no I/O: which URL to request next, and what
/// a response means.
///
/// It starts at `https://<hostname>/.well-known/matrix/server`, follows 301, 302, 303, 307 and
/// 308 to https URLs (relative or absolute `Location`), at most `maxRedirects` times and never
/// back to a URL already requested, and judges the final response: status 200, a body within
/// the limit that is a JSON object (whatever its `Content-Type`) whose `m.server` is a valid
/// server name. Anything else ends it with a `WellKnownFailure`.
struct WellKnownDiscovery: Sendable {
    enum Action: Sendable, Equatable {
        /// Request this URL next.
        case fetch(WellKnownURL)
        /// The lookup is over.
        case finish(Outcome)
    }

    enum Outcome: Sendable, Equatable {
        /// A valid `m.server`, with the caching its response asked for.
        case valid(ServerName, WellKnownCacheLifetime)
        case invalid(WellKnownFailure)
    }

    static let redirectStatuses: Set<Int> = [301, 302, 303, 307, 308]

    private(set) var current: WellKnownURL
    private var visited: Set<String>
    private var redirectsFollowed = 0
    private let maxRedirects: Int
    private let maxBodyBytes: Int

    init(start: WellKnownURL, maxRedirects: Int, maxBodyBytes: Int) {
        self.current = start
        self.visited = [start.description]
        self.maxRedirects = maxRedirects
        self.maxBodyBytes = maxBodyBytes
    }

    /// The first request.
    var firstAction: Action { .fetch(current) }

    /// The response to the URL last asked for.
    mutating func received(_ response: WellKnownFetchResponse) -> Action {
        if Self.redirectStatuses.contains(response.status) {
            return redirect(response)
        }
        guard response.status == 200 else { return fail(.httpStatus(response.status)) }
        guard response.body.count <= maxBodyBytes else { return fail(.bodyTooLarge(limit: maxBodyBytes)) }
        let json: JSONValue
        do {
            json = try JSONValue.parse(response.body)
        } catch {
            return fail(.invalidJSON(error))
        }
        guard case .object(let members) = json else { return fail(.notAnObject) }
        guard let server = members["m.server"] else { return fail(.missingServer) }
        guard case .string(let text) = server else { return fail(.serverNotAString) }
        do {
            return .finish(.valid(try ServerName(text), WellKnownCacheLifetime(headers: response)))
        } catch {
            return fail(.invalidServerName(error))
        }
    }

    /// The request to the URL last asked for got no response.
    func failed(_ error: WellKnownFetchError) -> Action {
        switch error {
        case .timedOut(let reason): fail(.timedOut(reason: reason))
        case .bodyTooLarge(let limit): fail(.bodyTooLarge(limit: limit))
        case .connectionFailed(let reason): fail(.connectionFailed(reason: reason))
        }
    }

    private mutating func redirect(_ response: WellKnownFetchResponse) -> Action {
        guard let location = response.headerValues("location").first else {
            return fail(.redirectWithoutLocation(status: response.status))
        }
        let next: WellKnownURL
        do {
            next = try current.resolving(location)
        } catch {
            return fail(.invalidRedirect(location: location, reason: error.reason))
        }
        guard !visited.contains(next.description) else { return fail(.redirectLoop(url: next.description)) }
        guard redirectsFollowed < maxRedirects else { return fail(.tooManyRedirects(limit: maxRedirects)) }
        redirectsFollowed += 1
        visited.insert(next.description)
        current = next
        return .fetch(next)
    }

    private func fail(_ problem: WellKnownFailure.Problem) -> Action {
        .finish(.invalid(WellKnownFailure(url: current.description, problem: problem)))
    }
}
