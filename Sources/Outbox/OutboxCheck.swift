/// `southbridge check-storage`: SQLite's own checks and the Outbox's invariants, read from the file through a
/// read-only connection, so it can run beside the daemon (WAL lets a reader in while the writer works).
public enum OutboxCheck {
    /// What the check saw: what the file holds, and every invariant found broken (none for a sound file).
    public struct Report: Sendable, Equatable {
        /// One line per table: what the file holds.
        public var contents: [String] = []
        /// One line per problem, naming the table and the rows involved.
        public var problems: [String] = []

        public var isSound: Bool { problems.isEmpty }
    }

    /// Checks the Outbox file at `path`. Throws only when the file cannot be opened or read at all.
    public static func run(path: String) throws(OutboxError) -> Report {
        let database: SQLiteDatabase
        do throws(SQLiteError) {
            database = try SQLiteDatabase(path: path, readOnly: true)
        } catch {
            throw .openFailed(path: path, error)
        }
        defer { database.close() }
        do throws(SQLiteError) {
            var report = try check(database)
            if report.problems.allSatisfy({ !$0.hasPrefix("schema_version") }) {
                try checkLog(database, directory: OutboxStore.logDirectory(of: path), into: &report)
            }
            return report
        } catch {
            throw .storage(path: path, error)
        }
    }

    private static func check(_ database: SQLiteDatabase) throws(SQLiteError) -> Report {
        var report = Report()
        let integrity = try database.statement("PRAGMA integrity_check").rows { $0.text(at: 0) }
        if integrity != ["ok"] {
            report.problems += integrity.map { "integrity_check: \($0)" }
        }
        let version = try database.statement("SELECT max(version) FROM schema_version").firstRow {
            $0.optionalInt64(at: 0)
        }?.flatMap { $0 } ?? 0
        guard version == OutboxSchema.latestVersion else {
            report.problems.append("""
                schema_version: \(version), this southbridge knows \(OutboxSchema.latestVersion); \
                \(version < OutboxSchema.latestVersion ? "the next start migrates it" : "the file is from a newer southbridge")
                """)
            return report
        }
        report.problems += try database.statement("PRAGMA foreign_key_check").rows { row in
            "foreign_key_check: a row of \(row.text(at: 0)) refers to a missing row of \(row.text(at: 2))"
        }

        let counts = try database.statement("""
            SELECT (SELECT count(*) FROM pdus), (SELECT count(*) FROM destination_sets),
                   (SELECT count(*) FROM destinations), (SELECT count(*) FROM edus),
                   (SELECT count(*) FROM edu_destinations), (SELECT count(*) FROM ingest_transactions),
                   (SELECT value FROM outbox_meta WHERE name = 'allocated_stream_ordering'),
                   (SELECT max(stream_ordering) FROM pdus), (SELECT max(stream_ordering) FROM ingest_transactions),
                   (SELECT max(last_successful_stream_ordering) FROM destinations)
            """).firstRow { row in (0..<10).map { row.optionalInt64(at: $0) } } ?? []
        let number = { (index: Int) -> Int64 in counts[index] ?? 0 }
        report.contents = [
            "pdus: \(number(0)), in \(number(1)) destination sets, for \(number(2)) destinations",
            "edus: \(number(3)), owed \(number(4)) times",
            "ingest txn ids remembered: \(number(5))",
            "highest stream ordering handed out: \(max(number(6), number(7), number(8)))",
        ]
        if counts[6] == nil {
            report.problems.append("outbox_meta: no allocated_stream_ordering row")
        }
        // What a restart hands out after: PDUs and txn ids above the stored value are still in their tables.
        let allocated = max(number(6), number(7), number(8))
        if number(9) > allocated {
            report.problems.append("""
                destinations: a last successful stream ordering of \(number(9)) is beyond the highest handed out, \
                \(allocated); PDUs accepted later would be skipped
                """)
        }

        report.problems += try database.statement("""
            SELECT s.set_id, s.member_count, count(m.destination)
            FROM destination_sets AS s LEFT JOIN destination_set_members AS m ON m.set_id = s.set_id
            GROUP BY s.set_id HAVING s.member_count != count(m.destination)
            """).rows { row in
            "destination_sets: set \(row.int64(at: 0)) says \(row.int64(at: 1)) members and has \(row.int64(at: 2))"
        }
        let hashedSets = try database.statement("""
            SELECT set_id, members_hash FROM destination_sets WHERE members_hash IS NOT NULL
            """).rows { ($0.int64(at: 0), $0.blob(at: 1)) }
        let members = try database.statement("""
            SELECT destination FROM destination_set_members WHERE set_id = ?1 ORDER BY destination
            """)
        for (setID, hash) in hashedSets {
            try members.bind(setID, at: 1)
            let names = try members.rows { $0.text(at: 0) }
            if OutboxStore.membersHash(names) != hash {
                report.problems.append("destination_sets: set \(setID)'s members do not match its hash; a PDU for those servers would be sent to others")
            }
        }
        report.problems += try database.statement("""
            SELECT destination, retry_interval_ms, failure_count FROM destinations
            WHERE retry_interval_ms < 0 OR failure_count < 0 OR (retry_interval_ms > 0 AND retry_last_ts IS NULL)
            """).rows { row in
            "destinations: \(row.text(at: 0)) has retry interval \(row.int64(at: 1)) ms and \(row.int64(at: 2)) failures"
        }
        return report
    }
}
