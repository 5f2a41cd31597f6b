import NIOCore
import Testing

@testable import Transport

/// The sans-I/O response reader: framing, keep-alive, interim responses, limits and the rules a
/// malformed response breaks, each fed whole and split at every byte boundary.
struct HTTPResponseParserTests {
    /// What the parser made of one response.
    struct Outcome: Equatable {
        var statusCode: Int?
        var headers: [String] = []
        var keepAlive: Bool?
        var contentLength: Int?
        var body = ""
        var ended = false
        var failure: HTTPResponseParser.Failure?
        /// What the parser counted against the limit.
        var responseBytes = 0
    }

    /// A well-formed response and what must come out of it.
    struct Valid: Sendable, CustomTestStringConvertible {
        var name: String
        var wire: String
        var requestIsHEAD = false
        /// The body runs until the connection closes.
        var closeDelimited = false
        var statusCode: Int
        var body: String
        var keepAlive: Bool
        var contentLength: Int?

        var testDescription: String { name }
    }

    static let valid: [Valid] = [
        Valid(
            name: "Content-Length", wire: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello",
            statusCode: 200, body: "hello", keepAlive: true, contentLength: 5),
        Valid(
            name: "chunked with extensions and trailers",
            wire: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n5;name=value\r\nalpha\r\n"
                + "B \r\n-beta-gamma\r\n0\r\nExpires: never\r\n\r\n",
            statusCode: 200, body: "alpha-beta-gamma", keepAlive: true),
        Valid(
            name: "HTTP/1.0 closes by default", wire: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
            statusCode: 200, body: "ok", keepAlive: false, contentLength: 2),
        Valid(
            name: "HTTP/1.0 keep-alive", wire: "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok",
            statusCode: 200, body: "ok", keepAlive: true, contentLength: 2),
        Valid(
            name: "Connection: close", wire: "HTTP/1.1 503 Busy\r\nconnection: upgrade, close\r\ncontent-length: 0\r\n\r\n",
            statusCode: 503, body: "", keepAlive: false, contentLength: 0),
        Valid(
            name: "204 has no body", wire: "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n",
            statusCode: 204, body: "", keepAlive: true),
        Valid(
            name: "304 has no body", wire: "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
            statusCode: 304, body: "", keepAlive: true),
        Valid(
            name: "HEAD has no body", wire: "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", requestIsHEAD: true,
            statusCode: 200, body: "", keepAlive: true),
        Valid(
            name: "interim 100 and 103 are skipped",
            wire: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                + "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n!",
            statusCode: 200, body: "!", keepAlive: true, contentLength: 1),
        Valid(
            name: "bare LF line ends", wire: "HTTP/1.1 200 OK\nContent-Length: 3\n\nabc",
            statusCode: 200, body: "abc", keepAlive: true, contentLength: 3),
        Valid(
            name: "no reason phrase", wire: "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
            statusCode: 200, body: "", keepAlive: true, contentLength: 0),
        Valid(
            name: "repeated equal Content-Length", wire: "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nhi",
            statusCode: 200, body: "hi", keepAlive: true, contentLength: 2),
        Valid(
            name: "Transfer-Encoding wins over Content-Length and retires the connection",
            wire: "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
            statusCode: 200, body: "hi", keepAlive: false),
        Valid(
            name: "no length: the body runs until close", wire: "HTTP/1.1 200 OK\r\nServer: old\r\n\r\nuntil the end",
            closeDelimited: true, statusCode: 200, body: "until the end", keepAlive: false),
        Valid(
            name: "a final coding other than chunked runs until close",
            wire: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nzipped", closeDelimited: true,
            statusCode: 200, body: "zipped", keepAlive: false),
        Valid(
            name: "field values keep inner spaces and obs-text",
            wire: "HTTP/1.1 200 OK\r\nX-Note: \t a  b \u{E9}\t\r\nContent-Length: 0\r\n\r\n",
            statusCode: 200, body: "", keepAlive: true, contentLength: 0),
    ]

    @Test(arguments: valid)
    func wellFormedResponseParsesWholeAndSplitAtEveryByte(_ response: Valid) {
        let bytes = Array(response.wire.utf8)
        for split in 0...bytes.count {
            let outcome = Self.parse(
                bytes, pieces: [split], requestIsHEAD: response.requestIsHEAD, closeAtEnd: response.closeDelimited)
            #expect(outcome.failure == nil, "split at \(split)")
            #expect(outcome.statusCode == response.statusCode, "split at \(split)")
            #expect(outcome.body == response.body, "split at \(split)")
            #expect(outcome.keepAlive == response.keepAlive, "split at \(split)")
            #expect(outcome.contentLength == response.contentLength, "split at \(split)")
            #expect(outcome.ended, "split at \(split)")
        }
    }

    @Test func headersKeepWireOrderAndTrimmedValues() {
        let outcome = Self.parse(
            Array("HTTP/1.1 200 OK\r\nB-Header:  two \r\nA-Header:one\r\nContent-Length: 0\r\n\r\n".utf8))
        #expect(outcome.headers == ["B-Header=two", "A-Header=one", "Content-Length=0"])
    }

    @Test func bytesByteByByteProduceTheSameResponse() {
        let wire = Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n".utf8)
        let outcome = Self.parse(wire, pieces: Array(1..<wire.count))
        #expect(outcome.body == "abcd")
        #expect(outcome.ended)
    }

    /// A malformed response and the words its failure must contain.
    struct Malformed: Sendable, CustomTestStringConvertible {
        var wire: String
        var reason: String
        var testDescription: String { reason + ": " + wire.debugDescription }
    }

    static let malformed: [Malformed] = [
        Malformed(wire: "HTTP/2 200 OK\r\n\r\n", reason: "does not start with HTTP/1.x"),
        Malformed(wire: "HTTP/1.1 20 OK\r\n\r\n", reason: "status code is not three digits"),
        Malformed(wire: "HTTP/1.1 2000 OK\r\n\r\n", reason: "status code is not three digits"),
        Malformed(wire: "HTTP/1.1 099 Low\r\n\r\n", reason: "below 100"),
        Malformed(wire: "HTTP/1.1 200 O\u{7}K\r\n\r\n", reason: "reason phrase contains a control character"),
        Malformed(wire: "HTTP/1.1 200 OK\r\nA: b\r\n  folded\r\n\r\n", reason: "obs-fold"),
        Malformed(wire: "HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n", reason: "without a colon"),
        Malformed(wire: "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", reason: "is not a token"),
        Malformed(wire: "HTTP/1.1 200 OK\r\nName : x\r\n\r\n", reason: "is not a token"),
        Malformed(wire: "HTTP/1.1 200 OK\r\nName: a\u{0}b\r\n\r\n", reason: "contains a control character"),
        Malformed(wire: "HTTP/1.1 200 OK\r\nName: a\rb\r\n\r\n", reason: "contains a control character"),
        Malformed(wire: "HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\n", reason: "is not a length"),
        Malformed(wire: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", reason: "is not a length"),
        Malformed(wire: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", reason: "values disagree"),
        Malformed(wire: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", reason: "not hexadecimal"),
        Malformed(wire: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n;x\r\n", reason: "chunk size missing"),
        Malformed(
            wire: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000\r\n", reason: "chunk size too large"),
        Malformed(
            wire: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", reason: "longer than its declared size"),
        Malformed(wire: "HTTP/1.1 101 Switching Protocols\r\n\r\n", reason: "101 Switching Protocols"),
        Malformed(
            wire: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n",
            reason: "without an outstanding request"),
    ]

    @Test(arguments: malformed)
    func malformedResponseFailsNamingTheRule(_ response: Malformed) {
        let outcome = Self.parse(Array(response.wire.utf8))
        guard case .malformed(let reason) = outcome.failure else {
            Issue.record("expected a malformed response, got \(outcome)")
            return
        }
        #expect(reason.contains(response.reason), "\(reason)")
    }

    /// tchar from RFC 9110 section 5.6.2.
    static let tokenCharacters = Set("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)

    @Test(arguments: (0...255).filter { $0 != UInt8(ascii: ":") && $0 != UInt8(ascii: "\n") })
    func fieldNameAcceptsExactlyTheTokenCharacters(_ byte: Int) {
        var wire = Array("HTTP/1.1 204 No Content\r\nX".utf8)
        wire += [UInt8(byte)] + Array("Y: v\r\n\r\n".utf8)
        let outcome = Self.parse(wire)
        #expect((outcome.failure == nil) == Self.tokenCharacters.contains(UInt8(byte)), "\(outcome)")
    }

    @Test func bytesBeforeAnyRequestAreRefused() {
        var parser = HTTPResponseParser()
        var buffer = ByteBuffer(string: "HTTP/1.1 200 OK\r\n")
        #expect(throws: HTTPResponseParser.Failure.malformed("response received without an outstanding request")) {
            _ = try parser.next(&buffer)
        }
    }

    @Test(arguments: [
        ("HTTP/1.1 200 OK\r\nX-Long: \(String(repeating: "a", count: 200))\r\n\r\n", 100),
        ("HTTP/1.1 200 OK\r\nX-Never-Ends: \(String(repeating: "a", count: 200))", 100),
        ("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n\(String(repeating: "b", count: 50))", 80),
        ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n\(String(repeating: "c", count: 64))\r\n0\r\n\r\n", 100),
    ])
    func responseOverTheLimitIsTooLarge(_ wire: String, _ limit: Int) {
        let outcome = Self.parse(Array(wire.utf8), limit: limit)
        let overLimit = outcome.failure == .tooLarge || (outcome.failure == nil && outcome.responseBytes > limit)
        #expect(overLimit, "\(outcome)")
    }

    @Test func twoResponsesInARowReuseTheParser() {
        var parser = HTTPResponseParser()
        for body in ["first", "second"] {
            parser.expectResponse(requestIsHEAD: false, limit: 1024)
            var buffer = ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
            var received = ""
            var ended = false
            while let part = try? parser.next(&buffer) {
                if case .body(let chunk) = part { received += String(buffer: chunk) }
                if case .end = part { ended = true }
            }
            #expect(received == body)
            #expect(ended)
            #expect(!parser.isExpectingResponse)
        }
    }

    /// Feeds `bytes` in pieces cut at `pieces` (ascending offsets), keeping what the parser left
    /// unread in front of the next piece as the exchange handler does.
    private static func parse(
        _ bytes: [UInt8], pieces: [Int] = [], requestIsHEAD: Bool = false, closeAtEnd: Bool = false,
        limit: Int = 64 * 1024
    ) -> Outcome {
        var parser = HTTPResponseParser()
        parser.expectResponse(requestIsHEAD: requestIsHEAD, limit: limit)
        var outcome = Outcome()
        var unread = ByteBuffer()
        var start = 0
        for end in pieces + [bytes.count] {
            unread.writeBytes(bytes[start..<end])
            start = end
            do {
                while let part = try parser.next(&unread) {
                    record(part, into: &outcome)
                }
            } catch {
                outcome.failure = error
                return outcome
            }
            outcome.responseBytes = parser.responseBytes
            unread.discardReadBytes()
        }
        if closeAtEnd, let part = parser.connectionClosed() {
            record(part, into: &outcome)
        }
        return outcome
    }

    private static func record(_ part: HTTPResponseParser.Part, into outcome: inout Outcome) {
        switch part {
        case .head(let head):
            outcome.statusCode = head.statusCode
            outcome.headers = head.headers.map { "\($0.name)=\($0.value)" }
            outcome.keepAlive = head.keepAlive
            outcome.contentLength = head.contentLength
        case .body(let chunk):
            outcome.body += String(buffer: chunk)
        case .end:
            outcome.ended = true
        }
    }
}
