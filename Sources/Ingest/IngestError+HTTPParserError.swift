import NIOCore
import NIOHTTP1

extension IngestError {
    /// The answer to bytes that are not an HTTP/1.1 request, naming the part at fault; the
    /// connection closes after it, since where the next request would start is unknown.
    static func malformedRequest(_ error: HTTPParserError) -> IngestError {
        let problem: String
        switch error {
        case .headerOverflow:
            return IngestError(status: 431, errcode: "M_TOO_LARGE",
                               "request head: the header fields are over 80 KiB, or more than 65,534 of them")
        case .invalidEOFState:
            problem = "request: the connection was closed before the request was complete"
        case .invalidMethod:
            problem = "request line: the method is not an HTTP method"
        case .invalidURL, .invalidPath, .invalidQueryString, .invalidFragment, .invalidHost, .invalidPort:
            problem = "request line: the target is not a valid origin-form path"
        case .invalidVersion:
            problem = "request line: the version is not HTTP/1.0 or HTTP/1.1"
        case .invalidHeaderToken:
            problem = "request head: a header field name is not a token"
        case .invalidContentLength:
            problem = "Content-Length: not a decimal length"
        case .unexpectedContentLength:
            problem = "Content-Length: not allowed with Transfer-Encoding, or given twice with different values"
        case .invalidChunkSize:
            problem = "request body: a chunk size is not hexadecimal"
        case .invalidCharactersUsed:
            problem = "request head: a character HTTP/1.1 does not allow there"
        case .lfExpected:
            problem = "request head: a line that does not end in CRLF"
        case .invalidConstant, .strictModeAssertion:
            problem = "request head: not HTTP/1.1"
        default:
            problem = "request: not HTTP/1.1"
        }
        return IngestError(status: 400, errcode: "M_UNRECOGNIZED", problem)
    }

    /// The answer to a request that did not arrive whole in time; the connection closes after it.
    static func requestTimeout(_ timeout: TimeAmount) -> IngestError {
        IngestError(status: 408, errcode: "M_UNKNOWN",
                    "request: not received whole within ingest.request_timeout_ms (\(timeout.nanoseconds / 1_000_000) ms)")
    }
}
