import Federation
import Outbox
import Transport

/// One federation transaction as built for a destination: everything needed to send the
/// same txnId with the same bytes again. PDUs are references to the bytes every other
/// destination shares; nothing is copied per destination until the body is concatenated
/// for the request.
public struct OutgoingTransaction: Sendable {
    public var txnID: String
    public var originServerTS: Int64
    /// In stream order.
    public var pdus: [StoredPDU]
    /// Canonical EDUs (`{"content":…,"edu_type":…}`), in the order they are sent.
    public var edus: [[UInt8]]
    /// The Outbox ids of the persistent EDUs among `edus`, deleted once delivered.
    public var persistentEDUIDs: [Int64]
    /// Built from the newest PDU per room (catch-up) rather than the in-memory queue.
    public var isCatchUp: Bool

    public init(txnID: String, originServerTS: Int64, pdus: [StoredPDU], edus: [[UInt8]], persistentEDUIDs: [Int64],
                isCatchUp: Bool) {
        self.txnID = txnID
        self.originServerTS = originServerTS
        self.pdus = pdus
        self.edus = edus
        self.persistentEDUIDs = persistentEDUIDs
        self.isCatchUp = isCatchUp
    }

    /// Its place in line at the connection pool's caps.
    public var requestClass: RequestClass { isCatchUp ? .catchUp : pdus.isEmpty ? .eduTransaction : .pduTransaction }

    public var lastStreamOrdering: Int64? { pdus.last?.streamOrdering }
    public var unitCount: Int { pdus.count + edus.count }

    public func body(origin: String) -> [UInt8] {
        TransactionBody.encode(origin: origin, originServerTS: originServerTS, pdus: pdus.map(\.canonicalJSON), edus: edus)
    }
}
