
extension EphemeralEDU {
    /// Parses the content of an `m.typing`, `m.presence` or `m.receipt` EDU; nil for any other
    /// `edu_type`, which is persisted rather than held in memory.
    ///
    /// Checks the structure the buffer relies on (the fields it collapses by, and
    /// `last_active_ago`, which it adjusts) and leaves everything else to the receiver.
    public static func parse(eduType: String, content: JSONValue) throws(EphemeralEDUError) -> EphemeralEDU? {
        let parser = Parser(eduType: eduType)
        switch eduType {
        case typingType: return .typing(try parser.typing(content))
        case presenceType: return .presence(try parser.presence(content))
        case receiptType: return .receipts(try parser.receipts(content))
        default: return nil
        }
    }

    private struct Parser {
        let eduType: String

        func typing(_ content: JSONValue) throws(EphemeralEDUError) -> Typing {
            let members = try object(content, at: "content")
            return Typing(roomID: try string(members, "room_id", at: "content"),
                          userID: try string(members, "user_id", at: "content"),
                          isTyping: try boolean(members, "typing", at: "content"),
                          content: content)
        }

        func presence(_ content: JSONValue) throws(EphemeralEDUError) -> [PresenceState] {
            let members = try object(content, at: "content")
            guard let push = members["push"] else { throw failure("content.push", .missing(.array)) }
            guard case .array(let states) = push else { throw failure("content.push", .wrongKind(expected: .array)) }
            var parsed: [PresenceState] = []
            parsed.reserveCapacity(states.count)
            for (index, state) in states.enumerated() {
                let path = "content.push[\(index)]"
                let fields = try object(state, at: path)
                let userID = try string(fields, "user_id", at: path)
                if let ago = fields["last_active_ago"], ago.intValue == nil {
                    throw failure("\(path).last_active_ago", .wrongKind(expected: .integer))
                }
                parsed.append(PresenceState(userID: userID, state: state))
            }
            return parsed
        }

        func receipts(_ content: JSONValue) throws(EphemeralEDUError) -> [Receipt] {
            let rooms = try object(content, at: "content")
            var parsed: [Receipt] = []
            for (roomID, byType) in rooms.sorted(by: { $0.key < $1.key }) {
                let roomPath = FieldPath.key(roomID, of: "content")
                let types = try object(byType, at: roomPath)
                for (receiptType, byUser) in types.sorted(by: { $0.key < $1.key }) {
                    let typePath = FieldPath.key(receiptType, of: roomPath)
                    let users = try object(byUser, at: typePath)
                    for (userID, receipt) in users.sorted(by: { $0.key < $1.key }) {
                        let path = FieldPath.key(userID, of: typePath)
                        let fields = try object(receipt, at: path)
                        let eventIDs = try eventIDs(fields, at: path)
                        guard let data = fields["data"] else { throw failure("\(path).data", .missing(.object)) }
                        let dataFields = try object(data, at: "\(path).data")
                        var threadID: String?
                        if let thread = dataFields["thread_id"] {
                            guard let value = thread.stringValue else {
                                throw failure("\(path).data.thread_id", .wrongKind(expected: .string))
                            }
                            threadID = value
                        }
                        parsed.append(Receipt(roomID: roomID, receiptType: receiptType, userID: userID,
                                              threadID: threadID, eventIDs: eventIDs, receipt: receipt))
                    }
                }
            }
            return parsed
        }

        private func eventIDs(_ fields: [String: JSONValue], at path: String) throws(EphemeralEDUError) -> [String] {
            guard let value = fields["event_ids"] else { throw failure("\(path).event_ids", .missing(.array)) }
            guard case .array(let elements) = value else { throw failure("\(path).event_ids", .wrongKind(expected: .array)) }
            guard !elements.isEmpty else { throw failure("\(path).event_ids", .empty) }
            var ids: [String] = []
            ids.reserveCapacity(elements.count)
            for (index, element) in elements.enumerated() {
                guard let id = element.stringValue else {
                    throw failure("\(path).event_ids[\(index)]", .wrongKind(expected: .string))
                }
                ids.append(id)
            }
            return ids
        }

        private func object(_ value: JSONValue, at path: String) throws(EphemeralEDUError) -> [String: JSONValue] {
            guard let members = value.objectValue else { throw failure(path, .wrongKind(expected: .object)) }
            return members
        }

        private func string(_ members: [String: JSONValue], _ key: String, at path: String) throws(EphemeralEDUError) -> String {
            guard let value = members[key] else { throw failure("\(path).\(key)", .missing(.string)) }
            guard let string = value.stringValue else { throw failure("\(path).\(key)", .wrongKind(expected: .string)) }
            return string
        }

        private func boolean(_ members: [String: JSONValue], _ key: String, at path: String) throws(EphemeralEDUError) -> Bool {
            guard let value = members[key] else { throw failure("\(path).\(key)", .missing(.boolean)) }
            guard let flag = value.boolValue else { throw failure("\(path).\(key)", .wrongKind(expected: .boolean)) }
            return flag
        }

        private func failure(_ field: String, _ rule: EphemeralEDUError.Rule) -> EphemeralEDUError {
            EphemeralEDUError(eduType: eduType, field: field, rule: rule)
        }
    }
}
