import NIOCore

/// A complete HTTP response read by `HTTPClientConnection`: status, headers in wire order, and the whole body.
public struct HTTPClientResponse: Sendable {
    public var statusCode: Int
    public var headers: [(name: String, value: String)]
    public var body: ByteBuffer

    public init(statusCode: Int, headers: [(name: String, value: String)], body: ByteBuffer) {
        self.statusCode = statusCode
        self.headers = headers
        self.body = body
    }

    /// The value of the first header called `name`, compared case-insensitively.
    public func firstHeaderValue(_ name: String) -> String? {
        let wanted = name.lowercased()
        return headers.first { $0.name.lowercased() == wanted }?.value
    }

    /// The body's bytes as an array.
    public var bodyBytes: [UInt8] {
        Array(body.readableBytesView)
    }
}
