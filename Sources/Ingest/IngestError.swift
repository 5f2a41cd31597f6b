import Federation

/// A Matrix-style error answer: an HTTP status and `{"errcode":…,"error":…}`.
///
/// The `error` text names the part of the request that was wrong, e.g.
/// `pdus[3].destinations[0]: "exa_mple.org" is not a valid server name`.
public struct IngestError: Error, Sendable, Equatable, CustomStringConvertible {
    public var status: Int
    public var errcode: String
    public var error: String

    public init(status: Int, errcode: String, _ error: String) {
        self.status = status
        self.errcode = errcode
        self.error = error
    }

    public var description: String { "\(status) \(errcode): \(error)" }

    var body: [UInt8] {
        CanonicalJSON.encode(.object(["errcode": .string(errcode), "error": .string(error)]))
    }

    static func badJSON(_ message: String) -> IngestError { IngestError(status: 400, errcode: "M_BAD_JSON", message) }
    static func notJSON(_ message: String) -> IngestError { IngestError(status: 400, errcode: "M_NOT_JSON", message) }
    static let missingToken = IngestError(status: 401, errcode: "M_MISSING_TOKEN", "missing Authorization: Bearer <token> header")
    static let unknownToken = IngestError(status: 401, errcode: "M_UNKNOWN_TOKEN", "the bearer token does not match ingest.token_file")
    static func tooLarge(limit: Int) -> IngestError {
        IngestError(status: 413, errcode: "M_TOO_LARGE", "request body is over ingest.max_body_bytes (\(limit) bytes)")
    }
    static func unrecognized(method: String, path: String) -> IngestError {
        IngestError(status: 404, errcode: "M_UNRECOGNIZED", "no endpoint \(method) \(path.quotedExcerpt())")
    }
    static func unknownDestination(_ name: String) -> IngestError {
        IngestError(status: 404, errcode: "M_NOT_FOUND", "destination \"\(name)\" is unknown: southbridge never had anything for it")
    }
    static func methodNotAllowed(method: String, path: String) -> IngestError {
        IngestError(status: 405, errcode: "M_UNRECOGNIZED", "\(path.quotedExcerpt()) does not accept \(method)")
    }
}
