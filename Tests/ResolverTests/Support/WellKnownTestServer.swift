import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import SouthbridgeSwarm
import Transport

/// A real HTTPS server on 127.0.0.1 that answers each request-target with a scripted answer,
/// for `.well-known` tests; unscripted targets get 404.
///
/// Built like the swarm's servers (`OpenSSLHandler` in server mode and NIO's HTTP/1.1 server
/// pipeline), with a certificate from the test CA for the DNS names it is started with. It
/// records every request's target and `Host` header.
final class WellKnownTestServer: Sendable {
    /// What the server sends back for one request-target.
    struct Answer: Sendable {
        var status: Int
        var headers: [(name: String, value: String)]
        var body: [UInt8]
        /// How long to wait before answering.
        var delay: TimeAmount?

        init(status: Int = 200, headers: [(name: String, value: String)] = [], body: [UInt8] = [], delay: TimeAmount? = nil) {
            self.status = status
            self.headers = headers
            self.body = body
            self.delay = delay
        }

        /// A 200 answer with `text` as the body and a JSON content type.
        static func json(_ text: String, headers: [(name: String, value: String)] = [], delay: TimeAmount? = nil) -> Answer {
            Answer(headers: [("Content-Type", "application/json")] + headers, body: Array(text.utf8), delay: delay)
        }

        /// `{"m.server": "<serverName>"}` with the given extra headers.
        static func delegation(_ serverName: String, headers: [(name: String, value: String)] = []) -> Answer {
            json("{\"m.server\": \"\(serverName)\"}", headers: headers)
        }

        static func redirect(_ status: Int = 302, to location: String) -> Answer {
            Answer(status: status, headers: [("Location", location)])
        }
    }

    /// One request as it arrived.
    struct Request: Sendable, Equatable {
        var target: String
        var host: String?
    }

    private let channel: any Channel
    private let answers: NIOLockedValueBox<[String: Answer]>
    private let received: NIOLockedValueBox<[Request]>

    var port: Int { channel.localAddress?.port ?? 0 }

    private init(channel: any Channel, answers: NIOLockedValueBox<[String: Answer]>, received: NIOLockedValueBox<[Request]>) {
        self.channel = channel
        self.answers = answers
        self.received = received
    }

    /// Starts a server presenting a certificate from `authority` for `dnsNames`.
    static func start(authority: TestCertificateAuthority, dnsNames: [String],
                      group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> WellKnownTestServer {
        let issued = try authority.issue(dnsNames: dnsNames)
        let tlsContext = try TLSContext.server(certificateChainPEM: issued.certificatePEM, privateKeyPEM: issued.privateKeyPEM)
        let answers = NIOLockedValueBox<[String: Answer]>([:])
        let received = NIOLockedValueBox<[Request]>([])
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(OpenSSLHandler(serverContext: tlsContext))
                    try pipeline.configureHTTPServerPipeline()
                    try pipeline.addHandler(ScriptedAnswerHandler(answers: answers, received: received))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        return WellKnownTestServer(channel: channel, answers: answers, received: received)
    }

    func stop() async {
        try? await channel.close()
    }

    /// Answers requests for `target` (path and query) with `answer` from now on.
    func set(_ target: String, _ answer: Answer) {
        answers.withLockedValue { $0[target] = answer }
    }

    /// Every request so far, in arrival order.
    var requests: [Request] { received.withLockedValue { $0 } }

    /// How many requests asked for `target`.
    func requestCount(_ target: String) -> Int {
        received.withLockedValue { $0.filter { $0.target == target }.count }
    }
}

private final class ScriptedAnswerHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let answers: NIOLockedValueBox<[String: WellKnownTestServer.Answer]>
    private let received: NIOLockedValueBox<[WellKnownTestServer.Request]>
    private var head: HTTPRequestHead?

    init(answers: NIOLockedValueBox<[String: WellKnownTestServer.Answer]>,
         received: NIOLockedValueBox<[WellKnownTestServer.Request]>) {
        self.answers = answers
        self.received = received
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let requestHead):
            head = requestHead
        case .body:
            break
        case .end:
            guard let head else { return }
            self.head = nil
            received.withLockedValue { $0.append(.init(target: head.uri, host: head.headers.first(name: "host"))) }
            let answer = answers.withLockedValue { $0[head.uri] }
                ?? WellKnownTestServer.Answer(status: 404, body: Array("no answer for \(head.uri)".utf8))
            if let delay = answer.delay {
                context.eventLoop.assumeIsolated().scheduleTask(in: delay) {
                    self.write(answer, context: context)
                }
            } else {
                write(answer, context: context)
            }
        }
    }

    private func write(_ answer: WellKnownTestServer.Answer, context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        var headers = HTTPHeaders(answer.headers.map { ($0.name, $0.value) })
        headers.replaceOrAdd(name: "Content-Length", value: String(answer.body.count))
        let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: answer.status), headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: answer.body)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
}
