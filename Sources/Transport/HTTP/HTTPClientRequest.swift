import NIOCore

/// One HTTP/1.1 request as `HTTPClientConnection` puts it on the wire.
///
/// `target` is the request-target exactly as it appears on the request line (for example
/// `/_matrix/federation/v1/send/1696%2F1`); it is never decoded or re-encoded. A
/// `Content-Length` header is added for any request with a body, or whose method is not
/// GET, HEAD, DELETE or OPTIONS, unless the caller set one. The caller provides `Host`.
public struct HTTPClientRequest: Sendable {
    public var method: String
    public var target: String
    public var headers: [(name: String, value: String)]
    public var body: ByteBuffer

    public init(
        method: String, target: String, headers: [(name: String, value: String)] = [], body: ByteBuffer = ByteBuffer()
    ) {
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
    }

    public init(method: String, target: String, headers: [(name: String, value: String)] = [], body: [UInt8]) {
        self.init(method: method, target: target, headers: headers, body: ByteBuffer(bytes: body))
    }

    /// Checks that every part can be sent verbatim without changing the message's framing.
    func validate() throws(HTTPClientError) {
        guard !method.isEmpty, method.utf8.allSatisfy(Self.isTokenByte) else {
            throw .invalidRequest(reason: "method \"\(method)\" is not an HTTP token")
        }
        guard !target.isEmpty, target.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw .invalidRequest(reason: "target \"\(target)\" must be non-empty visible ASCII without spaces")
        }
        for (index, header) in headers.enumerated() {
            guard !header.name.isEmpty, header.name.utf8.allSatisfy(Self.isTokenByte) else {
                throw .invalidRequest(reason: "headers[\(index)] name \"\(header.name)\" is not an HTTP token")
            }
            guard !header.value.utf8.contains(where: { $0 == 0x0D || $0 == 0x0A || $0 == 0x00 }) else {
                throw .invalidRequest(reason: "headers[\(index)] \(header.name) value contains CR, LF or NUL")
            }
        }
    }

    /// Whether the request itself asks the server to close the connection after answering.
    var asksToClose: Bool {
        headers.contains { header in
            header.name.equalsIgnoringASCIICase("connection")
                && header.value.split(separator: ",").contains {
                    String($0.trimmingWhitespace()).equalsIgnoringASCIICase("close")
                }
        }
    }

    /// tchar from RFC 9110 section 5.6.2.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }
}

extension Substring {
    func trimmingWhitespace() -> Substring {
        var result = self
        while let first = result.first, first == " " || first == "\t" { result.removeFirst() }
        while let last = result.last, last == " " || last == "\t" { result.removeLast() }
        return result
    }
}

extension String {
    /// Whether the string equals `lowercase` (lowercase ASCII) when ASCII letters are compared without case.
    func equalsIgnoringASCIICase(_ lowercase: StaticString) -> Bool {
        guard utf8.count == lowercase.utf8CodeUnitCount else { return false }
        return lowercase.withUTF8Buffer { expected in
            zip(utf8, expected).allSatisfy { byte, wanted in
                byte == wanted || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") && byte + 32 == wanted)
            }
        }
    }
}
