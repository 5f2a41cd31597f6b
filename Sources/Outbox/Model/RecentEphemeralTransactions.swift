/// The txn ids of the last ingest requests that carried nothing to store (typing, presence and receipts only),
/// each with the answer it got: the in-memory counterpart of the `ingest_transactions` table.
///
/// Such requests are never written, so that a typing notification costs no fsync, and their EDUs live only in
/// the sender's memory. Their txn ids need no more durability than that: after a restart the EDUs are gone, and a
/// repeat arriving then is best accepted again, so they still reach their destinations. What a homeserver
/// retrying after a timeout needs is the first answer and no second delivery, for as long as it goes on
/// retrying; the last `capacity` txn ids are kept, the oldest forgotten first.
struct RecentEphemeralTransactions: Sendable {
    let capacity: Int
    private var answers: [String: Int64] = [:]
    /// The remembered txn ids in arrival order, as a ring once full: `oldest` is the next to go.
    private var arrivals: [String] = []
    private var oldest = 0

    init(capacity: Int) {
        self.capacity = max(capacity, 1)
    }

    /// The answer `txnID` got the first time, marked `isReplay`; for a txn id not seen (or forgotten), a receipt
    /// of `streamOrdering`, which is remembered as its answer.
    mutating func accept(_ txnID: String, streamOrdering: Int64) -> IngestReceipt {
        if let first = answers[txnID] {
            return IngestReceipt(streamOrdering: first, isReplay: true, perPDU: [])
        }
        if arrivals.count < capacity {
            arrivals.append(txnID)
        } else {
            answers[arrivals[oldest]] = nil
            arrivals[oldest] = txnID
            oldest = (oldest + 1) % capacity
        }
        answers[txnID] = streamOrdering
        return IngestReceipt(streamOrdering: streamOrdering, isReplay: false, perPDU: [])
    }
}
