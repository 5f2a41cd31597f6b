import Testing
@testable import Outbox

@Suite struct OutboxLifecycleTests {
    @Test func aMissingDirectoryIsReportedWithThePath() async throws {
        try await withTemporaryDirectory { directory in
            let path = "\(directory)/not-there/outbox.db"
            do throws(OutboxError) {
                _ = try Outbox(path: path, logger: silentLogger)
                Issue.record("opened an outbox in a missing directory")
            } catch {
                #expect(error == .missingDirectory(path: path, directory: "\(directory)/not-there"))
                #expect(error.description.contains(path))
            }
        }
    }

    @Test func probeAnswersUntilClose() async throws {
        try await withTemporaryDirectory { directory in
            let outbox = try openOutbox(in: directory)
            try await outbox.probe()
            outbox.close()
            outbox.close()
            let closed = OutboxError.closed(path: "\(directory)/outbox.db")
            await #expect(throws: closed) { try await outbox.probe() }
            await #expect(throws: closed) {
                try await outbox.accept(IngestBatch(txnID: "t", pdus: []))
            }
        }
    }

    @Test func closeFinishesWorkAlreadyQueued() async throws {
        try await withTemporaryDirectory { directory in
            let outbox = try openOutbox(in: directory)
            let accepts = Task {
                try await withThrowingTaskGroup(of: Bool.self) { group in
                    for serial in 1...50 {
                        group.addTask {
                            do throws(OutboxError) {
                                _ = try await outbox.accept(IngestBatch(txnID: "t\(serial)", pdus: [
                                    pdu(room: "!r:hs.example", serial: serial, destinations: ["a.example"]),
                                ]))
                                return true
                            } catch {
                                guard case .closed = error else { throw error }
                                return false
                            }
                        }
                    }
                    var acknowledged = 0
                    for try await accepted in group where accepted {
                        acknowledged += 1
                    }
                    return acknowledged
                }
            }
            // Close once the first group is on disk, while the rest are still arriving.
            let deadline = ContinuousClock.now + .seconds(10)
            while outbox.committedTransactionCount == 0, ContinuousClock.now < deadline {
                await Task.yield()
            }
            outbox.close()
            let acknowledged = try await accepts.value
            let reopened = try openOutbox(in: directory)
            defer { reopened.close() }
            // Every acknowledged accept is on disk; ones refused as closed stored nothing.
            #expect(try await reopened.rowCounts().pdus == acknowledged)
        }
    }

    @Test func aSchemaFromANewerVersionIsRefused() async throws {
        try await withTemporaryDirectory { directory in
            let path = "\(directory)/outbox.db"
            try openOutbox(in: directory).close()
            let database = try SQLiteDatabase(path: path)
            try database.execute("UPDATE schema_version SET version = 99")
            database.close()
            #expect(throws: OutboxError.schemaTooNew(path: path, found: 99, supported: OutboxSchema.latestVersion)) {
                _ = try Outbox(path: path, logger: silentLogger)
            }
        }
    }

    @Test func openingConfiguresWALFullSyncAndForeignKeys() async throws {
        try await withTemporaryDirectory { directory in
            let path = "\(directory)/outbox.db"
            let store = try OutboxStore.open(path: path, limits: OutboxLimits(), now: { 0 })
            defer { store.close() }
            let pragma = { (name: String) throws -> Int64? in
                try store.database.statement("PRAGMA \(name)").firstRow { $0.int64(at: 0) }
            }
            #expect(try store.database.statement("PRAGMA journal_mode").firstRow { $0.text(at: 0) } == "wal")
            #expect(try pragma("synchronous") == 2)
            #expect(try pragma("foreign_keys") == 1)
            #expect(try store.database.statement("SELECT version FROM schema_version").rows { $0.int64(at: 0) }
                == [OutboxSchema.latestVersion])
        }
    }
}
