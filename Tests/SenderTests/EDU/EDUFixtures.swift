import Federation
import Sender

/// Builders for the EDUs the tests queue, going through `EphemeralEDU.parse` like real input.
enum EDUFixtures {
    static func typingContent(_ roomID: String, _ userID: String, _ isTyping: Bool = true) -> JSONValue {
        ["room_id": .string(roomID), "user_id": .string(userID), "typing": .bool(isTyping)]
    }

    static func typing(_ roomID: String, _ userID: String, _ isTyping: Bool = true) throws -> EphemeralEDU {
        try parse("m.typing", typingContent(roomID, userID, isTyping))
    }

    static func presenceState(_ userID: String, _ presence: String = "online", lastActiveAgo: Int64? = nil) -> JSONValue {
        var state: [String: JSONValue] = ["user_id": .string(userID), "presence": .string(presence)]
        if let lastActiveAgo { state["last_active_ago"] = .integer(lastActiveAgo) }
        return .object(state)
    }

    static func presence(_ states: [JSONValue]) throws -> EphemeralEDU {
        try parse("m.presence", ["push": .array(states)])
    }

    static func receiptValue(_ eventID: String, ts: Int64 = 1, threadID: String? = nil) -> JSONValue {
        var data: [String: JSONValue] = ["ts": .integer(ts)]
        if let threadID { data["thread_id"] = .string(threadID) }
        return ["event_ids": [.string(eventID)], "data": .object(data)]
    }

    static func receipt(_ roomID: String, _ userID: String, _ eventID: String, type: String = "m.read",
                        threadID: String? = nil) throws -> EphemeralEDU {
        try parse("m.receipt", [roomID: [type: [userID: receiptValue(eventID, threadID: threadID)]]])
    }

    static func edu(_ eduType: String, _ content: JSONValue) -> [UInt8] {
        CanonicalJSON.encode(["content": content, "edu_type": .string(eduType)])
    }

    static func decode(_ bytes: [UInt8]) throws -> (eduType: String, content: JSONValue) {
        let value = try JSONValue.parse(bytes)
        return (value["edu_type"]?.stringValue ?? "", value["content"] ?? .null)
    }

    private static func parse(_ eduType: String, _ content: JSONValue) throws -> EphemeralEDU {
        guard let edu = try EphemeralEDU.parse(eduType: eduType, content: content) else {
            throw FixtureError(eduType: eduType)
        }
        return edu
    }

    struct FixtureError: Error {
        var eduType: String
    }
}

extension EphemeralEDUBuffer {
    /// What a transaction without persistent EDUs takes: the leading EDUs (presence,
    /// receipts), then typing, never more than `maxEDUs` in all.
    mutating func take(for destination: String, maxEDUs: Int, nowMS: Int64) -> [[UInt8]] {
        var edus = takeLeading(for: destination, maxEDUs: maxEDUs, nowMS: nowMS)
        edus += takeTyping(for: destination, maxEDUs: maxEDUs - edus.count, nowMS: nowMS)
        return edus
    }
}
