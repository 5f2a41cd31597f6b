/// The Outbox's answer to an accepted batch, given only once the batch is durable.
///
/// A repeated `txnID` gets the same stream orderings as the first time, with `isReplay` set.
public struct IngestReceipt: Sendable, Equatable {
    /// The stream ordering of the batch's last PDU, or the highest stream ordering allocated so far for an empty batch.
    public var streamOrdering: Int64
    /// True when the txnID had been accepted before and nothing was stored this time.
    public var isReplay: Bool
    /// The stream ordering of each PDU of the batch, in the batch's order.
    public var perPDU: [Int64]

    public init(streamOrdering: Int64, isReplay: Bool, perPDU: [Int64]) {
        self.streamOrdering = streamOrdering
        self.isReplay = isReplay
        self.perPDU = perPDU
    }
}
