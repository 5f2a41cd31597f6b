import Logging
import NIOCore
import NIOPosix
import Outbox

/// The replication endpoint: the seeds' line protocol over TCP or a unix socket, serving the `federation` and
/// `destinations` streams from the Outbox to followers (a homeserver, `southbridge tail`, a script).
///
/// Live rows come from the Outbox's commit and destination-change observers, in commit order, through one task
/// that hands them to the `ReplicationHub`; history is read page by page on a thread of its own through an
/// `OutboxReader`, so neither ingest nor delivery ever waits for a follower. `run()` owns every task of the
/// endpoint; `stop()` tells each follower `ERROR server stopping` and ends it.
public final class ReplicationServer: Sendable {
    public struct Settings: Sendable {
        public var serverName: String
        /// Followers must send `AUTH <secret>` first when set.
        public var secret: [UInt8]?
        public var maxConnections: Int
        /// A `PING` goes out when nothing was sent for this long; a follower that pinged is closed after five
        /// times this without a line.
        public var pingIntervalMS: Int64
        /// Lines and bytes queued for one follower before it is disconnected with `ERROR Failed to keep up`.
        public var maxBufferedCommands: Int
        public var maxBufferedBytes: Int
        /// Rows read from the Outbox at a time for a follower's history.
        public var historyPageRows: Int

        public init(serverName: String, secret: [UInt8]?, maxConnections: Int, pingIntervalMS: Int64 = 5_000,
                    maxBufferedCommands: Int = 4_096, maxBufferedBytes: Int = 1 << 20, historyPageRows: Int = 256) {
            self.serverName = serverName
            self.secret = secret
            self.maxConnections = maxConnections
            self.pingIntervalMS = pingIntervalMS
            self.maxBufferedCommands = maxBufferedCommands
            self.maxBufferedBytes = maxBufferedBytes
            self.historyPageRows = historyPageRows
        }
    }

    /// What a connection asks of `run()`.
    enum Request: Sendable {
        case replicate(ReplicationConnection, ReplicationStream, ReplicationToken)
        case remoteServerUp(String, from: ReplicationConnection)
    }

    private enum Feed: Sendable {
        case commit(OutboxCommit)
        case destinationChange(DestinationChange)
    }

    private let channel: any Channel
    /// The TCP port bound (the one the kernel chose when asked for port 0); nil for a unix socket.
    public let boundPort: Int?
    private let settings: Settings
    private let hub: ReplicationHub
    private let counters: ReplicationCounters
    private let reader: OutboxReader
    /// The Outbox the reader reads: asked to commit rows the reader cannot see yet before history reaches them.
    private let outbox: Outbox
    private let readerThread: NIOThreadPool
    private let feed: (stream: AsyncStream<Feed>, continuation: AsyncStream<Feed>.Continuation)
    private let requests: (stream: AsyncStream<Request>, continuation: AsyncStream<Request>.Continuation)
    private let wake: @Sendable (String) async -> Void
    private let logger: Logger

    private init(channel: any Channel, boundPort: Int?, settings: Settings, hub: ReplicationHub, counters: ReplicationCounters,
                 reader: OutboxReader, outbox: Outbox, readerThread: NIOThreadPool,
                 feed: (stream: AsyncStream<Feed>, continuation: AsyncStream<Feed>.Continuation),
                 requests: (stream: AsyncStream<Request>, continuation: AsyncStream<Request>.Continuation),
                 wake: @escaping @Sendable (String) async -> Void, logger: Logger) {
        self.channel = channel
        self.boundPort = boundPort
        self.settings = settings
        self.hub = hub
        self.counters = counters
        self.reader = reader
        self.outbox = outbox
        self.readerThread = readerThread
        self.feed = feed
        self.requests = requests
        self.wake = wake
        self.logger = logger
    }

    /// Listens on `host:port`, or on the unix socket `unixPath` when given, and starts following `outbox`.
    ///
    /// - Parameter wake: what `REMOTE_SERVER_UP <server>` calls: the sender's one entry point that clears the
    ///   destination's backoff and tries it now.
    public static func bind(host: String = "127.0.0.1", port: Int = 0, unixPath: String? = nil, settings: Settings,
                            outbox: Outbox, wake: @escaping @Sendable (String) async -> Void,
                            group: any EventLoopGroup, logger: Logger) async throws -> ReplicationServer {
        let reader = try OutboxReader(path: outbox.path)
        let feed = AsyncStream.makeStream(of: Feed.self)
        let requests = AsyncStream.makeStream(of: Request.self)
        // Observed first, then the positions read: a commit in between is skipped by the hub as already counted.
        outbox.observeCommits { feed.continuation.yield(.commit($0)) }
        outbox.observeDestinationChanges { feed.continuation.yield(.destinationChange($0)) }
        let hub = ReplicationHub(positions: [.federation: outbox.maxStreamOrdering,
                                             .destinations: outbox.maxDestinationChangeID],
                                 maxConnections: settings.maxConnections)
        let counters = ReplicationCounters()
        let shared = ReplicationHandler.Context(
            serverName: settings.serverName, secret: settings.secret, pingIntervalMS: settings.pingIntervalMS,
            limits: ReplicationConnection.Limits(maxCommands: settings.maxBufferedCommands, maxBytes: settings.maxBufferedBytes),
            hub: hub, counters: counters, requests: { requests.continuation.yield($0) }, logger: logger)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // Small kernel and channel buffers: a follower that stops reading shows up in its own queue, soon.
            .childChannelOption(.socketOption(.so_sndbuf), value: 65_536)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 32 * 1024, high: 64 * 1024))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ReplicationHandler(shared))
                }
            }
        let readerThread = NIOThreadPool(numberOfThreads: 1)
        readerThread.start()
        let channel: any Channel
        do {
            if let unixPath {
                channel = try await bootstrap.bind(unixDomainSocketPath: unixPath, cleanupExistingSocketFile: true).get()
            } else {
                channel = try await bootstrap.bind(host: host, port: port).get()
            }
        } catch {
            reader.close()
            try? await readerThread.shutdownGracefully()
            throw error
        }
        return ReplicationServer(
            channel: channel, boundPort: unixPath == nil ? channel.localAddress?.port ?? port : nil, settings: settings,
            hub: hub, counters: counters, reader: reader, outbox: outbox, readerThread: readerThread, feed: feed,
            requests: requests, wake: wake, logger: logger)
    }

    public var metrics: ReplicationMetrics {
        var metrics = counters.snapshot
        let connections = hub.connections
        metrics.clientsConnected = connections.count
        metrics.rowsBuffered = connections.reduce(0) { $0 + $1.queuedCount }
        return metrics
    }

    /// Serves until `stop()`.
    public func run() async {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.followOutbox() }
            for await request in requests.stream {
                switch request {
                case .replicate(let connection, let stream, let token):
                    group.addTask { await self.subscribe(connection, stream, from: token) }
                case .remoteServerUp(let server, let sender):
                    group.addTask {
                        await self.wake(server)
                        self.hub.broadcast(.remoteServerUp(server), except: sender)
                    }
                }
            }
        }
        reader.close()
        try? await readerThread.shutdownGracefully()
    }

    /// Stops accepting followers, tells each connected one `ERROR server stopping`, and ends `run()`.
    public func stop() async {
        try? await channel.close()
        for connection in hub.connections {
            connection.close(withError: "server stopping", reason: "server_stopping")
        }
        feed.continuation.finish()
        requests.continuation.finish()
    }

    private func followOutbox() async {
        for await item in feed.stream {
            switch item {
            case .commit(let commit):
                hub.publish(.federation, ReplicationRows.federationRows(of: commit).map { ($0.streamOrdering, ReplicationRows.json($0)) })
            case .destinationChange(let change):
                hub.publish(.destinations, [(change.changeID, ReplicationRows.json(change))])
            }
        }
    }

    /// Sends `stream`'s rows after `token` page by page, as the follower takes them, then `POSITION`, then makes
    /// it live; rows committed meanwhile are read too, until the history reaches the stream's position.
    private func subscribe(_ connection: ReplicationConnection, _ stream: ReplicationStream, from token: ReplicationToken) async {
        let start = hub.startSubscription(connection, stream, from: token)
        guard case .history(var after, var upTo, let generation) = start else {
            if case .tokenAhead(let position) = start {
                connection.enqueueLive([.error(
                    "REPLICATE \(stream) \(token): the token is ahead of the stream's position \(position); this is another outbox, start again from NOW or 0")])
            }
            return
        }
        do {
            if stream == .destinations, try await changesWereDropped(after: after, upTo: upTo) {
                try await sendSnapshot(to: connection, token: upTo, generation: generation)
                after = upTo
            }
            while true {
                while after < upTo {
                    await connection.waitForRoom()
                    guard !connection.isClosed, hub.isCurrent(connection, stream, generation: generation) else { return }
                    let page = try await readPage(stream, after: after, upTo: upTo)
                    guard let last = page.last else { break }
                    connection.enqueueHistory(page.map { .rdata(stream, token: $0.token, row: $0.row) })
                    after = last.token
                }
                guard let moved = hub.finishHistory(connection, stream, generation: generation, sentUpTo: upTo) else { return }
                (after, upTo) = (upTo, moved)
            }
        } catch {
            hub.abandon(connection, stream, generation: generation)
            connection.enqueueLive([.error("REPLICATE \(stream) \(token): the outbox could not be read: \(error)")])
            logger.error("replication history could not be read", metadata: ["stream": "\(stream)", "error": "\(error)"])
        }
    }

    private func readPage(_ stream: ReplicationStream, after: Int64, upTo: Int64) async throws -> [(token: Int64, row: [UInt8])] {
        // Rows of ingest rounds acknowledged through the PDU log are committed to SQLite, where the reader sees
        // them, within two seconds; history that reaches them has them committed now.
        if stream == .federation, upTo > outbox.indexedStreamOrdering {
            try await outbox.flush()
        }
        let (reader, limit) = (self.reader, settings.historyPageRows)
        return try await readerThread.runIfActive {
            switch stream {
            case .federation:
                try reader.federationRows(after: after, upTo: upTo, limit: limit).map { ($0.streamOrdering, ReplicationRows.json($0)) }
            case .destinations:
                try reader.destinationChanges(after: after, upTo: upTo, limit: limit).map { ($0.changeID, ReplicationRows.json($0)) }
            }
        }
    }

    /// Whether changes after `after` are no longer kept, so the follower needs a snapshot.
    private func changesWereDropped(after: Int64, upTo: Int64) async throws -> Bool {
        guard after < upTo else { return false }
        let reader = self.reader
        let oldest = try await readerThread.runIfActive { try reader.oldestDestinationChangeID() }
        return oldest.map { $0 > after + 1 } ?? true
    }

    /// Every destination as stored now, all under `token`: `batch` for each row but the last.
    private func sendSnapshot(to connection: ReplicationConnection, token: Int64, generation: Int) async throws {
        let (reader, limit) = (self.reader, settings.historyPageRows)
        var after = ""
        // One row read ahead, so the last row of the snapshot is known when it is sent.
        var held: [UInt8]?
        while true {
            await connection.waitForRoom()
            guard !connection.isClosed, hub.isCurrent(connection, .destinations, generation: generation) else { return }
            let records = try await readerThread.runIfActive { [after] in try reader.destinations(after: after, limit: limit) }
            guard let last = records.last else { break }
            var page: [ServerCommand] = []
            for record in records {
                if let held { page.append(.rdata(.destinations, token: nil, row: held)) }
                held = ReplicationRows.json(snapshotOf: record)
            }
            connection.enqueueHistory(page)
            after = last.name
        }
        if let held { connection.enqueueHistory([.rdata(.destinations, token: token, row: held)]) }
    }
}
