import Federation

/// A validated `POST /_southbridge/v1/query` body.
public struct ForwardedQuery: Sendable {
    public var destination: String
    public var method: String
    /// The percent-encoded path, starting with `/_matrix/` or `/.well-known/`.
    public var path: String
    public var query: [(name: String, value: String)]
    /// The JSON body; PUT and POST always have one (at least `{}`), as the spec requires.
    public var body: JSONValue?
    public var timeoutMS: Int
    public var ignoreBackoff: Bool

    /// The longest a query may wait for its answer: a query never waits forever.
    public static let maxTimeoutMS = 120_000
    public static let defaultTimeoutMS = 30_000
}

/// Sends a forwarded query and gives the answer to return to the homeserver.
public protocol QueryForwarding: Sendable {
    func forward(_ query: ForwardedQuery) async -> IngestResponse
}

extension ForwardedQuery {
    /// Validates the request body, naming the first wrong field.
    static func parse(_ bytes: [UInt8]) throws(IngestError) -> ForwardedQuery {
        let root: JSONValue
        do {
            root = try JSONValue.parse(bytes)
        } catch {
            throw .notJSON("request body: \(error)")
        }
        guard case .object(let fields) = root else { throw .badJSON("request body: must be a JSON object") }
        let known: Set = ["destination", "method", "path", "query", "body", "timeout_ms", "priority", "ignore_backoff"]
        for key in fields.keys.sorted() where !known.contains(key) {
            throw .badJSON("\(FieldPath.member(key, of: "")): unknown field (expected \(known.sorted().joined(separator: ", ")))")
        }
        guard case .string(let destination)? = fields["destination"] else { throw .badJSON("destination: required string is missing") }
        do {
            try ServerName.validate(destination)
        } catch {
            throw .badJSON("destination: \(error)")
        }
        guard case .string(let method)? = fields["method"], ["GET", "PUT", "POST", "DELETE"].contains(method) else {
            throw .badJSON("method: must be one of GET, PUT, POST, DELETE")
        }
        guard case .string(let path)? = fields["path"] else { throw .badJSON("path: required string is missing") }
        guard path.hasPrefix("/_matrix/") || path.hasPrefix("/.well-known/"),
              path.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "?") && $0 != UInt8(ascii: "#") }) else {
            throw .badJSON("path: must start with /_matrix/ and be percent-encoded ASCII without '?', '#' or spaces, got \"\(path.prefix(80))\"")
        }
        var query: [(name: String, value: String)] = []
        if let value = fields["query"] {
            guard case .object(let parameters) = value else { throw .badJSON("query: must be an object of strings or arrays of strings") }
            for name in parameters.keys.sorted() {
                switch parameters[name]! {
                case .string(let text): query.append((name, text))
                case .array(let items):
                    for (index, item) in items.enumerated() {
                        guard case .string(let text) = item else { throw .badJSON("\(FieldPath.element(index, of: FieldPath.member(name, of: "query"))): must be a string") }
                        query.append((name, text))
                    }
                default: throw .badJSON("\(FieldPath.member(name, of: "query")): must be a string or an array of strings")
                }
            }
        }
        var body = fields["body"]
        if let body, case .object = body {} else if body != nil { throw .badJSON("body: must be a JSON object") }
        if body == nil, method == "PUT" || method == "POST" { body = .object([:]) }
        var timeoutMS = defaultTimeoutMS
        if let value = fields["timeout_ms"] {
            guard case .integer(let number) = value, (1...Int64(maxTimeoutMS)).contains(number) else {
                throw .badJSON("timeout_ms: must be a whole number from 1 to \(maxTimeoutMS) (a query never waits forever), got \(value.excerpt())")
            }
            timeoutMS = Int(number)
        }
        if let value = fields["priority"], value != .string("interactive") {
            throw .badJSON("priority: only \"interactive\" is supported, got \(value.excerpt())")
        }
        var ignoreBackoff = false
        if let value = fields["ignore_backoff"] {
            guard case .bool(let flag) = value else { throw .badJSON("ignore_backoff: must be true or false") }
            ignoreBackoff = flag
        }
        return ForwardedQuery(destination: destination, method: method, path: path, query: query, body: body,
                              timeoutMS: timeoutMS, ignoreBackoff: ignoreBackoff)
    }
}
