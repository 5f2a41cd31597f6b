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
        // A PDU refers to the set of destinations it is for instead of owning a row per destination, so accepting it
        // writes the same few pages whatever the size of its room: a room's server list is stored once, as a set
        // identified by the SHA-256 of its sorted member names, and reused by every PDU for the same servers.
        // What a destination still needs is derived from its last successful stream ordering, and catch-up's newest
        // PDU per room from the PDUs themselves. Existing PDUs each get a set of the destinations they were still
        // owed (no hash: never reused, pruned once delivered). Without AUTOINCREMENT, `outbox_meta` keeps the
        // highest stream ordering ever handed out across pruning. `ingest_transactions` loses its rowid: one
        // B-tree keyed by txn id instead of a table and an index.
        Migration(version: 3, sql: """
            CREATE TABLE outbox_meta (name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) WITHOUT ROWID;
            INSERT INTO outbox_meta (name, value) VALUES ('allocated_stream_ordering', max(
                coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'pdus'), 0),
                coalesce((SELECT max(stream_ordering) FROM pdus), 0),
                coalesce((SELECT max(stream_ordering) FROM ingest_transactions), 0)));
            CREATE TABLE destination_sets (
                set_id INTEGER PRIMARY KEY,
                members_hash BLOB UNIQUE,
                member_count INTEGER NOT NULL
            );
            CREATE TABLE destination_set_members (
                destination TEXT NOT NULL REFERENCES destinations (destination),
                set_id INTEGER NOT NULL REFERENCES destination_sets (set_id),
                PRIMARY KEY (destination, set_id)
            ) WITHOUT ROWID;
            CREATE INDEX destination_set_members_set_id ON destination_set_members (set_id);
            INSERT INTO destination_sets (set_id, members_hash, member_count)
                SELECT stream_ordering, NULL, count(*) FROM pdu_destinations GROUP BY stream_ordering;
            INSERT INTO destination_set_members (destination, set_id)
                SELECT destination, stream_ordering FROM pdu_destinations;
            CREATE TABLE pdus_v3 (
                stream_ordering INTEGER PRIMARY KEY,
                room_id TEXT NOT NULL,
                event_id TEXT,
                destination_set INTEGER REFERENCES destination_sets (set_id),
                canonical_json BLOB NOT NULL,
                received_ts INTEGER NOT NULL
            );
            INSERT INTO pdus_v3 (stream_ordering, room_id, event_id, destination_set, canonical_json, received_ts)
                SELECT p.stream_ordering, p.room_id, p.event_id, s.set_id, p.canonical_json, p.received_ts
                FROM pdus AS p LEFT JOIN destination_sets AS s ON s.set_id = p.stream_ordering;
            DROP TABLE destination_rooms;
            DROP TABLE pdu_destinations;
            DROP TABLE pdus;
            ALTER TABLE pdus_v3 RENAME TO pdus;
            CREATE INDEX pdus_destination_set ON pdus (destination_set, stream_ordering);
            CREATE TABLE ingest_transactions_v3 (
                txn_id TEXT PRIMARY KEY NOT NULL,
                stream_ordering INTEGER NOT NULL,
                pdu_count INTEGER NOT NULL,
                received_ts INTEGER NOT NULL
            ) WITHOUT ROWID;
            INSERT INTO ingest_transactions_v3 SELECT txn_id, stream_ordering, pdu_count, received_ts FROM ingest_transactions;
            DROP TABLE ingest_transactions;
            ALTER TABLE ingest_transactions_v3 RENAME TO ingest_transactions;
            CREATE INDEX ingest_transactions_received_ts ON ingest_transactions (received_ts);
            """),
        // The replication endpoint's streams. A persistent EDU takes a stream ordering after the PDUs of its batch,
        // so the `federation` stream orders every stored unit by one token; EDUs stored before have none and are not
        // replayed. Its destination count is kept because `edu_destinations` shrinks as it is delivered.
        // `destination_changes` is the `destinations` stream: the sender's state changes, the newest
        // `OutboxLimits.maxDestinationChangesKept` of them, under ids that AUTOINCREMENT never hands out twice.
        Migration(version: 4, sql: """
            ALTER TABLE edus ADD COLUMN stream_ordering INTEGER;
            ALTER TABLE edus ADD COLUMN destination_count INTEGER NOT NULL DEFAULT 0;
            CREATE INDEX edus_stream_ordering ON edus (stream_ordering) WHERE stream_ordering IS NOT NULL;
            CREATE TABLE destination_changes (
                change_id INTEGER PRIMARY KEY AUTOINCREMENT,
                destination TEXT NOT NULL,
                state TEXT NOT NULL,
                retry_interval_ms INTEGER NOT NULL,
                failure_count INTEGER NOT NULL,
                last_successful_stream_ordering INTEGER NOT NULL,
                changed_ts INTEGER NOT NULL
            );
            """),
        // PDU bodies move to the log (`SegmentLog`): a row accepted from now on holds an empty `canonical_json`
        // and where its body is in the log; rows stored before keep their body and no position.
        // `indexed_log_position` is the end of the last log record whose rows this file holds: what an open
        // finds after it in the log was acknowledged and is indexed again. The partial index finds the oldest
        // body still needed, below which segments are given back, without reading rows stored before.
        Migration(version: 5, sql: """
            ALTER TABLE pdus ADD COLUMN log_position INTEGER;
            ALTER TABLE pdus ADD COLUMN log_length INTEGER;
            CREATE INDEX pdus_log_position ON pdus (log_position) WHERE log_position IS NOT NULL;
            INSERT INTO outbox_meta (name, value) VALUES ('indexed_log_position', 0);
            """),
        // Txn ids by the day they arrived: keyed by txn id with an index by time, each commit rewrote the pages
        // of both b-trees where its ids fell, about half of what a second of ingest wrote to SQLite. Under the
        // day (ms since the epoch / 86,400,000) a day's ids go to one end of one b-tree and pruning deletes whole
        // days from the other; a lookup probes each day present, of which retention keeps two or three.
        Migration(version: 6, sql: """
            CREATE TABLE ingest_transactions_v6 (
                received_day INTEGER NOT NULL,
                txn_id TEXT NOT NULL,
                stream_ordering INTEGER NOT NULL,
                pdu_count INTEGER NOT NULL,
                PRIMARY KEY (received_day, txn_id)
            ) WITHOUT ROWID;
            INSERT INTO ingest_transactions_v6 (received_day, txn_id, stream_ordering, pdu_count)
                SELECT received_ts / 86400000, txn_id, stream_ordering, pdu_count FROM ingest_transactions;
            DROP TABLE ingest_transactions;
            ALTER TABLE ingest_transactions_v6 RENAME TO ingest_transactions;
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
