import Federation

/// The in-memory queue of typing, presence and read-receipt EDUs for every destination,
/// with a bound on the total number of entries.
///
/// An entry is one collapsible unit for one destination: a typing state per (room, user),
/// a presence state per user, a receipt per (room, receipt type, user, thread). A newer unit
/// replaces the pending one with the same key (latest wins) and counts as a new insertion.
/// When an `add` would take the total past `maxEntries`, the oldest entry of any destination
/// is evicted, in amortised O(1). Typing states older than `typingLifetimeMS` and presence
/// states older than `presenceLifetimeMS` are dropped when their destination's EDUs are
/// taken; receipts never expire. A destination with nothing pending costs nothing.
///
/// `take` hands EDUs out in Synapse's transaction order (presence, receipts, typing) as
/// canonical `{"content":…,"edu_type":…}` bytes, removing them: like Synapse, the caller
/// loses them if the transaction fails. Pure: the caller passes the time in.
public struct EphemeralEDUBuffer: Sendable {
    /// How long a typing state is worth sending; Synapse's receivers time typing out after 60 s.
    public static let typingLifetimeMS: Int64 = 60_000
    /// How long a presence state is worth sending.
    public static let presenceLifetimeMS: Int64 = 600_000
    /// Synapse's `MAX_PRESENCE_STATES_PER_EDU`.
    public static let maximumPresenceStatesPerEDU = 50
    /// Synapse's `_get_receipt_edus(limit=5)`.
    public static let maximumReceiptEDUsPerTransaction = 5

    public let maxEntries: Int
    /// Entries pending over all destinations.
    public private(set) var count = 0
    /// Entries dropped because they were stale when taken or evicted, or because their
    /// destination went into catch-up; a total since start.
    public private(set) var droppedExpired = 0
    /// Entries evicted to stay within `maxEntries`; a total since start.
    public private(set) var droppedForMemory = 0

    private var pending: [String: PendingEDUs] = [:]
    /// Every insertion in order, for eviction. Slots whose entry was since replaced, taken or
    /// dropped stay behind and are skipped; `compactInsertionOrder` bounds how many there are.
    private var insertionOrder = FrontConsumedQueue<Slot>()
    private var nextSequence: UInt64 = 0

    /// - Parameter maxEntries: the bound on pending entries over all destinations; at least 1.
    public init(maxEntries: Int) {
        precondition(maxEntries > 0, "EphemeralEDUBuffer maxEntries must be at least 1, got \(maxEntries)")
        self.maxEntries = maxEntries
    }

    /// Destinations with at least one pending entry.
    public var destinationCount: Int { pending.count }

    /// Whether `destination` has anything pending (possibly stale until it is taken).
    public func hasPending(for destination: String) -> Bool {
        pending[destination] != nil
    }

    /// Queues `edu` for each of `destinations`, replacing pending units with the same key.
    public mutating func add(_ edu: EphemeralEDU, for destinations: [String], nowMS: Int64) {
        let units = Self.units(of: edu)
        for destination in destinations {
            for unit in units {
                insert(unit.payload, key: unit.key, destination: destination, nowMS: nowMS)
            }
        }
    }

    /// The EDUs that lead a transaction, removed: at most one `m.presence` EDU of up to
    /// `maximumPresenceStatesPerEDU` states, oldest first, then up to
    /// `maximumReceiptEDUsPerTransaction` `m.receipt` EDUs; never more than `maxEDUs`.
    public mutating func takeLeading(for destination: String, maxEDUs: Int, nowMS: Int64) -> [[UInt8]] {
        guard maxEDUs > 0, var edus = pending.removeValue(forKey: destination) else { return [] }
        var taken: [[UInt8]] = []
        if let presence = takePresence(from: &edus, nowMS: nowMS) {
            taken.append(presence)
        }
        let receiptLimit = min(Self.maximumReceiptEDUsPerTransaction, maxEDUs - taken.count)
        taken += takeReceipts(from: &edus, limit: receiptLimit)
        restore(edus, for: destination)
        return taken
    }

    /// Up to `maxEDUs` `m.typing` EDUs, oldest first, removed; the ones that go last in a transaction.
    public mutating func takeTyping(for destination: String, maxEDUs: Int, nowMS: Int64) -> [[UInt8]] {
        guard maxEDUs > 0, var edus = pending.removeValue(forKey: destination) else { return [] }
        for (key, entry) in edus.typing where nowMS - entry.addedMS >= Self.typingLifetimeMS {
            edus.typing[key] = nil
            drop(expired: true)
        }
        var taken: [[UInt8]] = []
        if !edus.typing.isEmpty {
            let oldest = edus.typing.sorted { $0.value.sequence < $1.value.sequence }.prefix(maxEDUs)
            taken.reserveCapacity(oldest.count)
            for (key, entry) in oldest {
                edus.typing[key] = nil
                count -= 1
                taken.append(Self.encode(eduType: EphemeralEDU.typingType, content: entry.payload))
            }
        }
        restore(edus, for: destination)
        return taken
    }

    /// Drops everything pending for `destination`, counted as expired: a destination entering
    /// catch-up will not be sent stale ephemeral data.
    public mutating func removeAll(for destination: String) {
        guard let edus = pending.removeValue(forKey: destination) else { return }
        count -= edus.count
        droppedExpired += edus.count
    }
}

extension EphemeralEDUBuffer {
    private struct TypingKey: Hashable, Sendable {
        var roomID: String
        var userID: String
    }

    private struct ReceiptKey: Hashable, Sendable {
        var roomID: String
        var receiptType: String
        var userID: String
        var threadID: String?

        /// The slot in an `m.receipt` content this receipt occupies: the map holds one receipt
        /// per (room, type, user), so receipts of other threads need another EDU.
        var slot: ReceiptSlot { ReceiptSlot(roomID: roomID, receiptType: receiptType, userID: userID) }
    }

    private struct ReceiptSlot: Hashable, Sendable {
        var roomID: String
        var receiptType: String
        var userID: String
    }

    private enum EntryKey: Hashable, Sendable {
        case presence(userID: String)
        case receipt(ReceiptKey)
        case typing(TypingKey)
    }

    private struct Entry: Sendable {
        var sequence: UInt64
        var addedMS: Int64
        var payload: JSONValue
    }

    private struct Slot: Sendable {
        var sequence: UInt64
        var destination: String
        var key: EntryKey
    }

    /// One destination's pending entries; never stored empty.
    private struct PendingEDUs: Sendable {
        var presence: [String: Entry] = [:]
        var receipts: [ReceiptKey: Entry] = [:]
        var typing: [TypingKey: Entry] = [:]

        var count: Int { presence.count + receipts.count + typing.count }
        var isEmpty: Bool { presence.isEmpty && receipts.isEmpty && typing.isEmpty }

        subscript(key: EntryKey) -> Entry? {
            get {
                switch key {
                case .presence(let userID): presence[userID]
                case .receipt(let receiptKey): receipts[receiptKey]
                case .typing(let typingKey): typing[typingKey]
                }
            }
            set {
                switch key {
                case .presence(let userID): presence[userID] = newValue
                case .receipt(let receiptKey): receipts[receiptKey] = newValue
                case .typing(let typingKey): typing[typingKey] = newValue
                }
            }
        }
    }

    private static func units(of edu: EphemeralEDU) -> [(key: EntryKey, payload: JSONValue)] {
        switch edu {
        case .typing(let typing):
            return [(.typing(TypingKey(roomID: typing.roomID, userID: typing.userID)), typing.content)]
        case .presence(let states):
            return states.map { (.presence(userID: $0.userID), $0.state) }
        case .receipts(let receipts):
            return receipts.map {
                (.receipt(ReceiptKey(roomID: $0.roomID, receiptType: $0.receiptType,
                                     userID: $0.userID, threadID: $0.threadID)), $0.receipt)
            }
        }
    }

    private static func lifetimeMS(of key: EntryKey) -> Int64? {
        switch key {
        case .presence: presenceLifetimeMS
        case .typing: typingLifetimeMS
        case .receipt: nil
        }
    }

    private mutating func insert(_ payload: JSONValue, key: EntryKey, destination: String, nowMS: Int64) {
        let sequence = nextSequence
        nextSequence += 1
        let entry = Entry(sequence: sequence, addedMS: nowMS, payload: payload)
        let replaced = pending[destination, default: PendingEDUs()][key] != nil
        pending[destination, default: PendingEDUs()][key] = entry
        insertionOrder.append(Slot(sequence: sequence, destination: destination, key: key))
        if !replaced {
            count += 1
            if count > maxEntries { evictOldest(nowMS: nowMS) }
        }
        compactInsertionOrder()
    }

    /// Removes the entry inserted longest ago, whichever destination it belongs to. The new
    /// entry is never the oldest, since `maxEntries` is at least 1.
    private mutating func evictOldest(nowMS: Int64) {
        while let slot = insertionOrder.popFirst() {
            // Copied out of the slot one by one: Swift 6.3's optimiser crashes on a switch over
            // a borrowed `slot.key` here.
            let sequence = slot.sequence
            let destination = slot.destination
            let key = slot.key
            let lifetime = Self.lifetimeMS(of: key)
            guard var edus = pending.removeValue(forKey: destination) else { continue }
            if let entry = edus[key], entry.sequence == sequence {
                edus[key] = nil
                drop(expired: lifetime.map { nowMS - entry.addedMS >= $0 } ?? false)
                restore(edus, for: destination)
                return
            }
            restore(edus, for: destination)
        }
    }

    private mutating func drop(expired: Bool) {
        count -= 1
        if expired { droppedExpired += 1 } else { droppedForMemory += 1 }
    }

    private mutating func restore(_ edus: PendingEDUs, for destination: String) {
        if !edus.isEmpty { pending[destination] = edus }
    }

    /// Keeps `insertionOrder` within about twice the live entries by rebuilding it from live
    /// slots once dead ones (replaced, taken or dropped entries) dominate. Each rebuild
    /// follows at least `count + 1024` insertions, so the cost per insertion stays O(1)
    /// amortised.
    private mutating func compactInsertionOrder() {
        guard insertionOrder.count > 2 * count + 1024 else { return }
        insertionOrder.keepOnly { slot in pending[slot.destination]?[slot.key]?.sequence == slot.sequence }
    }

    private mutating func takePresence(from edus: inout PendingEDUs, nowMS: Int64) -> [UInt8]? {
        for (userID, entry) in edus.presence where nowMS - entry.addedMS >= Self.presenceLifetimeMS {
            edus.presence[userID] = nil
            drop(expired: true)
        }
        guard !edus.presence.isEmpty else { return nil }
        let oldest = edus.presence.sorted { $0.value.sequence < $1.value.sequence }
            .prefix(Self.maximumPresenceStatesPerEDU)
        var states: [JSONValue] = []
        states.reserveCapacity(oldest.count)
        for (userID, entry) in oldest {
            edus.presence[userID] = nil
            count -= 1
            states.append(Self.aged(entry.payload, byMS: nowMS - entry.addedMS))
        }
        return Self.encode(eduType: EphemeralEDU.presenceType, content: ["push": .array(states)])
    }

    /// `last_active_ago` was measured when the homeserver sent the state; it has grown since.
    private static func aged(_ state: JSONValue, byMS elapsed: Int64) -> JSONValue {
        guard elapsed > 0, case .object(var fields) = state,
              let ago = fields["last_active_ago"]?.intValue else { return state }
        fields["last_active_ago"] = .integer(ago + elapsed)
        return .object(fields)
    }

    /// Groups receipts, oldest first, into at most `limit` `m.receipt` contents as Synapse
    /// does: each goes into the first content whose (room, type, user) slot is still free;
    /// the ones that fit nowhere stay pending for the next transaction.
    private mutating func takeReceipts(from edus: inout PendingEDUs, limit: Int) -> [[UInt8]] {
        guard limit > 0, !edus.receipts.isEmpty else { return [] }
        var contents: [[String: [String: [String: JSONValue]]]] = []
        var occupied: [Set<ReceiptSlot>] = []
        for (key, entry) in edus.receipts.sorted(by: { $0.value.sequence < $1.value.sequence }) {
            let slot = key.slot
            var index = occupied.firstIndex { !$0.contains(slot) }
            if index == nil, contents.count < limit {
                contents.append([:])
                occupied.append([])
                index = contents.count - 1
            }
            guard let index else { continue }
            occupied[index].insert(slot)
            contents[index][key.roomID, default: [:]][key.receiptType, default: [:]][key.userID] = entry.payload
            edus.receipts[key] = nil
            count -= 1
        }
        return contents.map { rooms in
            let content = JSONValue.object(rooms.mapValues { types in
                .object(types.mapValues { users in .object(users) })
            })
            return Self.encode(eduType: EphemeralEDU.receiptType, content: content)
        }
    }

    private static func encode(eduType: String, content: JSONValue) -> [UInt8] {
        CanonicalJSON.encode(["content": content, "edu_type": .string(eduType)])
    }
}
