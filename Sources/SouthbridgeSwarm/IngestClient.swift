import Federation
import NIOCore
import NIOHTTP1
import NIOPosix

/// A homeserver's side of the ingest API, over one keep-alive connection: what the demo,
/// the tests and the benchmarks use to hand PDUs to a running southbridge.
public final class IngestClient: Sendable {
    public struct Response: Sendable {
        public var status: Int
        public var body: [UInt8]
        public var json: JSONValue? { try? JSONValue.parse(body) }
    }

    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    private let channel: any Channel
    private let token: String

    private init(channel: any Channel, token: String) {
        self.channel = channel
        self.token = token
    }

    /// Connects to `host:port`, or to a unix socket when `unixPath` is given.
    public static func connect(host: String = "127.0.0.1", port: Int = 0, unixPath: String? = nil,
                               token: String, group: any EventLoopGroup) async throws -> IngestClient {
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(.seconds(5))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(ResponseCollector())
                }
            }
        let channel = if let unixPath {
            try await bootstrap.connect(unixDomainSocketPath: unixPath).get()
        } else {
            try await bootstrap.connect(host: host, port: port).get()
        }
        return IngestClient(channel: channel, token: token)
    }

    /// `PUT /_southbridge/v1/send/{txnID}` with the given JSON body.
    public func send(txnID: String, body: [UInt8]) async throws -> Response {
        try await request(method: .PUT, target: "/_southbridge/v1/send/\(txnID)", body: body)
    }

    /// `GET target`, with the token: `/metrics`, `/_southbridge/v1/destinations?…`.
    public func get(_ target: String) async throws -> Response {
        try await request(method: .GET, target: target)
    }

    public func request(method: HTTPMethod, target: String, body: [UInt8] = [], authorized: Bool = true) async throws -> Response {
        var headers = HTTPHeaders()
        headers.add(name: "host", value: "localhost")
        headers.add(name: "content-length", value: String(body.count))
        if authorized { headers.add(name: "authorization", value: "Bearer \(token)") }
        let promise = channel.eventLoop.makePromise(of: Response.self)
        let head = HTTPRequestHead(version: .http1_1, method: method, uri: target, headers: headers)
        let buffer = channel.allocator.buffer(bytes: body)
        channel.eventLoop.execute { [channel] in
            // Once the connection is closed its collector would never answer: fail at once.
            guard channel.isActive,
                  let collector = try? channel.pipeline.syncOperations.handler(type: ResponseCollector.self) else {
                promise.fail(Failure(description: "ingest connection is closed"))
                return
            }
            collector.pending.append(promise)
            channel.write(HTTPClientRequestPart.head(head), promise: nil)
            channel.write(HTTPClientRequestPart.body(.byteBuffer(buffer)), promise: nil)
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        }
        return try await promise.futureResult.get()
    }

    public func close() async {
        try? await channel.close()
    }
}

private final class ResponseCollector: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    var pending: [EventLoopPromise<IngestClient.Response>] = []
    private var status = 0
    private var body: [UInt8] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = Int(head.status.code)
            body = []
        case .body(var chunk):
            body.append(contentsOf: chunk.readBytes(length: chunk.readableBytes) ?? [])
        case .end:
            guard !pending.isEmpty else { return }
            pending.removeFirst().succeed(IngestClient.Response(status: status, body: body))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        let failed = pending
        pending.removeAll()
        for promise in failed { promise.fail(IngestClient.Failure(description: "ingest connection closed before the answer")) }
        context.fireChannelInactive()
    }
}
