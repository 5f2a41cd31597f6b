/// What a request is for, which decides who gets a connection first when the pool is at a cap.
///
/// The order of the cases is the order of service: a waiting interactive query is served
/// before any PDU transaction, a PDU transaction before an EDU-only one, and catch-up
/// (resending what a destination missed while it was unreachable) last. Within one class
/// the `HostRanker` decides.
public enum RequestClass: Int, Sendable, Hashable, CaseIterable, Comparable, CustomStringConvertible {
    /// A query someone is waiting for: `/query`, `/make_join`, key or profile lookups.
    case interactiveQuery
    /// A `/send` transaction carrying new PDUs.
    case pduTransaction
    /// A `/send` transaction carrying only EDUs (typing, receipts, presence).
    case eduTransaction
    /// A `/send` transaction replaying events for a destination that is catching up.
    case catchUp

    public static func < (lhs: RequestClass, rhs: RequestClass) -> Bool {
        lhs.rawValue < rhs.rawValue
    }

    /// The name used in metrics labels and log fields.
    public var label: String {
        switch self {
        case .interactiveQuery: "interactive_query"
        case .pduTransaction: "pdu_transaction"
        case .eduTransaction: "edu_transaction"
        case .catchUp: "catch_up"
        }
    }

    public var description: String {
        switch self {
        case .interactiveQuery: "interactive query"
        case .pduTransaction: "PDU transaction"
        case .eduTransaction: "EDU-only transaction"
        case .catchUp: "catch-up transaction"
        }
    }
}
