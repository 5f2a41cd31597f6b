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
        /// Accept, but answer only after this many milliseconds (a slow server).
        case slow(milliseconds: Int64)
    }

    struct Script {
        var behaviour: Behaviour = .accept
        var remaining = 0
    }

    /// What one destination name received, kept small so thousands of names fit in a test.
    public struct DestinationLog: Sendable, Equatable {
        /// Event ids (or `stream` numbers for PDUs without one) in arrival order, repeats included.
        public var pduIDs: [String] = []
        /// EDUs in arrival order, each as received.
        public var edus: [JSONValue] = []
        /// Distinct transactions accepted.
        public var transactionCount = 0
        /// `/send` requests, retries and refused ones included.
        public var attemptCount = 0
    }

    struct State {
        var script = Script()
        /// What every request meets once no script applies: `setBehaviour(_:)`.
        var behaviour: Behaviour = .accept
        var destinationScripts: [String: Script] = [:]
        var receivedPDUs: [JSONValue] = []
        var logs: [String: DestinationLog] = [:]
        var transactions: [String: [UInt8]] = [:]
        var transactionCount = 0
        var rejectedSignatures = 0
        var requestCount = 0
        var attempts: [TransactionAttempt] = []
        var acceptedConnections = 0
        /// When each PDU (by the id `DestinationLog.pduIDs` uses) first reached the server's own name.
        var firstArrivals: [String: ContinuousClock.Instant] = [:]
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
    /// Binds a new listener on `port` with the same certificate and handlers, for `resume()`.
    private let listen = NIOLockedValueBox<(@Sendable () async throws -> any Channel)?>(nil)
    /// Accepted connections, closed by `stop` so a stopped server is really gone.
    let connections = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])

    /// `.well-known/matrix/server` answers by `Host` header (without port).
    let wellKnownAnswers: [String: JSONValue]
    /// When set, the server also answers to every name with this suffix (its certificate
    /// should carry the matching wildcard): one listener stands in for thousands of servers.
    let virtualHostSuffix: String?

    init(port: Int, serverName: String?, signingKey: SigningKey, trustedOrigins: [String: VerifyKey],
         wellKnownAnswers: [String: JSONValue], virtualHostSuffix: String?) {
        self.port = port
        self.serverName = serverName ?? "127.0.0.1:\(port)"
        self.signingKey = signingKey
        self.trustedOrigins = trustedOrigins
        self.wellKnownAnswers = wellKnownAnswers
        self.virtualHostSuffix = virtualHostSuffix
    }

    /// Whether `destination` is a name this server answers to.
    func answers(to destination: String) -> Bool {
        if destination == serverName { return true }
        guard let suffix = virtualHostSuffix else { return false }
        let host = destination.split(separator: ":").first.map(String.init) ?? destination
        return host.hasSuffix(suffix)
    }

    /// Starts a server on `127.0.0.1` (port 0 = any free port).
    ///
    /// - Parameters:
    ///   - serverName: the Matrix name it answers to (X-Matrix `destination`); by default `127.0.0.1:<port>`.
    ///   - certificateNames: DNS names its certificate is valid for, besides 127.0.0.1 and localhost.
    ///   - wellKnownAnswers: `/.well-known/matrix/server` bodies by `Host` name; other hosts get 404.
    ///   - virtualHostSuffix: also answer to every destination whose host ends with it (e.g.
    ///     `.live.swarm.test`, with `*.live.swarm.test` among `certificateNames`), recording
    ///     each name's traffic apart.
    ///   - load: where its connections and handshakes are counted, shared by the servers of a `Swarm`.
    public static func start(port: Int = 0, serverName: String? = nil, certificateNames: [String] = [],
                             wellKnownAnswers: [String: JSONValue] = [:], virtualHostSuffix: String? = nil,
                             certificateAuthority: TestCertificateAuthority,
                             trustedOrigins: [String: VerifyKey], load: SwarmLoad = SwarmLoad(),
                             group: any EventLoopGroup) async throws -> SwarmServer {
        let issued = try certificateAuthority.issue(dnsNames: ["localhost"] + certificateNames, ipAddresses: ["127.0.0.1"])
        let tlsContext = try TLSContext.server(certificateChainPEM: issued.certificatePEM, privateKeyPEM: issued.privateKeyPEM)
        let box = NIOLockedValueBox<SwarmServer?>(nil)
        // A new bootstrap for each bind, so that `resume()` can listen again on the same port.
        @Sendable func listen(on port: Int) async throws -> any Channel {
            try await ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 1024)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        guard let server = box.withLockedValue({ $0 }) else { throw ChannelError.ioOnClosedChannel }
                        let id = ObjectIdentifier(channel)
                        server.state.withLockedValue { $0.acceptedConnections += 1 }
                        server.connections.withLockedValue { $0[id] = channel }
                        load.connectionOpened()
                        channel.closeFuture.whenComplete { _ in
                            server.connections.withLockedValue { _ = $0.removeValue(forKey: id) }
                            load.connectionClosed()
                        }
                        let handshakeStart = SwarmHandshakeStart(load: load)
                        try channel.pipeline.syncOperations.addHandler(handshakeStart)
                        try channel.pipeline.syncOperations.addHandler(OpenSSLHandler(serverContext: tlsContext))
                        try channel.pipeline.syncOperations.addHandler(SwarmHandshakeEnd(start: handshakeStart))
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                        try channel.pipeline.syncOperations.addHandler(SwarmRequestHandler(server: server))
                    }
                }
                .bind(host: "127.0.0.1", port: port).get()
        }
        let channel = try await listen(on: port)
        let server = SwarmServer(port: channel.localAddress?.port ?? port, serverName: serverName,
                                 signingKey: try SigningKey.generate(version: "swarm"),
                                 trustedOrigins: trustedOrigins, wellKnownAnswers: wellKnownAnswers,
                                 virtualHostSuffix: virtualHostSuffix)
        box.withLockedValue { $0 = server }
        server.channel.withLockedValue { $0 = channel }
        let boundPort = server.port
        server.listen.withLockedValue { $0 = { try await listen(on: boundPort) } }
        return server
    }

    /// Stops listening and closes every open connection.
    public func stop() async {
        let channel = self.channel.withLockedValue { $0 }
        try? await channel?.close()
        for connection in connections.withLockedValue({ Array($0.values) }) {
            try? await connection.close()
        }
    }

    /// Listens again on the same port after `stop()`, keeping everything received so far:
    /// a server that was down and is back.
    public func resume() async throws {
        guard let listen = listen.withLockedValue({ $0 }) else { return }
        let channel = try await listen()
        self.channel.withLockedValue { $0 = channel }
    }

    /// Every PDU received so far, in arrival order, duplicates from retried transactions excluded.
    public var receivedPDUs: [JSONValue] { state.withLockedValue { $0.receivedPDUs } }
    public var receivedPDUCount: Int { state.withLockedValue { $0.receivedPDUs.count } }
    /// Distinct transactions accepted.
    public var transactionCount: Int { state.withLockedValue { $0.transactionCount } }
    /// Requests refused for a missing or wrong X-Matrix signature.
    public var rejectedSignatureCount: Int { state.withLockedValue { $0.rejectedSignatures } }
    public var requestCount: Int { state.withLockedValue { $0.requestCount } }
    /// TCP connections accepted so far, whether or not their TLS handshake completed.
    public var acceptedConnectionCount: Int { state.withLockedValue { $0.acceptedConnections } }

    /// When the PDU with this id (its `event_id`, or its `content.n` for PDUs without one)
    /// first arrived for the server's own name: the moment its whole request had been read,
    /// before the signature check, so a busy swarm adds as little as it can to the figure.
    public func firstArrival(ofPDU id: String) -> ContinuousClock.Instant? {
        state.withLockedValue { $0.firstArrivals[id] }
    }

    /// Every signed `/send` attempt, retries included, in arrival order.
    public var transactionAttempts: [TransactionAttempt] { state.withLockedValue { $0.attempts } }

    /// What `destination` (this server's own name by default) received so far.
    public func log(for destination: String? = nil) -> DestinationLog {
        state.withLockedValue { $0.logs[destination ?? serverName] ?? DestinationLog() }
    }

    /// Every destination name that received at least one request, with its log.
    public var logs: [String: DestinationLog] { state.withLockedValue { $0.logs } }

    /// Applies `behaviour` to every `/send` and query from now on, until it is set again
    /// (`.accept` ends it); requests scripted by `fail(next:)` meet their script first.
    public func setBehaviour(_ behaviour: Behaviour) {
        state.withLockedValue { $0.behaviour = behaviour }
    }

    /// Applies `behaviour` to the next `count` `/send` and query requests (to `destination`
    /// only, when given), then accepts again.
    public func fail(next count: Int, with behaviour: Behaviour, destination: String? = nil) {
        state.withLockedValue {
            if let destination {
                $0.destinationScripts[destination] = Script(behaviour: behaviour, remaining: count)
            } else {
                $0.script = Script(behaviour: behaviour, remaining: count)
            }
        }
    }
}

/// How a request is answered.
enum SwarmReply {
    case answer(status: Int, body: JSONValue, afterMS: Int64 = 0)
    case hangUp
    case stall
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
            switch respond(to: requestHead, body: body, receivedAt: .now) {
            case .stall:
                break
            case .answer(let status, let json, let delay) where delay > 0:
                let bytes = CanonicalJSON.encode(json)
                let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
                context.eventLoop.scheduleTask(in: .milliseconds(delay)) {
                    bound.value.handler.write(status: status, body: bytes, context: bound.value.context)
                }
            case .answer(let status, let json, _):
                write(status: status, body: CanonicalJSON.encode(json), context: context)
            case .hangUp:
                context.close(promise: nil)
            }
        }
    }

    /// The answer to one request.
    private func respond(to head: HTTPRequestHead, body: [UInt8], receivedAt: ContinuousClock.Instant) -> SwarmReply {
        server.state.withLockedValue { $0.requestCount += 1 }
        if head.method == .GET, head.uri == "/_matrix/key/v2/server" {
            return .answer(status: 200, body: keyResponse())
        }
        if head.method == .GET, head.uri == "/.well-known/matrix/server" {
            let host = head.headers.first(name: "host").map { $0.split(separator: ":").first.map(String.init) ?? $0 } ?? ""
            guard let answer = server.wellKnownAnswers[host] else {
                return .answer(status: 404, body: matrixError("M_NOT_FOUND", "no .well-known for \(host)"))
            }
            return .answer(status: 200, body: answer)
        }
        if head.uri.hasPrefix("/_matrix/federation/v1/query/") {
            return answerQuery(head: head, body: body)
        }
        let sendPrefix = "/_matrix/federation/v1/send/"
        guard head.uri.hasPrefix(sendPrefix) else {
            return .answer(status: 404, body: matrixError("M_UNRECOGNIZED", "no endpoint \(head.method.rawValue) \(head.uri)"))
        }
        guard head.method == .PUT else { return .answer(status: 405, body: matrixError("M_UNRECOGNIZED", "send needs PUT")) }
        guard let content = try? JSONValue.parse(body), case .object(let fields) = content else {
            return .answer(status: 400, body: matrixError("M_NOT_JSON", "transaction body is not a JSON object"))
        }
        guard let (origin, destination) = verifiedOrigin(head: head, content: content) else {
            server.state.withLockedValue { $0.rejectedSignatures += 1 }
            return .answer(status: 401, body: matrixError("M_UNAUTHORIZED", "missing or invalid X-Matrix signature"))
        }
        let txnID = String(head.uri.dropFirst(sendPrefix.count))
        let ownName = destination == server.serverName
        return server.state.withLockedValue { state -> SwarmReply in
            if ownName { state.attempts.append(SwarmServer.TransactionAttempt(txnID: txnID, body: body)) }
            state.logs[destination, default: SwarmServer.DestinationLog()].attemptCount += 1
            var delay: Int64 = 0
            switch scriptedFailure(&state, destination: destination) {
            case .slow(let milliseconds)?: delay = milliseconds
            case let failure?: return failure.reply(matrixError("M_UNKNOWN", "failing on purpose"))
            case nil: break
            }
            let key = "\(origin) \(destination) \(txnID)"
            if let cached = state.transactions[key], let replay = try? JSONValue.parse(cached) {
                return .answer(status: 200, body: replay, afterMS: delay)
            }
            let pdus = fields["pdus"]?.arrayValue ?? []
            let edus = fields["edus"]?.arrayValue ?? []
            if pdus.count > 50 || edus.count > 100 {
                return .answer(status: 400, body: matrixError("M_BAD_JSON", "more than 50 PDUs or 100 EDUs"))
            }
            let ids = pdus.map(Self.pduID)
            if ownName {
                state.receivedPDUs.append(contentsOf: pdus)
                for id in ids where state.firstArrivals[id] == nil { state.firstArrivals[id] = receivedAt }
            }
            state.logs[destination, default: SwarmServer.DestinationLog()].pduIDs.append(contentsOf: ids)
            state.logs[destination, default: SwarmServer.DestinationLog()].edus.append(contentsOf: edus)
            state.logs[destination, default: SwarmServer.DestinationLog()].transactionCount += 1
            state.transactionCount += 1
            let answer: JSONValue = .object(["pdus": .object([:])])
            state.transactions[key] = CanonicalJSON.encode(answer)
            return .answer(status: 200, body: answer, afterMS: delay)
        }
    }

    private static func pduID(_ pdu: JSONValue) -> String {
        pdu["event_id"]?.stringValue ?? pdu["content"]?["n"]?.intValue.map { "\($0)" } ?? "?"
    }

    /// The scripted behaviour due for this request, if any: the destination's own script
    /// first, then the server-wide one, then the standing `setBehaviour(_:)`.
    private func scriptedFailure(_ state: inout SwarmServer.State, destination: String) -> SwarmServer.Behaviour? {
        if var script = state.destinationScripts[destination], script.remaining > 0 {
            script.remaining -= 1
            state.destinationScripts[destination] = script.remaining > 0 ? script : nil
            return script.behaviour == .accept ? nil : script.behaviour
        }
        guard state.script.remaining > 0 else { return state.behaviour == .accept ? nil : state.behaviour }
        state.script.remaining -= 1
        return state.script.behaviour == .accept ? nil : state.script.behaviour
    }

    /// Any signed query: echoes the method, the request target and the body it received,
    /// after the same scripted failures as `/send`.
    private func answerQuery(head: HTTPRequestHead, body: [UInt8]) -> SwarmReply {
        let content = body.isEmpty ? nil : try? JSONValue.parse(body)
        guard let (_, destination) = verifiedOrigin(head: head, content: content) else {
            server.state.withLockedValue { $0.rejectedSignatures += 1 }
            return .answer(status: 401, body: matrixError("M_UNAUTHORIZED", "missing or invalid X-Matrix signature"))
        }
        return server.state.withLockedValue { state -> SwarmReply in
            let echo: JSONValue = .object([
                "method": .string(head.method.rawValue), "uri": .string(head.uri), "content": content ?? .null,
            ])
            switch scriptedFailure(&state, destination: destination) {
            case .slow(let milliseconds)?: return .answer(status: 200, body: echo, afterMS: milliseconds)
            case let failure?: return failure.reply(matrixError("M_UNKNOWN", "failing on purpose"))
            case nil: return .answer(status: 200, body: echo)
            }
        }
    }

    /// The signing origin and the destination the request was signed for, when the X-Matrix
    /// signature is valid and the destination is a name this server answers to.
    private func verifiedOrigin(head: HTTPRequestHead, content: JSONValue?) -> (origin: String, destination: String)? {
        guard let header = head.headers.first(name: "authorization"),
              let parsed = try? XMatrixAuthorization.parse(header),
              let key = server.trustedOrigins[parsed.origin] else { return nil }
        let destination = parsed.destination ?? server.serverName
        guard server.answers(to: destination) else { return nil }
        let valid = XMatrixAuthorization.verify(
            method: head.method.rawValue, uri: head.uri, content: content.map { CanonicalJSON.encode($0) },
            destination: destination, header: header, key: key)
        return valid ? (parsed.origin, destination) : nil
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

extension SwarmServer.Behaviour {
    /// The reply for a scripted failure; `accept` and `slow` are handled by the caller.
    func reply(_ error: JSONValue) -> SwarmReply {
        switch self {
        case .accept, .slow: .answer(status: 200, body: .object(["pdus": .object([:])]))
        case .fail(let status): .answer(status: status, body: error)
        case .hangUp: .hangUp
        case .stall: .stall
        }
    }
}
