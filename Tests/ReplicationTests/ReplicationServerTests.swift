import Logging
import NIOPosix
import Outbox
import Testing
@testable import Replication

#if canImport(Glibc)
import Glibc
#endif

/// A real Outbox in a temporary directory and a real `ReplicationServer` over loopback TCP, for what the daemon
/// cannot be brought to quickly: more destination changes than are kept.
final class ReplicationServerFixture: Sendable {
    let directory: String
    let outbox: Outbox
    let server: ReplicationServer
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let running: Task<Void, Never>

    init(limits: OutboxLimits) async throws {
        var template = Array("/tmp/southbridge-replication-XXXXXX".utf8CString)
        _ = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        directory = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let logger = Logger(label: "replication.tests") { _ in SwiftLogNoOpLogHandler() }
        outbox = try Outbox(path: directory + "/outbox.db", logger: logger, limits: limits)
        server = try await ReplicationServer.bind(
            settings: .init(serverName: "hs.example", secret: nil, maxConnections: 4), outbox: outbox, wake: { _ in },
            group: group, logger: logger)
        running = Task { [server] in await server.run() }
    }

    func client() async throws -> ReplicationClient {
        try await ReplicationClient.connect(port: server.boundPort!, group: group)
    }

    func tearDown() async {
        await server.stop()
        await running.value
        outbox.close()
        try? await group.shutdownGracefully()
        for name in ["outbox.db", "outbox.db-wal", "outbox.db-shm"] { unlink(directory + "/" + name) }
        rmdir(directory)
    }
}

@Suite struct ReplicationServerTests {
    @Test("a destinations token older than the changes kept gets a snapshot, batched under one token")
    func snapshotWhenChangesWereDropped() async throws {
        var limits = OutboxLimits()
        limits.maxDestinationChangesKept = 2
        let fixture = try await ReplicationServerFixture(limits: limits)
        do {
            _ = try await fixture.outbox.accept(IngestBatch(txnID: "t", pdus: [IncomingPDU(
                roomID: "!r:hs.example", eventID: "$e", canonicalJSON: Array("{}".utf8),
                destinations: ["a.example", "b.example", "c.example"])]))
            try await fixture.outbox.recordFailure(destination: "b.example", retryLastTS: 1, retryIntervalMS: 700)
            for (name, state) in [("a.example", "up"), ("b.example", "backoff"), ("c.example", "up"), ("a.example", "caught_up")] {
                try await fixture.outbox.recordDestinationChange(destination: name, state: state, retryIntervalMS: nil,
                                                                 failureCount: nil, lastSuccessfulStreamOrdering: 0)
            }
            let follower = try await fixture.client()
            #expect(try await follower.nextLine() == "SERVER hs.example")
            _ = try await follower.nextLine()
            try await follower.send("REPLICATE destinations 1")
            #expect(try await follower.nextLine() == #"RDATA destinations batch {"destination":"a.example","failure_count":0,"last_successful_stream_ordering":0,"retry_interval_ms":0,"state":"up"}"#)
            #expect(try await follower.nextLine() == #"RDATA destinations batch {"destination":"b.example","failure_count":1,"last_successful_stream_ordering":0,"retry_interval_ms":700,"state":"backoff"}"#)
            #expect(try await follower.nextLine() == #"RDATA destinations 4 {"destination":"c.example","failure_count":0,"last_successful_stream_ordering":0,"retry_interval_ms":0,"state":"up"}"#)
            #expect(try await follower.nextLine() == "POSITION destinations 4")
            // A token still covered by what is kept gets the changes themselves.
            try await follower.send("REPLICATE destinations 2")
            #expect(try await follower.nextLine() == #"RDATA destinations 3 {"destination":"c.example","failure_count":0,"last_successful_stream_ordering":0,"retry_interval_ms":0,"state":"up"}"#)
            #expect(try await follower.nextLine() == #"RDATA destinations 4 {"destination":"a.example","failure_count":0,"last_successful_stream_ordering":0,"retry_interval_ms":0,"state":"caught_up"}"#)
            #expect(try await follower.nextLine() == "POSITION destinations 4")
            await follower.close()
        } catch {
            await fixture.tearDown()
            throw error
        }
        await fixture.tearDown()
    }

    @Test("a long history arrives in order through a bounded queue")
    func longHistoryInBoundedMemory() async throws {
        let fixture = try await ReplicationServerFixture(limits: OutboxLimits())
        do {
            // Twice what the follower's queue may hold, so that reading it must wait for the follower.
            let rows = 8_000
            for batch in 0..<(rows / 1000) {
                _ = try await fixture.outbox.accept(IngestBatch(txnID: "b\(batch)", pdus: (0..<1000).map { index in
                    IncomingPDU(roomID: "!r:hs.example", eventID: nil, canonicalJSON: Array("{\"n\":\(batch * 1000 + index)}".utf8),
                                destinations: ["a.example"])
                }))
            }
            let follower = try await fixture.client()
            _ = try await follower.nextLine()
            _ = try await follower.nextLine()
            try await follower.send("REPLICATE federation 0")
            var peakBuffered = 0
            for token in 1...rows {
                #expect(try await follower.nextLine() == "RDATA federation \(token) {\"destinations\":1,\"kind\":\"pdu\",\"room_id\":\"!r:hs.example\"}")
                if token % 1000 == 0 { peakBuffered = max(peakBuffered, fixture.server.metrics.rowsBuffered) }
            }
            #expect(try await follower.nextLine() == "POSITION federation \(rows)")
            #expect(peakBuffered <= 4_096 / 4 + 256, "the server's queue for the follower stayed within a page of its history room")
            await follower.close()
        } catch {
            await fixture.tearDown()
            throw error
        }
        await fixture.tearDown()
    }
}
