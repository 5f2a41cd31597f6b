import Federation
import Logging
import Outbox

/// One HTTP request to the ingest API, already read in full.
public struct IngestRequest: Sendable {
    public var method: String
    /// The request target without its query string, still percent-encoded.
    public var path: String
    /// The query parameters, percent-decoded; the first of a repeated name wins.
    public var query: [String: String]
    public var authorization: String?
    public var body: [UInt8]

    public init(method: String, path: String, query: [String: String] = [:], authorization: String?, body: [UInt8]) {
        self.method = method
        self.path = path
        self.query = query
        self.authorization = authorization
        self.body = body
    }

    /// Splits `a=1&b=x%20y` into decoded pairs.
    public static func parseQuery(_ text: Substring) -> [String: String] {
        var query: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(parts[0]).removingPercentEncoding
            if query[name] == nil { query[name] = parts.count > 1 ? String(parts[1]).removingPercentEncoding : "" }
        }
        return query
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

    public init(_ error: IngestError) {
        self.init(status: error.status, body: error.body)
    }

    init(json: JSONValue) {
        self.init(status: 200, body: CanonicalJSON.encode(json))
    }
}

/// The homeserver-facing API: routes, authentication and validation, with no socket code.
///
/// Nothing is acknowledged before the Outbox has committed it: `PUT /send` answers only
/// after `Outbox.accept` returned (at once for a request with nothing to store: typing,
/// presence and receipts only). A repeated txnId gets the first answer back and hands
/// nothing to the sender again.
public struct IngestAPI: Sendable {
    static let sendPrefix = "/_southbridge/v1/send/"
    static let destinationsPath = "/_southbridge/v1/destinations"
    static let queryPath = "/_southbridge/v1/query"
    static let maxListLimit = 1000

    private let outbox: Outbox
    private let bearerToken: [UInt8]
    private let parser: SendRequestParser
    private let ephemeralDelivery: (any EphemeralDelivery)?
    private let metricsText: @Sendable () async -> String
    private let administration: (any DestinationAdministration)?
    private let queries: (any QueryForwarding)?
    private let logger: Logger

    /// - Parameters:
    ///   - ephemeralDelivery: takes the typing, presence and receipt EDUs of each accepted
    ///     request, and its events; PDUs and persistent EDUs reach the sender through the
    ///     Outbox's commits.
    ///   - metricsText: the Prometheus text served at `/metrics`.
    public init(
        outbox: Outbox, bearerToken: String, ownServerName: String, logger: Logger,
        administration: (any DestinationAdministration)? = nil,
        queries: (any QueryForwarding)? = nil,
        ephemeralDelivery: (any EphemeralDelivery)? = nil,
        metricsText: @escaping @Sendable () async -> String
    ) {
        self.administration = administration
        self.queries = queries
        self.outbox = outbox
        self.bearerToken = Array(bearerToken.utf8)
        self.parser = SendRequestParser(ownServerName: ownServerName)
        self.ephemeralDelivery = ephemeralDelivery
        self.metricsText = metricsText
        self.logger = logger
    }

    public func handle(_ request: IngestRequest) async -> IngestResponse {
        do {
            return try await route(request)
        } catch {
            // 503 and 507 are states of the outbox (busy, full) it logs once per episode; each refusal is debug.
            if error.status >= 500, error.status != 503, error.status != 507 {
                logger.error("ingest request failed", metadata: ["path": "\(request.path)", "error": "\(error)"])
            } else if error.status >= 500 {
                logger.debug("ingest request refused", metadata: ["path": "\(request.path)", "error": "\(error)"])
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
        if request.path == Self.queryPath, let queries {
            guard request.method == "POST" else { throw .methodNotAllowed(method: request.method, path: request.path) }
            try authenticate(request)
            return await queries.forward(try ForwardedQuery.parse(request.body))
        }
        if request.path == Self.destinationsPath || request.path.hasPrefix(Self.destinationsPath + "/") {
            try authenticate(request)
            return try await destinations(request)
        }
        if request.path.hasPrefix(Self.sendPrefix) {
            guard request.method == "PUT" else { throw .methodNotAllowed(method: request.method, path: request.path) }
            try authenticate(request)
            let txnID = String(request.path.dropFirst(Self.sendPrefix.count))
            return try await send(txnID: txnID, body: request.body)
        }
        throw .unrecognized(method: request.method, path: request.path)
    }

    /// `GET …/destinations[?state=&from=&limit=]`, `GET …/destinations/{name}`,
    /// `POST …/destinations/{name}/wake`, `DELETE …/destinations/{name}/backoff`.
    private func destinations(_ request: IngestRequest) async throws(IngestError) -> IngestResponse {
        guard let administration else { throw IngestError.unrecognized(method: request.method, path: request.path) }
        let remainder = request.path.dropFirst(Self.destinationsPath.count)
        let rest = remainder.isEmpty ? [] : remainder.split(separator: "/", omittingEmptySubsequences: false)
        do {
            switch (request.method, rest.count) {
            case ("GET", 0):
                let filterText = request.query["state"] ?? "all"
                guard let filter = DestinationListFilter(rawValue: filterText) else {
                    throw IngestError(status: 400, errcode: "M_INVALID_PARAM",
                                      "state: must be one of \(DestinationListFilter.allCases.map(\.rawValue).joined(separator: ", ")), got \"\(filterText)\"")
                }
                let limitText = request.query["limit"] ?? "100"
                guard let limit = Int(limitText), (1...Self.maxListLimit).contains(limit) else {
                    throw IngestError(status: 400, errcode: "M_INVALID_PARAM",
                                      "limit: must be a whole number from 1 to \(Self.maxListLimit), got \"\(limitText)\"")
                }
                return IngestResponse(json: try await administration.list(filter: filter, from: request.query["from"] ?? "", limit: limit))
            case (_, 2) where rest[0].isEmpty:
                let name = try serverName(String(rest[1]))
                guard request.method == "GET" else { throw IngestError.methodNotAllowed(method: request.method, path: request.path) }
                guard let detail = try await administration.detail(of: name) else { throw IngestError.unknownDestination(name) }
                return IngestResponse(json: detail)
            case (_, 3) where rest[0].isEmpty && (rest[2] == "wake" || rest[2] == "backoff"):
                let expected = rest[2] == "wake" ? "POST" : "DELETE"
                guard request.method == expected else { throw IngestError.methodNotAllowed(method: request.method, path: request.path) }
                let name = try serverName(String(rest[1]))
                guard try await administration.resetBackoffAndWake(name) else { throw IngestError.unknownDestination(name) }
                return IngestResponse(json: .object([:]))
            case ("GET", _), ("POST", _), ("DELETE", _):
                throw IngestError.unrecognized(method: request.method, path: request.path)
            default:
                throw IngestError.methodNotAllowed(method: request.method, path: request.path)
            }
        } catch let error as IngestError {
            throw error
        } catch {
            throw IngestError(status: 500, errcode: "M_UNKNOWN", "destinations: \(error)")
        }
    }

    /// A percent-decoded path segment that must be a server name.
    private func serverName(_ segment: String) throws(IngestError) -> String {
        let name = segment.removingPercentEncoding
        do {
            try ServerName.validate(name)
        } catch {
            throw IngestError(status: 400, errcode: "M_INVALID_PARAM", "destination: \(error)")
        }
        return name
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
        let parsed = try parser.parse(txnID: txnID, body: body)
        let batch = parsed.batch
        let receipt: IngestReceipt
        do {
            if batch.pdus.isEmpty, batch.edus.isEmpty {
                // Typing, presence and receipts only: they live in memory, so nothing is written
                // (no fsync on the SD card for every typing notification).
                receipt = try outbox.acceptWithoutStoring(txnID: txnID)
            } else {
                receipt = try await outbox.accept(batch)
            }
        } catch {
            switch error {
            case .invalidBatch(_, let field, let rule):
                throw .badJSON("\(field): \(rule)")
            case .overloaded:
                throw IngestError(status: 503, errcode: "M_LIMIT_EXCEEDED", "outbox is busy, retry shortly: \(error)")
            case .storageLimitReached:
                throw IngestError(status: 507, errcode: "M_RESOURCE_LIMIT_EXCEEDED",
                                  "storage.max_bytes reached, transaction \(txnID) was not stored: \(error)")
            case .diskFull:
                throw IngestError(status: 507, errcode: "M_RESOURCE_LIMIT_EXCEEDED",
                                  "disk full, transaction \(txnID) was not stored: \(error)")
            case .storage(_, let failure) where failure.isIOError:
                throw IngestError(status: 503, errcode: "M_UNKNOWN",
                                  "storage I/O error, transaction \(txnID) was not stored, retry shortly: \(error)")
            default:
                throw IngestError(status: 500, errcode: "M_UNKNOWN", "could not store transaction \(txnID): \(error)")
            }
        }
        if !receipt.isReplay {
            if let ephemeralDelivery, !parsed.ephemeral.isEmpty || !parsed.events.isEmpty {
                ephemeralDelivery.accepted(events: parsed.events, ephemeral: parsed.ephemeral)
            }
            logger.debug("accepted ingest transaction", metadata: [
                "txn_id": "\(txnID)", "pdus": "\(batch.pdus.count)", "edus": "\(batch.edus.count + parsed.ephemeral.count)",
                "stream_ordering": "\(receipt.streamOrdering)",
            ])
        }
        return IngestResponse(json: ["stream_ordering": .integer(receipt.streamOrdering)])
    }
}
