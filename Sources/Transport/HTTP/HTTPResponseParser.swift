import Federation
import Glibc
import NIOCore

/// Reads HTTP/1.1 responses from a connection's plaintext, one per request, without doing I/O.
///
/// The exchange handler announces each request (`expectResponse`), feeds every received byte to
/// `next(_:)` and gets back the response's parts: its head, body slices (never copied) and its
/// end. Interim 1xx responses are skipped. The body is framed as RFC 9112 section 6.3 says for a
/// response: none for HEAD, 1xx, 204 and 304; chunked when it is the final transfer coding; the
/// Content-Length otherwise; else until the connection closes (`connectionClosed()`). Everything
/// that is not body (status line, header fields, chunk lines, trailers) and the body together
/// must fit in the limit given for the response, so a peer can never make it buffer more.
/// Anything that is not a well-formed response, including bytes nobody asked for, is a
/// `Failure`, after which the parser accepts nothing more.
struct HTTPResponseParser {
    /// The status line and header fields of a final response.
    struct Head {
        var statusCode: Int
        /// Field names and values as received, in wire order.
        var headers: [(name: String, value: String)]
        /// Whether the connection may carry another request once this response has been read.
        var keepAlive: Bool
        /// The body's declared length, nil when chunked or delimited by the connection closing.
        var contentLength: Int?
    }

    enum Part {
        case head(Head)
        case body(ByteBuffer)
        case end
    }

    enum Failure: Error, Equatable {
        /// The bytes are not a valid response; the reason says which rule they broke.
        case malformed(String)
        /// The response would exceed the limit given to `expectResponse`.
        case tooLarge
    }

    private enum Framing {
        case none
        case length(Int)
        case chunked
        case untilClose
    }

    private enum State {
        case idle
        case statusLine
        case headerFields
        case fixedBody(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailerFields
        case bodyUntilClose
        case failed
    }

    private var state = State.idle
    private var requestIsHEAD = false
    private var limit = 0
    /// Every byte consumed for the current response, interim responses included.
    private(set) var responseBytes = 0

    private var statusCode = 0
    private var minorVersion = 1
    private var headers: [(name: String, value: String)] = []
    private var contentLength: Int?
    private var transferCodingSeen = false
    private var chunkedIsFinal = false
    private var connectionClose = false
    private var connectionKeepAlive = false

    /// Whether a response is being read.
    var isExpectingResponse: Bool {
        switch state {
        case .idle, .failed: false
        default: true
        }
    }

    /// Prepares for the response to a request just sent.
    ///
    /// - Parameters:
    ///   - requestIsHEAD: a response to HEAD has no body whatever its header fields say.
    ///   - limit: the most bytes the whole response may take.
    mutating func expectResponse(requestIsHEAD: Bool, limit: Int) {
        precondition(!isExpectingResponse, "a response is already being read")
        guard case .idle = state else { return }
        self.requestIsHEAD = requestIsHEAD
        self.limit = limit
        responseBytes = 0
        state = .statusLine
        resetHead()
    }

    /// The next part of the response found in `buffer`, consuming the bytes it took; nil when
    /// `buffer` holds no complete part (keep the rest and call again with more bytes appended).
    mutating func next(_ buffer: inout ByteBuffer) throws(Failure) -> Part? {
        do {
            return try advance(&buffer)
        } catch {
            state = .failed
            throw error
        }
    }

    /// The connection closed: ends a body delimited by the close, and is nil for any other state.
    mutating func connectionClosed() -> Part? {
        guard case .bodyUntilClose = state else { return nil }
        state = .idle
        return .end
    }

    private mutating func advance(_ buffer: inout ByteBuffer) throws(Failure) -> Part? {
        while true {
            switch state {
            case .idle:
                guard buffer.readableBytes == 0 else {
                    throw .malformed("response received without an outstanding request")
                }
                return nil
            case .failed:
                throw .malformed("the connection's response stream failed earlier")
            case .statusLine:
                guard let line = try nextLine(&buffer) else { return nil }
                try parseStatusLine(line)
                state = .headerFields
            case .headerFields:
                guard let line = try nextLine(&buffer) else { return nil }
                if line.readableBytes > 0 {
                    try parseField(line)
                } else if let head = try endOfHead() {
                    return .head(head)
                }
            case .fixedBody(let remaining):
                if remaining == 0 {
                    state = .idle
                    return .end
                }
                guard buffer.readableBytes > 0 else { return nil }
                let slice = takeBody(&buffer, atMost: remaining)
                state = .fixedBody(remaining: remaining - slice.readableBytes)
                return .body(slice)
            case .chunkSize:
                guard let line = try nextLine(&buffer) else { return nil }
                let size = try Self.parseChunkSize(line)
                state = size == 0 ? .trailerFields : .chunkData(remaining: size)
            case .chunkData(let remaining):
                guard buffer.readableBytes > 0 else { return nil }
                let slice = takeBody(&buffer, atMost: remaining)
                let left = remaining - slice.readableBytes
                state = left == 0 ? .chunkDataEnd : .chunkData(remaining: left)
                return .body(slice)
            case .chunkDataEnd:
                guard let line = try nextLine(&buffer) else { return nil }
                guard line.readableBytes == 0 else { throw .malformed("chunk data longer than its declared size") }
                state = .chunkSize
            case .trailerFields:
                guard let line = try nextLine(&buffer) else { return nil }
                if line.readableBytes == 0 {
                    state = .idle
                    return .end
                }
                let failure: Failure? = line.withUnsafeReadableBytes { bytes in
                    if case .failure(let failure) = Self.splitField(bytes) { return failure }
                    return nil
                }
                if let failure { throw failure }
            case .bodyUntilClose:
                guard buffer.readableBytes > 0 else { return nil }
                return .body(takeBody(&buffer, atMost: buffer.readableBytes))
            }
        }
    }

    private mutating func resetHead() {
        statusCode = 0
        minorVersion = 1
        headers = []
        headers.reserveCapacity(12)
        contentLength = nil
        transferCodingSeen = false
        chunkedIsFinal = false
        connectionClose = false
        connectionKeepAlive = false
    }

    private mutating func takeBody(_ buffer: inout ByteBuffer, atMost count: Int) -> ByteBuffer {
        let slice = buffer.readSlice(length: min(count, buffer.readableBytes))!
        responseBytes += slice.readableBytes
        return slice
    }

    /// The next line without its LF (and the CR before it), counted against the limit.
    private mutating func nextLine(_ buffer: inout ByteBuffer) throws(Failure) -> ByteBuffer? {
        let found: Int? = buffer.withUnsafeReadableBytes { bytes in
            guard let base = bytes.baseAddress, let newline = memchr(base, 0x0A, bytes.count) else { return nil }
            return base.distance(to: UnsafeRawPointer(newline))
        }
        guard let length = found else {
            guard responseBytes + buffer.readableBytes <= limit else { throw .tooLarge }
            return nil
        }
        responseBytes += length + 1
        guard responseBytes <= limit else { throw .tooLarge }
        var line = buffer.readSlice(length: length)!
        buffer.moveReaderIndex(forwardBy: 1)
        if length > 0, line.getInteger(at: line.readerIndex + length - 1, as: UInt8.self) == UInt8(ascii: "\r") {
            line.moveWriterIndex(to: line.writerIndex - 1)
        }
        return line
    }

    /// `HTTP/1.x SP 3DIGIT [SP reason-phrase]`; a missing reason phrase and its space are tolerated.
    private mutating func parseStatusLine(_ line: ByteBuffer) throws(Failure) {
        let parsed: Result<(code: Int, minor: Int), Failure> = line.withUnsafeReadableBytes { bytes in
            let prefix: StaticString = "HTTP/1."
            guard bytes.count >= 12, memcmp(bytes.baseAddress!, prefix.utf8Start, 7) == 0,
                Self.isDigit(bytes[7]), bytes[8] == UInt8(ascii: " ")
            else {
                return .failure(.malformed("status line does not start with HTTP/1.x and a status code"))
            }
            var code = 0
            for index in 9..<12 {
                guard Self.isDigit(bytes[index]) else { return .failure(.malformed("status code is not three digits")) }
                code = code * 10 + Int(bytes[index] - UInt8(ascii: "0"))
            }
            guard code >= 100 else { return .failure(.malformed("status code \(code) is below 100")) }
            if bytes.count > 12 {
                guard bytes[12] == UInt8(ascii: " ") else { return .failure(.malformed("status code is not three digits")) }
                for index in 13..<bytes.count where !Self.isFieldValueByte(bytes[index]) {
                    return .failure(.malformed("reason phrase contains a control character"))
                }
            }
            return .success((code, Int(bytes[7] - UInt8(ascii: "0"))))
        }
        let (code, minor) = try parsed.get()
        statusCode = code
        minorVersion = minor
    }

    private mutating func parseField(_ line: ByteBuffer) throws(Failure) {
        let failure: Failure? = line.withUnsafeReadableBytes { bytes in
            let name: UnsafeRawBufferPointer
            let value: UnsafeRawBufferPointer
            switch Self.splitField(bytes) {
            case .success(let field): (name, value) = field
            case .failure(let failure): return failure
            }
            headers.append((name: String(decoding: name, as: UTF8.self), value: String(decoding: value, as: UTF8.self)))
            return noteFraming(name: name, value: value)
        }
        if let failure { throw failure }
    }

    /// Keeps what Content-Length, Transfer-Encoding and Connection say about framing and reuse.
    private mutating func noteFraming(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> Failure? {
        if Self.equalsIgnoringCase(name, "content-length") {
            return Self.forEachElement(of: value, skippingEmpty: false) { digits in
                guard digits.count > 0, digits.count <= 18, digits.allSatisfy(Self.isDigit) else {
                    return .malformed("Content-Length \(Self.quoted(value)) is not a length")
                }
                let length = digits.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
                guard contentLength == nil || contentLength == length else {
                    return .malformed("Content-Length values disagree")
                }
                contentLength = length
                return nil
            }
        }
        if Self.equalsIgnoringCase(name, "transfer-encoding") {
            return Self.forEachElement(of: value, skippingEmpty: true) { coding in
                transferCodingSeen = true
                chunkedIsFinal = Self.equalsIgnoringCase(coding, "chunked")
                return nil
            }
        }
        if Self.equalsIgnoringCase(name, "connection") {
            return Self.forEachElement(of: value, skippingEmpty: true) { option in
                if Self.equalsIgnoringCase(option, "close") { connectionClose = true }
                if Self.equalsIgnoringCase(option, "keep-alive") { connectionKeepAlive = true }
                return nil
            }
        }
        return nil
    }

    /// Ends the header section: the head of a final response, or nil after an interim one.
    private mutating func endOfHead() throws(Failure) -> Head? {
        if statusCode < 200 {
            guard statusCode != 101 else { throw .malformed("101 Switching Protocols answers no request sent here") }
            resetHead()
            state = .statusLine
            return nil
        }
        var keepAlive = minorVersion == 0 ? connectionKeepAlive && !connectionClose : !connectionClose
        let framing: Framing
        if requestIsHEAD || statusCode == 204 || statusCode == 304 {
            framing = .none
        } else if transferCodingSeen {
            // RFC 9112 section 6.1: a message with both is a likely smuggling attempt; never reuse it.
            if contentLength != nil { keepAlive = false }
            framing = chunkedIsFinal ? .chunked : .untilClose
        } else if let contentLength {
            framing = .length(contentLength)
        } else {
            framing = .untilClose
        }
        switch framing {
        case .none: state = .fixedBody(remaining: 0)
        case .length(let length): state = .fixedBody(remaining: length)
        case .chunked: state = .chunkSize
        case .untilClose:
            keepAlive = false
            state = .bodyUntilClose
        }
        let declared: Int? = if case .length(let length) = framing { length } else { nil }
        return Head(statusCode: statusCode, headers: headers, keepAlive: keepAlive, contentLength: declared)
    }

    /// `field-name ":" OWS field-value OWS`, with obs-fold, whitespace before the colon and
    /// control characters refused.
    private static func splitField(_ bytes: UnsafeRawBufferPointer)
        -> Result<(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer), Failure>
    {
        guard let first = bytes.first, first != UInt8(ascii: " "), first != UInt8(ascii: "\t") else {
            return .failure(.malformed("header field continued on a new line (obs-fold)"))
        }
        guard let colon = bytes.firstIndex(of: UInt8(ascii: ":")) else {
            return .failure(.malformed("header field without a colon"))
        }
        let name = UnsafeRawBufferPointer(rebasing: bytes[..<colon])
        guard name.count > 0, name.allSatisfy(isTokenByte) else {
            return .failure(.malformed("header field name \(quoted(name)) is not a token"))
        }
        let value = trimmed(UnsafeRawBufferPointer(rebasing: bytes[(colon + 1)...]))
        guard value.allSatisfy(isFieldValueByte) else {
            return .failure(.malformed("header field \(quoted(name)) contains a control character"))
        }
        return .success((name, value))
    }

    /// Calls `body` with each comma-separated element of `value`, trimmed, until it returns a failure.
    private static func forEachElement(
        of value: UnsafeRawBufferPointer, skippingEmpty: Bool, _ body: (UnsafeRawBufferPointer) -> Failure?
    ) -> Failure? {
        var start = 0
        while start <= value.count {
            let end = value[start...].firstIndex(of: UInt8(ascii: ",")) ?? value.count
            let element = trimmed(UnsafeRawBufferPointer(rebasing: value[start..<end]))
            if element.count > 0 || !skippingEmpty, let failure = body(element) {
                return failure
            }
            start = end + 1
        }
        return nil
    }

    /// `1*HEXDIG [BWS ";" chunk-ext]`; the extensions are ignored.
    private static func parseChunkSize(_ line: ByteBuffer) throws(Failure) -> Int {
        let parsed: Result<Int, Failure> = line.withUnsafeReadableBytes { bytes in
            var size = 0
            var digits = 0
            for byte in bytes {
                let value: Int
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): value = Int(byte - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): value = Int(byte - UInt8(ascii: "a")) + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): value = Int(byte - UInt8(ascii: "A")) + 10
                case UInt8(ascii: ";"), UInt8(ascii: " "), UInt8(ascii: "\t"):
                    return digits > 0 ? .success(size) : .failure(.malformed("chunk size missing"))
                default:
                    return .failure(.malformed("chunk size is not hexadecimal"))
                }
                digits += 1
                guard digits <= 15 else { return .failure(.malformed("chunk size too large")) }
                size = size << 4 | value
            }
            return digits > 0 ? .success(size) : .failure(.malformed("chunk size missing"))
        }
        return try parsed.get()
    }

    /// Received bytes as a failure reason quotes them: escaped and shortened, since they are
    /// the peer's and end up in logs.
    private static func quoted(_ bytes: UnsafeRawBufferPointer) -> String {
        String(decoding: bytes, as: UTF8.self).quotedExcerpt()
    }

    private static func trimmed(_ bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        var start = 0
        var end = bytes.count
        while start < end, bytes[start] == UInt8(ascii: " ") || bytes[start] == UInt8(ascii: "\t") { start += 1 }
        while end > start, bytes[end - 1] == UInt8(ascii: " ") || bytes[end - 1] == UInt8(ascii: "\t") { end -= 1 }
        return UnsafeRawBufferPointer(rebasing: bytes[start..<end])
    }

    /// Compares with a lowercase ASCII literal, ignoring the case of `bytes`.
    private static func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ lowercase: StaticString) -> Bool {
        guard bytes.count == lowercase.utf8CodeUnitCount else { return false }
        let expected = lowercase.utf8Start
        for index in 0..<bytes.count {
            let byte = bytes[index]
            let wanted = expected[index]
            guard byte == wanted || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") && byte + 32 == wanted)
            else { return false }
        }
        return true
    }

    private static func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }

    /// field-vchar, SP and HTAB: everything but the other controls and DEL.
    private static func isFieldValueByte(_ byte: UInt8) -> Bool {
        byte >= 0x20 ? byte != 0x7F : byte == UInt8(ascii: "\t")
    }

    /// tchar from RFC 9110 section 5.6.2, as bit masks over the bytes 0-63 and 64-127.
    private static let tokenBytesLow: UInt64 = 0x03FF_6CFA_0000_0000
    private static let tokenBytesHigh: UInt64 = 0x57FF_FFFF_C7FF_FFFE

    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case 0..<64: tokenBytesLow & (1 << UInt64(byte)) != 0
        case 64..<128: tokenBytesHigh & (1 << UInt64(byte - 64)) != 0
        default: false
        }
    }
}
