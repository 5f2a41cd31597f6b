/// The Outbox's bounds: what one batch may hold, how writes are grouped, and how much may wait for the writer.
///
/// Defaults follow the Matrix limits (65 536-byte PDUs, 255-byte identifiers) and a small SD card's taste for
/// few large writes. The daemon's `Configuration` fills this in; tests shrink it.
public struct OutboxLimits: Sendable, Equatable {
    /// The share of `maxBytes` pruning brings the file back under once it is past it, in percent: room for
    /// a few minutes of ingest before the next drop.
    public static let pruneTargetPercent: Int64 = 90

    /// Largest canonical JSON accepted for one PDU.
    public var maxPDUBytes: Int
    /// Most PDUs in one ingest batch.
    public var maxPDUsPerBatch: Int
    /// Most canonical JSON bytes in one ingest batch.
    public var maxBatchBytes: Int
    /// Longest txn id, room id, event id or destination, in UTF-8 bytes.
    public var maxIdentifierBytes: Int
    /// Most writes (ingest batches and destination updates) committed in one SQLite transaction.
    public var maxGroupWrites: Int
    /// `storage.commit_window_ms`: how long a write waits for others to share its commit (one fsync for all) when
    /// nothing else is queued; 0 commits at once. Fewer, larger writes to the card for that much more latency.
    public var commitWindowMS: Int
    /// SQLite's `synchronous` for the file. `full` (the default) fsyncs the WAL at every commit, so an acknowledged
    /// unit survives a power cut; `normal` only at checkpoints, so it survives a crash of southbridge but not of the
    /// machine. Not a configuration key: `southbridge-benchmark storage-pragmas` measures what `normal` would save.
    public var synchronous: Synchronous
    /// SQLite's `wal_autocheckpoint`, in pages of the WAL. SQLite's default of 1,000 (1 MiB with 1 KiB pages): larger
    /// saved 4 % of the bytes written per PDU, smaller cost up to 50 % more (`storage-pragmas`, BENCHMARKS.md).
    public var walAutocheckpointPages: Int

    public enum Synchronous: String, Sendable, Equatable, CaseIterable {
        case full = "FULL"
        case normal = "NORMAL"
    }

    /// Most canonical JSON bytes committed in one SQLite transaction (a larger single batch is committed alone).
    public var maxGroupBytes: Int
    /// Most canonical JSON bytes waiting for the writer; beyond it `accept` fails with `overloaded`.
    public var maxQueuedBytes: Int
    /// Rows one prune step may delete or scan, so pruning never holds the writer for long.
    public var pruneStepRows: Int
    /// How long SQLite waits for a lock held by another connection (e.g. an operator's `sqlite3` shell).
    public var busyTimeoutMS: Int32
    /// `storage.max_bytes`: most bytes of pages in use in the file. From nine tenths of it, pruning drops the oldest
    /// units only backing-off destinations need; at it, `accept` refuses with `storageLimitReached`.
    public var maxBytes: Int64
    /// Most txn ids of requests with nothing to store (typing, presence and receipts only) remembered with their
    /// answers, so that a repeat gets the first answer; the oldest is forgotten first. 4,096 covers minutes of a
    /// busy server's typing notifications, longer than a homeserver retries one request, in about 1 MiB at worst.
    public var maxEphemeralTxnIDs: Int
    /// Destination changes kept for the replication endpoint's `destinations` stream; a follower whose token is older
    /// than the oldest kept gets a snapshot of every destination instead. 10,000 rows are about 1 MiB.
    public var maxDestinationChangesKept: Int
    /// The longest an acknowledged ingest round waits in the PDU log for the SQLite commit that indexes it,
    /// in ms; rounds with other writes, persistent EDUs or new destination sets commit at once. Each commit
    /// rewrites a few pages whatever it holds: 2 s instead of 1 s took a live 500-server room at one PDU a
    /// second from 10 to 7 KiB written per PDU; 5 s to 4.5 KiB, but the larger commits of unreachable
    /// destinations' rows then held acknowledgements up (p99 12–22 ms against 3 ms; `storage-writes`).
    public var indexCommitIntervalMS: Int = 2_000
    /// The longest a delivered mark waits before the `destinations` rows are written, in ms. Each write of them
    /// rewrites a page per few dozen destinations that moved, so every second it cost a 500-server room at one
    /// PDU a second about 16 KiB; a crash before it sends those units again (the rows still held for others).
    public var progressSaveIntervalMS: Int = 30_000
    /// How long a destination set no PDU refers to any more is kept after it was last used, in ms. A set is a row
    /// per server: deleted and made again for each message of a quiet 5,000-server room whose servers share other
    /// rooms, it wrote about 500 KiB to the WAL each way (measured on SQLite alone, 1 KiB pages).
    public var unusedDestinationSetGraceMS: Int = 3_600_000

    public init(
        maxPDUBytes: Int = 65_536,
        maxPDUsPerBatch: Int = 1_000,
        maxBatchBytes: Int = 8 << 20,
        maxIdentifierBytes: Int = 255,
        maxGroupWrites: Int = 256,
        commitWindowMS: Int = 0,
        synchronous: Synchronous = .full,
        walAutocheckpointPages: Int = 1_000,
        maxGroupBytes: Int = 8 << 20,
        maxQueuedBytes: Int = 64 << 20,
        pruneStepRows: Int = 1_000,
        busyTimeoutMS: Int32 = 5_000,
        maxBytes: Int64 = 1 << 30,
        maxEphemeralTxnIDs: Int = 4_096,
        maxDestinationChangesKept: Int = 10_000
    ) {
        self.maxPDUBytes = maxPDUBytes
        self.maxPDUsPerBatch = maxPDUsPerBatch
        self.maxBatchBytes = maxBatchBytes
        self.maxIdentifierBytes = maxIdentifierBytes
        self.maxGroupWrites = maxGroupWrites
        self.commitWindowMS = commitWindowMS
        self.synchronous = synchronous
        self.walAutocheckpointPages = walAutocheckpointPages
        self.maxGroupBytes = maxGroupBytes
        self.maxQueuedBytes = maxQueuedBytes
        self.pruneStepRows = pruneStepRows
        self.busyTimeoutMS = busyTimeoutMS
        self.maxBytes = maxBytes
        self.maxEphemeralTxnIDs = maxEphemeralTxnIDs
        self.maxDestinationChangesKept = maxDestinationChangesKept
    }
}
