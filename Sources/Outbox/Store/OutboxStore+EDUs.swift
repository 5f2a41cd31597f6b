extension OutboxStore {
    /// Persistent EDUs still owed to `destination`, oldest (lowest id) first: of the types in
    /// `onlyTypes` when given, and never of the types in `exceptTypes`.
    func pendingEDUs(for destination: String, limit: Int, onlyTypes: Set<String>?, exceptTypes: Set<String>)
        throws(SQLiteError) -> [StoredEDU]
    {
        var placeholder = 3
        func list(_ types: Set<String>) -> String {
            let text = types.map { _ in
                defer { placeholder += 1 }
                return "?\(placeholder)"
            }.joined(separator: ", ")
            return "(\(text))"
        }
        let only = onlyTypes.map { "AND e.edu_type IN \(list($0))" } ?? ""
        let except = exceptTypes.isEmpty ? "" : "AND e.edu_type NOT IN \(list(exceptTypes))"
        let query = try database.statement("""
            SELECT e.edu_id, e.edu_type, e.canonical_json
            FROM edu_destinations AS ed JOIN edus AS e ON e.edu_id = ed.edu_id
            WHERE ed.destination = ?1 \(only) \(except)
            ORDER BY ed.edu_id
            LIMIT ?2
            """)
        try query.bind(destination, at: 1)
        try query.bind(Int64(limit), at: 2)
        var index: Int32 = 3
        for type in Array(onlyTypes ?? []) + Array(exceptTypes) {
            try query.bind(type, at: index)
            index += 1
        }
        return try query.rows { row in
            StoredEDU(eduID: row.int64(at: 0), eduType: row.text(at: 1), canonicalJSON: row.blob(at: 2))
        }
    }

    /// Forgets that `destination` needs the EDUs `eduIDs`, and only those: the sender may deliver them out of id
    /// order. Ids it does not owe are ignored. The `edus` rows themselves go at the next prune.
    func recordEDUsDelivered(destination: String, eduIDs: [Int64]) throws(SQLiteError) {
        let delete = try database.statement("""
            DELETE FROM edu_destinations WHERE destination = ?1 AND edu_id = ?2
            """)
        for eduID in eduIDs {
            try delete.bind(destination, at: 1)
            try delete.bind(eduID, at: 2)
            try delete.run()
        }
    }

    /// How many persistent EDUs are still owed to `destination`.
    func pendingEDUCount(for destination: String) throws(SQLiteError) -> Int {
        let query = try database.statement("SELECT count(*) FROM edu_destinations WHERE destination = ?1")
        try query.bind(destination, at: 1)
        return try query.firstRow { Int($0.int64(at: 0)) } ?? 0
    }
}
