/// The Outbox's schema as an ordered list of numbered migrations, the only place that creates or alters tables.
///
/// `schema_version` holds one row with the number of the last migration applied. Each migration runs in its own
/// transaction together with the version bump, so a crash leaves the file at one version or the next, never between.
/// Add a migration by appending to `migrations` with the next number; never edit one that has shipped.
enum OutboxSchema {
    struct Migration {
        let version: Int64
        let sql: String
    }

    static let migrations: [Migration] = [
        Migration(version: 1, sql: """
            CREATE TABLE pdus (
                stream_ordering INTEGER PRIMARY KEY AUTOINCREMENT,
                room_id TEXT NOT NULL,
                event_id TEXT,
                canonical_json BLOB NOT NULL,
                received_ts INTEGER NOT NULL
            );
            CREATE TABLE destinations (
                destination TEXT PRIMARY KEY NOT NULL,
                last_successful_stream_ordering INTEGER NOT NULL DEFAULT 0,
                retry_last_ts INTEGER,
                retry_interval_ms INTEGER NOT NULL DEFAULT 0,
                failure_count INTEGER NOT NULL DEFAULT 0
            );
            CREATE TABLE pdu_destinations (
                destination TEXT NOT NULL REFERENCES destinations (destination),
                stream_ordering INTEGER NOT NULL REFERENCES pdus (stream_ordering),
                PRIMARY KEY (destination, stream_ordering)
            ) WITHOUT ROWID;
            CREATE INDEX pdu_destinations_stream_ordering ON pdu_destinations (stream_ordering);
            CREATE TABLE destination_rooms (
                destination TEXT NOT NULL REFERENCES destinations (destination),
                room_id TEXT NOT NULL,
                stream_ordering INTEGER NOT NULL,
                PRIMARY KEY (destination, room_id)
            ) WITHOUT ROWID;
            CREATE TABLE ingest_transactions (
                txn_id TEXT PRIMARY KEY NOT NULL,
                stream_ordering INTEGER NOT NULL,
                pdu_count INTEGER NOT NULL,
                received_ts INTEGER NOT NULL
            );
            CREATE INDEX ingest_transactions_received_ts ON ingest_transactions (received_ts);
            """),
        // Persistent EDUs (to-device, device-list and signing-key updates…): stored once, one row per destination
        // that still needs it. AUTOINCREMENT so an id the sender holds is never handed to another EDU after pruning.
        Migration(version: 2, sql: """
            CREATE TABLE edus (
                edu_id INTEGER PRIMARY KEY AUTOINCREMENT,
                edu_type TEXT NOT NULL,
                canonical_json BLOB NOT NULL,
                received_ts INTEGER NOT NULL
            );
            CREATE TABLE edu_destinations (
                destination TEXT NOT NULL REFERENCES destinations (destination),
                edu_id INTEGER NOT NULL REFERENCES edus (edu_id),
                PRIMARY KEY (destination, edu_id)
            ) WITHOUT ROWID;
            CREATE INDEX edu_destinations_edu_id ON edu_destinations (edu_id);
            """),
    ]

    static var latestVersion: Int64 { migrations.last?.version ?? 0 }

    /// Brings the database up to `latestVersion`, returning the version found before migrating.
    static func migrate(_ database: SQLiteDatabase) throws(OutboxSchemaError) -> Int64 {
        let found: Int64
        do throws(SQLiteError) {
            try database.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            found = try database.statement("SELECT max(version) FROM schema_version").firstRow {
                $0.optionalInt64(at: 0)
            }?.flatMap { $0 } ?? 0
        } catch {
            throw .storage(error)
        }
        guard found <= latestVersion else {
            throw .tooNew(found: found, supported: latestVersion)
        }
        for migration in migrations where migration.version > found {
            do throws(SQLiteError) {
                try database.execute("BEGIN IMMEDIATE")
                do throws(SQLiteError) {
                    try database.execute(migration.sql)
                    try database.execute("DELETE FROM schema_version")
                    let record = try database.statement("INSERT INTO schema_version (version) VALUES (?1)")
                    try record.bind(migration.version, at: 1)
                    try record.run()
                    try database.execute("COMMIT")
                } catch {
                    try? database.execute("ROLLBACK")
                    throw error
                }
            } catch {
                throw .migrationFailed(version: migration.version, error)
            }
        }
        return found
    }
}

/// Why the schema could not be brought up to date.
enum OutboxSchemaError: Error {
    case storage(SQLiteError)
    case tooNew(found: Int64, supported: Int64)
    case migrationFailed(version: Int64, SQLiteError)
}
