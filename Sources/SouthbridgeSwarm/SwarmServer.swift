import Federation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import Transport

/// A fake homeserver on loopback that speaks real federation HTTPS: it serves
/// `/_matrix/key/v2/server` and accepts `PUT /_matrix/federation/v1/send/{txnId}` only
/// with a valid X-Matrix signature from an origin it trusts.
///
/// It records every PDU it receives, answers a repeated `(origin, txnId)` with the first
/// answer without recording twice (as Synapse does), and can be told to fail requests,
/// so tests and benchmarks see a sender's behaviour from the receiving end.
public final class SwarmServer: Sendable {
    /// What the server does with the next `/send`.
    public enum Behaviour: Sendable, Equatable {
        case accept
        /// Answer with this HTTP status and a Matrix error.
        case fail(status: Int)
        /// Close the connection without answering.
        case hangUp
        /// Keep the connection open and never answer (a blackholed server).
        case stall
    }

    struct State {
        var behaviour: Behaviour = .accept
        var failuresLeft = 0
        var receivedPDUs: [JSONValue] = []
        var transactions: [String: [UInt8]] = [:]
        var transactionCount = 0
        var rejectedSignatures = 0
        var requestCount = 0
        var attempts: [TransactionAttempt] = []
    }

    /// One signed `/send` request as it arrived, whatever the answer was.
    public struct TransactionAttempt: Sendable, Equatable {
        public var txnID: String
        public var body: [UInt8]
    }

    /// The server name other servers use for it: `127.0.0.1:<port>`.
    public let serverName: String
    public let port: Int
    public let signingKey: SigningKey
    let trustedOrigins: [String: VerifyKey]
    let state = NIOLockedValueBox(State())
    private let channel: NIOLockedValueBox<(any Channel)?> = NIOLockedValueBox(nil)

    /// `.well-known/matrix/server` answers by `Host` header (without port).
    let wellKnownAnswers: [String: JSONValue]

    init(port: Int, serverName: String?, signingKey: SigningKey, trustedOrigins: [String: VerifyKey],
         wellKnownAnswers: [String: JSONValue]) {
        self.port = port
        self.serverName = serverName ?? "127.0.0.1:\(port)"
        self.signingKey = signingKey
        self.trustedOrigins = trustedOrigins
        self.wellKnownAnswers = wellKnownAnswers
    }

    /// Starts a server on `127.0.0.1` (port 0 = any free port).
    ///
    /// - Parameters:
    ///   - serverName: the Matrix name it answers to (X-Matrix `destination`); by default `127.0.0.1:<port>`.
    ///   - certificateNames: DNS names its certificate is valid for, besides 127.0.0.1 and localhost.
    ///   - wellKnownAnswers: `/.well-known/matrix/server` bodies by `Host` name; other hosts get 404.
    public static func start(port: Int = 0, serverName: String? = nil, certificateNames: [String] = [],
                             wellKnownAnswers: [String: JSONValue] = [:],
                             certificateAuthority: TestCertificateAuthority,
                             trustedOrigins: [String: VerifyKey], group: any EventLoopGroup) async throws -> SwarmServer {
        let issued = try certificateAuthority.issue(dnsNames: ["localhost"] + certificateNames, ipAddresses: ["127.0.0.1"])
        let tlsContext = try TLSContext.server(certificateChainPEM: issued.certificatePEM, privateKeyPEM: issued.privateKeyPEM)
        let box = NIOLockedValueBox<SwarmServer?>(nil)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    guard let server = box.withLockedValue({ $0 }) else { throw ChannelError.ioOnClosedChannel }
                    try channel.pipeline.syncOperations.addHandler(OpenSSLHandler(serverContext: tlsContext))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(SwarmRequestHandler(server: server))
                }
            }
        let channel = try await bootstrap.bind(host: "127.0.0.1", port: port).get()
        let server = SwarmServer(port: channel.localAddress?.port ?? port, serverName: serverName,
                                 signingKey: try SigningKey.generate(version: "swarm"),
                                 trustedOrigins: trustedOrigins, wellKnownAnswers: wellKnownAnswers)
        box.withLockedValue { $0 = server }
        server.channel.withLockedValue { $0 = channel }
        return server
    }

    public func stop() async {
        let channel = self.channel.withLockedValue { $0 }
        try? await channel?.close()
    }

    /// Every PDU received so far, in arrival order, duplicates from retried transactions excluded.
    public var receivedPDUs: [JSONValue] { state.withLockedValue { $0.receivedPDUs } }
    public var receivedPDUCount: Int { state.withLockedValue { $0.receivedPDUs.count } }
    /// Distinct transactions accepted.
    public var transactionCount: Int { state.withLockedValue { $0.transactionCount } }
    /// Requests refused for a missing or wrong X-Matrix signature.
    public var rejectedSignatureCount: Int { state.withLockedValue { $0.rejectedSignatures } }
    public var requestCount: Int { state.withLockedValue { $0.requestCount } }
    /// Every signed `/send` attempt, retries included, in arrival order.
    public var transactionAttempts: [TransactionAttempt] { state.withLockedValue { $0.attempts } }

    /// Applies `behaviour` to the next `count` `/send` requests, then accepts again.
    public func fail(next count: Int, with behaviour: Behaviour) {
        state.withLockedValue {
            $0.behaviour = behaviour
            $0.failuresLeft = count
        }
    }
}

final class SwarmRequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let server: SwarmServer
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []

    init(server: SwarmServer) {
        self.server = server
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let requestHead):
            head = requestHead
            body = []
        case .body(var chunk):
            body.append(contentsOf: chunk.readBytes(length: chunk.readableBytes) ?? [])
        case .end:
            guard let requestHead = head else { return }
            head = nil
            switch respond(to: requestHead, body: body) {
            case .some((0, _)):
                break
            case .some(let (status, json)):
                write(status: status, body: CanonicalJSON.encode(json), context: context)
            case .none:
                context.close(promise: nil)
            }
        }
    }

    /// The answer to one request; nil to hang up, `stalled` to never answer.
    private func respond(to head: HTTPRequestHead, body: [UInt8]) -> (Int, JSONValue)? {
        server.state.withLockedValue { $0.requestCount += 1 }
        if head.method == .GET, head.uri == "/_matrix/key/v2/server" {
            return (200, keyResponse())
        }
        if head.method == .GET, head.uri == "/.well-known/matrix/server" {
            let host = head.headers.first(name: "host").map { $0.split(separator: ":").first.map(String.init) ?? $0 } ?? ""
            guard let answer = server.wellKnownAnswers[host] else {
                return (404, matrixError("M_NOT_FOUND", "no .well-known for \(host)"))
            }
            return (200, answer)
        }
        if head.uri.hasPrefix("/_matrix/federation/v1/query/") {
            return answerQuery(head: head, body: body)
        }
        let sendPrefix = "/_matrix/federation/v1/send/"
        guard head.uri.hasPrefix(sendPrefix) else {
            return (404, matrixError("M_UNRECOGNIZED", "no endpoint \(head.method.rawValue) \(head.uri)"))
        }
        guard head.method == .PUT else { return (405, matrixError("M_UNRECOGNIZED", "send needs PUT")) }
        guard let content = try? JSONValue.parse(body), case .object(let fields) = content else {
            return (400, matrixError("M_NOT_JSON", "transaction body is not a JSON object"))
        }
        guard let origin = verifiedOrigin(head: head, content: content) else {
            server.state.withLockedValue { $0.rejectedSignatures += 1 }
            return (401, matrixError("M_UNAUTHORIZED", "missing or invalid X-Matrix signature"))
        }
        let txnID = String(head.uri.dropFirst(sendPrefix.count))
        return server.state.withLockedValue { state -> (Int, JSONValue)? in
            state.attempts.append(SwarmServer.TransactionAttempt(txnID: txnID, body: body))
            if let failure = scriptedFailure(&state) { return failure }
            let key = "\(origin) \(txnID)"
            if let cached = state.transactions[key], let replay = try? JSONValue.parse(cached) {
                return (200, replay)
            }
            let pdus = fields["pdus"]?.arrayValue ?? []
            if pdus.count > 50 {
                return (400, matrixError("M_BAD_JSON", "more than 50 PDUs"))
            }
            state.receivedPDUs.append(contentsOf: pdus)
            state.transactionCount += 1
            let answer: JSONValue = .object(["pdus": .object([:])])
            state.transactions[key] = CanonicalJSON.encode(answer)
            return (200, answer)
        }
    }

    /// The scripted failure for this request, if one is due: `.some(nil)` hangs up,
    /// status 0 stalls, anything else is answered.
    private func scriptedFailure(_ state: inout SwarmServer.State) -> (Int, JSONValue)?? {
        guard state.failuresLeft > 0 else { return .none }
        state.failuresLeft -= 1
        switch state.behaviour {
        case .accept: return .none
        case .fail(let status): return .some((status, matrixError("M_UNKNOWN", "failing on purpose")))
        case .hangUp: return .some(nil)
        case .stall: return .some((0, .null))
        }
    }

    /// Any signed query: echoes the method, the request target and the body it received,
    /// after the same scripted failures as `/send`.
    private func answerQuery(head: HTTPRequestHead, body: [UInt8]) -> (Int, JSONValue)? {
        let content = body.isEmpty ? nil : try? JSONValue.parse(body)
        guard verifiedOrigin(head: head, content: content) != nil else {
            server.state.withLockedValue { $0.rejectedSignatures += 1 }
            return (401, matrixError("M_UNAUTHORIZED", "missing or invalid X-Matrix signature"))
        }
        return server.state.withLockedValue { state -> (Int, JSONValue)? in
            if let failure = scriptedFailure(&state) { return failure }
            return (200, .object(["method": .string(head.method.rawValue), "uri": .string(head.uri), "content": content ?? .null]))
        }
    }

    private func verifiedOrigin(head: HTTPRequestHead, content: JSONValue?) -> String? {
        guard let header = head.headers.first(name: "authorization"),
              let parsed = try? XMatrixAuthorization.parse(header),
              let key = server.trustedOrigins[parsed.origin],
              parsed.destination == nil || parsed.destination == server.serverName else { return nil }
        let valid = XMatrixAuthorization.verify(
            method: head.method.rawValue, uri: head.uri, content: content.map { CanonicalJSON.encode($0) },
            destination: server.serverName, header: header, key: key)
        return valid ? parsed.origin : nil
    }

    private func keyResponse() -> JSONValue {
        let unsigned: JSONValue = .object([
            "server_name": .string(server.serverName),
            "valid_until_ts": .integer(4_102_444_800_000),
            "verify_keys": .object([server.signingKey.keyID: .object(["key": .string(server.signingKey.publicKeyBase64)])]),
            "old_verify_keys": .object([:]),
        ])
        return SignedJSON.sign(unsigned, entity: server.serverName, key: server.signingKey)
    }

    private func matrixError(_ code: String, _ message: String) -> JSONValue {
        .object(["errcode": .string(code), "error": .string(message)])
    }

    private func write(status: Int, body: [UInt8], context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "application/json")
        headers.add(name: "content-length", value: String(body.count))
        let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status), headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
}
