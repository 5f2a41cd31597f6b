import Federation

/// An `https://` URL that `.well-known` discovery may request: a host, a port and a
/// request-target of visible ASCII, with no user information and no fragment.
///
/// Redirect `Location` values are resolved against the URL they answered (RFC 3986 §5.2,
/// dot segments removed). Two URLs are the same place when their descriptions are equal;
/// the description lower-cases a DNS host and leaves out port 443.
struct WellKnownURL: Sendable, Hashable, CustomStringConvertible {
    static let httpsPort = 443
    static let wellKnownPath = "/.well-known/matrix/server"

    var host: ServerName.Host
    var port: Int
    /// The path, plus `?query` when there is one.
    var target: String

    /// The `.well-known/matrix/server` URL of `hostname` on `port`.
    init(wellKnownOf host: ServerName.Host, port: Int) {
        self.host = host
        self.port = port
        self.target = Self.wellKnownPath
    }

    private init(host: ServerName.Host, port: Int, target: String) {
        self.host = host
        self.port = port
        self.target = target
    }

    var description: String {
        let hostText: String = switch host {
        case .dns(let name): name.lowercased()
        case .ipv4(let address): address
        case .ipv6(let address): "[\(address.lowercased())]"
        }
        return port == Self.httpsPort ? "https://\(hostText)\(target)" : "https://\(hostText):\(port)\(target)"
    }

    /// The URL that `location` (a `Location` header value) points to from this URL.
    func resolving(_ location: String) throws(WellKnownURLError) -> WellKnownURL {
        func fail(_ reason: String) -> WellKnownURLError {
            WellKnownURLError(location: location, reason: reason)
        }
        var reference = Substring(location.trimmingSpaces)
        guard !reference.isEmpty else { throw fail("it is empty") }
        guard reference.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw fail("only visible ASCII without spaces is accepted")
        }
        if let hash = reference.firstIndex(of: "#") {
            reference = reference[..<hash]
        }
        if let scheme = Self.scheme(of: reference) {
            guard scheme.lowercased() == "https" else { throw fail("only https:// redirects are followed") }
            reference = reference.dropFirst(scheme.count + 1)
            guard reference.hasPrefix("//") else { throw fail("an https URL needs an authority after \"https:\"") }
        }
        if reference.hasPrefix("//") {
            let rest = reference.dropFirst(2)
            let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
            let authority = rest[..<authorityEnd]
            guard !authority.contains("@") else { throw fail("user information in a URL is not accepted") }
            let serverName: ServerName
            do {
                serverName = try ServerName(String(authority))
            } catch {
                throw fail("the authority is not a host with an optional port: \(error)")
            }
            var (path, query) = Self.splitQuery(rest[authorityEnd...])
            if path.isEmpty { path = "/" }
            return WellKnownURL(host: serverName.host, port: serverName.port.map(Int.init) ?? Self.httpsPort,
                                target: Self.removingDotSegments(path) + query)
        }
        let (basePath, baseQuery) = Self.splitQuery(Substring(target))
        let (path, query) = Self.splitQuery(reference)
        let resolvedPath: String
        let resolvedQuery: String
        if path.isEmpty {
            resolvedPath = basePath
            resolvedQuery = query.isEmpty ? baseQuery : query
        } else if path.hasPrefix("/") {
            resolvedPath = Self.removingDotSegments(path)
            resolvedQuery = query
        } else {
            let directory = basePath[...(basePath.lastIndex(of: "/") ?? basePath.startIndex)]
            resolvedPath = Self.removingDotSegments(directory + path)
            resolvedQuery = query
        }
        return WellKnownURL(host: host, port: port, target: resolvedPath + resolvedQuery)
    }

    /// The scheme of an absolute reference (RFC 3986 §3.1), or nil for a relative one.
    private static func scheme(of reference: Substring) -> Substring? {
        guard let colon = reference.firstIndex(of: ":") else { return nil }
        let candidate = reference[..<colon]
        guard let first = candidate.unicodeScalars.first, isLetter(first),
              candidate.unicodeScalars.allSatisfy({ isLetter($0) || ("0"..."9").contains($0) || "+-.".unicodeScalars.contains($0) })
        else { return nil }
        return candidate
    }

    private static func isLetter(_ scalar: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar)
    }

    /// Splits `path?query` into the path and the query with its leading `?` (empty when absent).
    private static func splitQuery(_ text: Substring) -> (path: String, query: String) {
        guard let mark = text.firstIndex(of: "?") else { return (String(text), "") }
        return (String(text[..<mark]), String(text[mark...]))
    }

    /// RFC 3986 §5.2.4.
    static func removingDotSegments(_ path: String) -> String {
        var input = Substring(path)
        var output: [Substring] = []
        while !input.isEmpty {
            if input.hasPrefix("../") {
                input = input.dropFirst(3)
            } else if input.hasPrefix("./") {
                input = input.dropFirst(2)
            } else if input.hasPrefix("/./") {
                input = input.dropFirst(2)
            } else if input == "/." {
                input = "/"
            } else if input.hasPrefix("/../") {
                input = input.dropFirst(3)
                if !output.isEmpty { output.removeLast() }
            } else if input == "/.." {
                input = "/"
                if !output.isEmpty { output.removeLast() }
            } else if input == "." || input == ".." {
                input = ""
            } else {
                let start = input.hasPrefix("/") ? input.index(after: input.startIndex) : input.startIndex
                let end = input[start...].firstIndex(of: "/") ?? input.endIndex
                output.append(input[..<end])
                input = input[end...]
            }
        }
        let result = output.joined()
        return result.hasPrefix("/") ? result : "/" + result
    }
}

/// Why a redirect's `Location` cannot be followed; names the value and the rule.
struct WellKnownURLError: Error, Sendable, Equatable, CustomStringConvertible {
    var location: String
    var reason: String

    var description: String {
        "Location \(location.quotedExcerpt()) cannot be followed: \(reason)"
    }
}

extension String {
    fileprivate var trimmingSpaces: Substring {
        var text = Substring(self)
        while let first = text.first, first == " " || first == "\t" { text.removeFirst() }
        while let last = text.last, last == " " || last == "\t" { text.removeLast() }
        return text
    }
}
