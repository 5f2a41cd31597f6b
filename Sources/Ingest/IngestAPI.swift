import Federation
import Logging
import Outbox

/// One HTTP request to the ingest API, already read in full.
public struct IngestRequest: Sendable {
    public var method: String
    /// The request target without its query string, still percent-encoded.
    public var path: String
    public var authorization: String?
    public var body: [UInt8]

    public init(method: String, path: String, authorization: String?, body: [UInt8]) {
        self.method = method
        self.path = path
        self.authorization = authorization
        self.body = body
    }
}

/// The answer to an `IngestRequest`.
public struct IngestResponse: Sendable {
    public var status: Int
    public var contentType: String
    public var body: [UInt8]

    public init(status: Int, contentType: String = "application/json", body: [UInt8]) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }

    init(_ error: IngestError) {
        self.init(status: error.status, body: error.body)
    }

    init(json: JSONValue) {
        self.init(status: 200, body: CanonicalJSON.encode(json))
    }
}

/// The homeserver-facing API: routes, authentication and validation, with no socket code.
///
/// Nothing is acknowledged before the Outbox has committed it: `PUT /send` answers only
/// after `Outbox.accept` returned, and a repeated txnId gets the first answer back.
public struct IngestAPI: Sendable {
    static let sendPrefix = "/_southbridge/v1/send/"

    private let outbox: Outbox
    private let bearerToken: [UInt8]
    private let parser: SendRequestParser
    private let newPDUsAccepted: @Sendable (Set<String>) async -> Void
    private let metricsText: @Sendable () async -> String
    private let logger: Logger

    /// - Parameters:
    ///   - newPDUsAccepted: called after a commit with every destination that has new PDUs.
    ///   - metricsText: the Prometheus text served at `/metrics`.
    public init(
        outbox: Outbox, bearerToken: String, ownServerName: String, logger: Logger,
        metricsText: @escaping @Sendable () async -> String,
        newPDUsAccepted: @escaping @Sendable (Set<String>) async -> Void
    ) {
        self.outbox = outbox
        self.bearerToken = Array(bearerToken.utf8)
        self.parser = SendRequestParser(ownServerName: ownServerName)
        self.newPDUsAccepted = newPDUsAccepted
        self.metricsText = metricsText
        self.logger = logger
    }

    public func handle(_ request: IngestRequest) async -> IngestResponse {
        do {
            return try await route(request)
        } catch {
            if error.status >= 500 {
                logger.error("ingest request failed", metadata: ["path": "\(request.path)", "error": "\(error)"])
            }
            return IngestResponse(error)
        }
    }

    /// The error to answer at once, from the request head alone, before any body is read:
    /// a missing or wrong token on an endpoint that needs one.
    public func refusalBeforeBody(path: String, authorization: String?) -> IngestError? {
        guard path != "/health" else { return nil }
        do {
            try authenticate(IngestRequest(method: "", path: path, authorization: authorization, body: []))
            return nil
        } catch {
            return error
        }
    }

    private func route(_ request: IngestRequest) async throws(IngestError) -> IngestResponse {
        switch request.path {
        case "/health":
            guard request.method == "GET" else { throw .methodNotAllowed(method: request.method, path: request.path) }
            return IngestResponse(json: ["status": "ok"])
        case "/metrics":
            guard request.method == "GET" else { throw .methodNotAllowed(method: request.method, path: request.path) }
            try authenticate(request)
            return IngestResponse(status: 200, contentType: "text/plain; version=0.0.4", body: Array(await metricsText().utf8))
        default:
            break
        }
        if request.path.hasPrefix(Self.sendPrefix) {
            guard request.method == "PUT" else { throw .methodNotAllowed(method: request.method, path: request.path) }
            try authenticate(request)
            let txnID = String(request.path.dropFirst(Self.sendPrefix.count))
            return try await send(txnID: txnID, body: request.body)
        }
        throw .unrecognized(method: request.method, path: request.path)
    }

    private func authenticate(_ request: IngestRequest) throws(IngestError) {
        guard let header = request.authorization, header.hasPrefix("Bearer ") else { throw .missingToken }
        let presented = Array(header.utf8.dropFirst("Bearer ".utf8.count))
        // Compare in constant time so the token cannot be guessed byte by byte.
        var difference = presented.count ^ bearerToken.count
        for index in 0..<min(presented.count, bearerToken.count) {
            difference |= Int(presented[index] ^ bearerToken[index])
        }
        guard difference == 0 else { throw .unknownToken }
    }

    private func send(txnID: String, body: [UInt8]) async throws(IngestError) -> IngestResponse {
        guard !txnID.isEmpty, !txnID.contains("/"), txnID.utf8.count <= 255 else {
            throw .badJSON("txnId: must be 1 to 255 bytes without '/', got \(txnID.utf8.count) bytes: \"\(txnID.prefix(40))\"")
        }
        let batch = try parser.parse(txnID: txnID, body: body)
        let receipt: IngestReceipt
        do {
            receipt = try await outbox.accept(batch)
        } catch {
            switch error {
            case .invalidBatch(_, let field, let rule):
                throw .badJSON("\(field): \(rule)")
            case .overloaded:
                throw IngestError(status: 503, errcode: "M_LIMIT_EXCEEDED", "outbox is busy, retry shortly: \(error)")
            default:
                throw IngestError(status: 500, errcode: "M_UNKNOWN", "could not store transaction \(txnID): \(error)")
            }
        }
        if !receipt.isReplay {
            var destinations = Set<String>()
            for pdu in batch.pdus { destinations.formUnion(pdu.destinations) }
            if !destinations.isEmpty { await newPDUsAccepted(destinations) }
            logger.debug("accepted ingest transaction", metadata: [
                "txn_id": "\(txnID)", "pdus": "\(batch.pdus.count)", "stream_ordering": "\(receipt.streamOrdering)",
            ])
        }
        return IngestResponse(json: ["stream_ordering": .integer(receipt.streamOrdering)])
    }
}
