
/// A typing, presence or read-receipt EDU, parsed into the units that collapse: one typing
/// state per (room, user), one presence state per user, one receipt per (room, receipt type,
/// user, thread).
///
/// These EDUs live only in memory (`EphemeralEDUBuffer`): a newer one supersedes an older
/// one and a lost one is harmless, as in Synapse. Every other EDU type is persisted by the
/// Outbox and never becomes an `EphemeralEDU`. The JSON objects the homeserver sent are kept
/// whole, so fields this type does not know about are forwarded unchanged.
public enum EphemeralEDU: Sendable, Equatable {
    /// `m.typing`: whether `userID` is typing in `roomID`.
    case typing(Typing)
    /// `m.presence`: the states of `content.push`, in the order given.
    case presence([PresenceState])
    /// `m.receipt`: every receipt of the content, sorted by room, receipt type and user.
    case receipts([Receipt])

    /// The EDU types that are held in memory rather than persisted.
    public static let ephemeralTypes: Set<String> = [typingType, presenceType, receiptType]
    public static let typingType = "m.typing"
    public static let presenceType = "m.presence"
    public static let receiptType = "m.receipt"

    /// One `m.typing` EDU; `content` is the whole content object as sent.
    public struct Typing: Sendable, Equatable {
        public var roomID: String
        public var userID: String
        public var isTyping: Bool
        public var content: JSONValue

        public init(roomID: String, userID: String, isTyping: Bool, content: JSONValue) {
            self.roomID = roomID
            self.userID = userID
            self.isTyping = isTyping
            self.content = content
        }
    }

    /// One element of an `m.presence` EDU's `push` array; `state` is the whole object as sent.
    public struct PresenceState: Sendable, Equatable {
        public var userID: String
        public var state: JSONValue

        public init(userID: String, state: JSONValue) {
            self.userID = userID
            self.state = state
        }
    }

    /// One user's receipt in one room, under one receipt type and thread. `receipt` is the
    /// `{"event_ids": […], "data": {…}}` object as sent; `threadID` is `data.thread_id`.
    public struct Receipt: Sendable, Equatable {
        public var roomID: String
        public var receiptType: String
        public var userID: String
        public var threadID: String?
        public var eventIDs: [String]
        public var receipt: JSONValue

        public init(roomID: String, receiptType: String, userID: String, threadID: String?,
                    eventIDs: [String], receipt: JSONValue) {
            self.roomID = roomID
            self.receiptType = receiptType
            self.userID = userID
            self.threadID = threadID
            self.eventIDs = eventIDs
            self.receipt = receipt
        }
    }

    /// The `edu_type` this EDU is sent as.
    public var eduType: String {
        switch self {
        case .typing: Self.typingType
        case .presence: Self.presenceType
        case .receipts: Self.receiptType
        }
    }

    /// The events the receipts point at (empty for typing and presence), for `ReadReceiptPacer`.
    public var receiptedEventIDs: [String] {
        guard case .receipts(let receipts) = self else { return [] }
        return receipts.flatMap(\.eventIDs)
    }
}
