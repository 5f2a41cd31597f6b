import CSQLite
import Synchronization
import Testing
@testable import Outbox

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// PDU bodies in the log, their rows committed to SQLite later: what a crash in between leaves, and what
/// retention gives back.
@Suite struct OutboxLogTests {
    /// Copies the Outbox's files as they are on disk now, as a crash would leave them, into `target`.
    private func copyAsACrashLeavesThem(_ directory: String, to target: String) throws {
        #expect(mkdir(target, 0o700) == 0)
        #expect(mkdir(target + "/outbox.db-log", 0o700) == 0)
        var names = ["outbox.db", "outbox.db-wal"]
        if let stream = opendir(directory + "/outbox.db-log") {
            while let entry = readdir(stream) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if name.hasSuffix(".seg") { names.append("outbox.db-log/" + name) }
            }
            closedir(stream)
        }
        for name in names {
            let source = open(directory + "/" + name, O_RDONLY)
            guard source >= 0 else { continue }
            defer { close(source) }
            let copy = open(target + "/" + name, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            defer { close(copy) }
            var buffer = [UInt8](repeating: 0, count: 65_536)
            while true {
                let count = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
                guard count > 0 else { break }
                _ = buffer.withUnsafeBytes { write(copy, $0.baseAddress, count) }
            }
        }
    }

    @Test("PDUs acknowledged through the log only are indexed again by the next open, with their stream orderings")
    func acknowledgedRoundsSurviveACrashBeforeTheirRowsAreCommitted() async throws {
        try await withTemporaryDirectory { directory in
            var limits = OutboxLimits()
            limits.indexCommitIntervalMS = 3_600_000
            let outbox = try openOutbox(in: directory, limits: limits)
            let room = ["a.example", "b.example"]
            // A new destination set is committed with its round; the rounds after it are in the log only.
            let first = try await outbox.accept(IngestBatch(txnID: "t1", pdus: [pdu(room: "!r:hs", serial: 1, destinations: room)]))
            let second = try await outbox.accept(IngestBatch(txnID: "t2", pdus: [pdu(room: "!r:hs", serial: 2, destinations: room)]))
            let third = try await outbox.accept(IngestBatch(txnID: "t3", pdus: [
                pdu(room: "!r:hs", serial: 3, destinations: room), pdu(room: "!s:hs", serial: 4, destinations: room),
            ]))
            #expect(outbox.indexedStreamOrdering == first.streamOrdering)
            #expect(outbox.maxStreamOrdering == third.streamOrdering)

            try copyAsACrashLeavesThem(directory, to: directory + "/crash")
            outbox.close()
            let recovered = try openOutbox(in: directory + "/crash", limits: limits)
            defer { recovered.close() }
            #expect(recovered.maxStreamOrdering == third.streamOrdering)
            #expect(recovered.indexedStreamOrdering == third.streamOrdering)
            let pending = try await recovered.pendingPDUs(for: "b.example", after: 0, limit: 10)
            #expect(pending.map(\.streamOrdering) == first.perPDU + second.perPDU + third.perPDU)
            #expect(pending.map(\.canonicalJSON) == (1...4).map { pdu(room: $0 == 4 ? "!s:hs" : "!r:hs", serial: $0, destinations: room).canonicalJSON })
            let repeated = try await recovered.accept(IngestBatch(txnID: "t2", pdus: [pdu(room: "!r:hs", serial: 2, destinations: room)]))
            #expect(repeated.isReplay && repeated.perPDU == second.perPDU)
            let next = try await recovered.accept(IngestBatch(txnID: "t4", pdus: [pdu(room: "!r:hs", serial: 5, destinations: room)]))
            #expect(next.perPDU == [third.streamOrdering + 1])
        }
    }

    @Test("rows acknowledged through the log alone are committed once their interval passes, with no other write")
    func theIndexIsCommittedWithinItsInterval() async throws {
        try await withTemporaryDirectory { directory in
            var limits = OutboxLimits()
            limits.indexCommitIntervalMS = 50
            let outbox = try openOutbox(in: directory, limits: limits)
            defer { outbox.close() }
            let room = ["a.example"]
            _ = try await outbox.accept(IngestBatch(txnID: "t1", pdus: [pdu(room: "!r:hs", serial: 1, destinations: room)]))
            let second = try await outbox.accept(IngestBatch(txnID: "t2", pdus: [pdu(room: "!r:hs", serial: 2, destinations: room)]))
            let reader = try OutboxReader(path: outbox.path)
            defer { reader.close() }
            let deadline = ContinuousClock.now + .seconds(10)
            while outbox.indexedStreamOrdering < second.streamOrdering, ContinuousClock.now < deadline {
                await Task.yield()
            }
            #expect(outbox.indexedStreamOrdering == second.streamOrdering)
            // Another connection sees the rows now.
            #expect(try reader.federationRows(after: 0, upTo: second.streamOrdering, limit: 10).map(\.streamOrdering) == [1, 2])
        }
    }

    /// Accepts PDU `serial` of the room `!r:hs` for `destinations`, in a request of its own.
    @discardableResult
    private func accept(_ serial: Int, for destinations: [String], into outbox: Outbox) async throws -> IngestReceipt {
        try await outbox.accept(IngestBatch(txnID: "t\(serial)", pdus: [pdu(room: "!r:hs", serial: serial, destinations: destinations)]))
    }

    /// Records that each destination has every PDU up to its mark.
    private func deliver(_ marks: KeyValuePairs<String, Int64>, in outbox: Outbox) async throws {
        try await outbox.recordDeliveries(marks.map { Outbox.Delivery(destination: $0.key, upTo: $0.value, eduIDs: []) })
    }

    /// Commits the open transaction through a write that is not ingest: a backoff for a server in no set.
    private func commitThroughAnotherWrite(_ outbox: Outbox) async throws {
        try await outbox.recordFailure(destination: "c.example", retryLastTS: 1_000, retryIntervalMS: 60_000)
    }

    @Test("the log says when it has no spare segment left, and pruning then keeps a delivered log at a few segments")
    func pruningWhenTheLogNeedsASpareKeepsItSmall() async throws {
        try await withTemporaryDirectory { directory in
            // Segments of 64 KiB; 600 PDUs of 2 KiB are about 23 segments' worth.
            let outbox = try openOutbox(in: directory, limits: OutboxLimits(maxBytes: 1 << 20))
            defer { outbox.close() }
            let signals = Mutex(0)
            outbox.observeLogGrowth { signals.withLock { $0 += 1 } }
            var prunes = 0
            for serial in 0..<600 {
                let receipt = try await outbox.accept(IngestBatch(txnID: "t\(serial)", pdus: [
                    largePDU(room: "!r:hs", serial: serial, destination: "a.example"),
                ]))
                try await outbox.recordDeliveries([Outbox.Delivery(destination: "a.example", upTo: receipt.streamOrdering, eduIDs: [])])
                if signals.withLock({ $0 }) > prunes {
                    prunes = signals.withLock { $0 }
                    _ = try await outbox.prune()
                }
            }
            #expect(prunes >= 10, "each segment taken from the last spare asks for a prune")
            // The segment being written, the one before it, and the spare the last prune kept.
            #expect(try segmentFiles(directory) <= 4)
        }
    }

    @Test("delivery progress is seen by reads at once and committed within its interval, without a commit of its own")
    func progressJoinsTheNextCommit() async throws {
        try await withTemporaryDirectory { directory in
            var limits = OutboxLimits()
            limits.indexCommitIntervalMS = 3_000
            limits.progressSaveIntervalMS = 3_000
            let outbox = try openOutbox(in: directory, limits: limits)
            defer { outbox.close() }
            try await accept(1, for: ["a.example"], into: outbox)
            let reader = try OutboxReader(path: outbox.path)
            defer { reader.close() }
            func committedMark() throws -> Int64? {
                try reader.destinations(after: "", limit: 10).first { $0.name == "a.example" }?.lastSuccessfulStreamOrdering
            }
            #expect(try committedMark() == 0)

            try await outbox.recordDeliveries([Outbox.Delivery(destination: "a.example", upTo: 1, eduIDs: [])])
            #expect(try await outbox.pendingPDUCount(for: "a.example") == 0, "the writer's own reads see the progress at once")
            #expect(try committedMark() == 0, "not committed yet: a crash now would send the PDU again")
            let deadline = ContinuousClock.now + .seconds(10)
            while try committedMark() != 1, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(try committedMark() == 1)
        }
    }

    @Test("rows every destination has before their commit are deleted before it; the rest are committed")
    func rowsDeliveredBeforeTheirCommitNeverReachTheFile() async throws {
        try await withTemporaryDirectory { directory in
            var limits = OutboxLimits()
            limits.indexCommitIntervalMS = 60_000
            let outbox = try openOutbox(in: directory, limits: limits)
            let both = ["a.example", "b.example"]
            // The set {a, b} is new, so this round is committed at once, before anything is delivered.
            try await accept(1, for: both, into: outbox)
            // Two rounds acknowledged through the log alone; both destinations get PDU 2, only a gets PDU 3.
            try await accept(2, for: both, into: outbox)
            try await accept(3, for: both, into: outbox)
            try await deliver(["a.example": 3, "b.example": 2], in: outbox)
            try await commitThroughAnotherWrite(outbox)
            // PDU 1 was committed before its delivery and waits for a prune; PDU 2 never reached the file.
            #expect(try await outbox.rowCounts().pdus == 2)
            #expect(try await outbox.accept(IngestBatch(txnID: "t2", pdus: [])).perPDU == [2])
            outbox.close()

            let reopened = try openOutbox(in: directory, limits: limits)
            defer { reopened.close() }
            #expect(reopened.maxStreamOrdering == 3)
            #expect(try await reopened.pendingPDUs(for: "b.example", after: 2, limit: 10).map(\.streamOrdering) == [3])
            #expect(try await reopened.pendingPDUs(for: "a.example", after: 3, limit: 10).isEmpty)
            #expect(try await reopened.accept(IngestBatch(txnID: "t4", pdus: [
                pdu(room: "!r:hs", serial: 4, destinations: both),
            ])).perPDU == [4])
        }
    }

    @Test("a flush keeps the delivered rows it commits, for the replication history to read")
    func aFlushKeepsDeliveredRows() async throws {
        try await withTemporaryDirectory { directory in
            var limits = OutboxLimits()
            limits.indexCommitIntervalMS = 60_000
            let outbox = try openOutbox(in: directory, limits: limits)
            defer { outbox.close() }
            try await accept(1, for: ["a.example"], into: outbox)
            try await accept(2, for: ["a.example"], into: outbox)
            try await outbox.recordDeliveries([Outbox.Delivery(destination: "a.example", upTo: 2, eduIDs: [])])
            try await outbox.flush()
            let reader = try OutboxReader(path: outbox.path)
            defer { reader.close() }
            #expect(try reader.federationRows(after: 0, upTo: 2, limit: 10).map(\.streamOrdering) == [1, 2])
        }
    }

    @Test("delivered marks are written once per interval; a delivery that ends a backoff at once")
    func deliveredMarksWaitForTheirInterval() async throws {
        try await withTemporaryDirectory { directory in
            var limits = OutboxLimits()
            limits.progressSaveIntervalMS = 60_000
            let outbox = try openOutbox(in: directory, limits: limits)
            let both = ["a.example", "b.example"]
            try await accept(1, for: both, into: outbox)
            try await outbox.recordFailure(destination: "b.example", retryLastTS: 1_000, retryIntervalMS: 60_000)
            try await deliver(["a.example": 1, "b.example": 1], in: outbox)
            try await commitThroughAnotherWrite(outbox)
            let reader = try OutboxReader(path: outbox.path)
            defer { reader.close() }
            func written(_ name: String) throws -> DestinationRecord? {
                try reader.destinations(after: "", limit: 10).first { $0.name == name }
            }
            #expect(try written("a.example")?.lastSuccessfulStreamOrdering == 0, "a's mark waits for its interval")
            #expect(try written("b.example") == DestinationRecord(name: "b.example", lastSuccessfulStreamOrdering: 1),
                    "the end of b's backoff is written with its mark")
            #expect(try await outbox.destination("a.example")?.lastSuccessfulStreamOrdering == 1, "reads see it at once")
            #expect(try await outbox.pendingPDUCount(for: "a.example") == 0)
            #expect(try await outbox.destinationsWithPendingWork().isEmpty)
            // Closing writes what waits.
            outbox.close()
            #expect(try written("a.example")?.lastSuccessfulStreamOrdering == 1)
        }
    }

    @Test("a crash before the marks are written sends those PDUs again, never skips one")
    func aCrashBeforeTheMarksAreWrittenResends() async throws {
        try await withTemporaryDirectory { directory in
            var limits = OutboxLimits()
            limits.progressSaveIntervalMS = 60_000
            let outbox = try openOutbox(in: directory, limits: limits)
            let both = ["a.example", "b.example"]
            try await accept(1, for: both, into: outbox)
            try await accept(2, for: both, into: outbox)
            // a has both, b only the first; PDU 1 is committed already, PDU 2 is not.
            try await deliver(["a.example": 2, "b.example": 1], in: outbox)
            try await commitThroughAnotherWrite(outbox)
            try copyAsACrashLeavesThem(directory, to: directory + "/crash")
            outbox.close()

            let reopened = try openOutbox(in: directory + "/crash", limits: limits)
            defer { reopened.close() }
            // PDU 1 was delivered everywhere only in memory: its row stayed, and both get it again.
            #expect(try await reopened.destination("a.example")?.lastSuccessfulStreamOrdering == 0)
            #expect(try await reopened.pendingPDUs(for: "a.example", after: 0, limit: 10).map(\.streamOrdering) == [1, 2])
            #expect(try await reopened.pendingPDUs(for: "b.example", after: 0, limit: 10).map(\.streamOrdering) == [1, 2])
        }
    }

    @Test("marks written in a transaction or savepoint that is rolled back wait to be written again")
    func marksOfARolledBackWriteWaitAgain() async throws {
        try await withTemporaryDirectory { directory in
            let store = try OutboxStore.open(path: directory + "/outbox.db", limits: OutboxLimits(), now: { 0 })
            defer { store.close() }
            try store.recordDelivered(destination: "a.example", upTo: 3)
            try store.beginImmediate()
            try store.saveProgress()
            #expect(store.unsavedProgress.isEmpty)
            store.rollback()
            #expect(store.unsavedProgress == ["a.example": 3])

            try store.beginImmediate()
            try store.recordDelivered(destination: "b.example", upTo: 2)
            try store.saveProgress()
            try store.recordDelivered(destination: "a.example", upTo: 4)
            #expect(throws: SQLiteError.self) {
                try store.withSavepoint { () throws(SQLiteError) in
                    try store.saveProgress()
                    throw SQLiteError(code: SQLITE_IOERR, message: "a failing write", sql: "test")
                }
            }
            // b's mark, written before the savepoint, stays written; a's, written inside it, waits again.
            #expect(store.unsavedProgress == ["a.example": 4])
            try store.commitIndex()
            #expect(try store.destination("b.example")?.lastSuccessfulStreamOrdering == 2)
            #expect(store.unsavedProgress == ["a.example": 4])
            try store.beginImmediate()
            try store.commitIndex(savingAllProgress: true)
            #expect(store.unsavedProgress.isEmpty)
            #expect(try store.destination("a.example")?.lastSuccessfulStreamOrdering == 4)
        }
    }

    @Test("a round that needed an SQLite commit and never got one is not indexed; log-only rounds after it are")
    func aRoundCutOffBeforeItsCommitIsSkipped() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/outbox.db"
            let store = try OutboxStore.open(path: path, limits: OutboxLimits(), now: { 0 })
            func round(_ batch: IngestBatch) throws -> Bool {
                try store.beginImmediate()
                _ = try store.withSavepoint { () throws(SQLiteError) in try store.accept(batch) }
                return try store.writeRoundToLog()
            }
            // The set {a} is committed with its round.
            #expect(try round(IngestBatch(txnID: "known", pdus: [pdu(room: "!r:hs", serial: 1, destinations: ["a.example"])])))
            try store.commitIndex()
            // A new set's round: its record is on the device, its commit fails (rolled back, never answered).
            #expect(try round(IngestBatch(txnID: "new-set", pdus: [pdu(room: "!r:hs", serial: 2, destinations: ["b.example"])])))
            store.rollback()
            store.reserveStreamOrderings(through: 2)
            // Then a round for the known set, acknowledged through the log alone.
            #expect(try !round(IngestBatch(txnID: "log-only", pdus: [pdu(room: "!r:hs", serial: 3, destinations: ["a.example"])])))
            try copyAsACrashLeavesThem(directory, to: directory + "/crash")
            store.rollback()
            store.close()

            let reopened = try OutboxStore.open(path: directory + "/crash/outbox.db", limits: OutboxLimits(), now: { 0 })
            defer { reopened.close() }
            #expect(reopened.reindexedAtOpen == 1)
            #expect(try reopened.receipt(forTxnID: "new-set") == nil)
            #expect(try reopened.receipt(forTxnID: "log-only")?.perPDU == [3])
            #expect(try reopened.pendingPDUs(for: "a.example", after: 0, limit: 10).map(\.canonicalJSON)
                    == [1, 3].map { pdu(room: "!r:hs", serial: $0, destinations: ["a.example"]).canonicalJSON })
            #expect(try reopened.pendingPDUs(for: "b.example", after: 0, limit: 10).isEmpty)
            #expect(reopened.allocatedStreamOrdering == 3)
        }
    }

    @Test("segments every destination is past are given back once their rows are pruned")
    func prunedBodiesFreeTheirSegments() async throws {
        try await withTemporaryDirectory { directory in
            // 1 MiB of budget: segments of 64 KiB.
            let outbox = try openOutbox(in: directory, limits: OutboxLimits(maxBytes: 1 << 20))
            defer { outbox.close() }
            for serial in 0..<100 {
                _ = try await outbox.accept(IngestBatch(txnID: "t\(serial)", pdus: [
                    largePDU(room: "!r:hs", serial: serial, destination: "a.example"),
                ]))
            }
            let segmentsBefore = try segmentFiles(directory)
            #expect(segmentsBefore >= 4)
            try await outbox.recordDelivered(destination: "a.example", upTo: outbox.maxStreamOrdering)
            _ = try await outbox.prune()
            // The segment being written stays, and two spares are kept for reuse.
            #expect(try segmentFiles(directory) <= 3)
            #expect(try await outbox.rowCounts().pdus == 0)
        }
    }

    @Test("quiet rooms' newest PDUs, kept for a destination catching up, are moved so the segments after them go")
    func quietRoomsBodiesDoNotKeepTheLogsSegments() async throws {
        try await withTemporaryDirectory { directory in
            // Segments of 64 KiB, records of moved bodies of at most 8 KiB: ten quiet rooms' PDUs of 2 KiB each
            // take several records, then about 500 KiB of a busy room's PDUs follow them.
            let outbox = try openOutbox(in: directory, limits: OutboxLimits(maxBytes: 1 << 20))
            func message(_ room: String, _ serial: Int) -> IncomingPDU {
                largePDU(room: room, serial: serial, destination: "dead.example")
            }
            for quiet in 0..<10 {
                _ = try await outbox.accept(IngestBatch(txnID: "quiet\(quiet)", pdus: [message("!quiet\(quiet):hs", 1_000 + quiet)]))
            }
            for serial in 1...200 {
                _ = try await outbox.accept(IngestBatch(txnID: "t\(serial)", pdus: [message("!busy:hs", serial)]))
            }
            #expect(try segmentsInUse(directory) >= 6)
            try await outbox.recordFailure(destination: "dead.example", retryLastTS: 1_000, retryIntervalMS: 7_200_000)
            let owed = try await outbox.catchUpPDUs(for: "dead.example", after: 0, limit: 50)
            #expect(owed.map(\.eventID) == (1_000..<1_010).map { "$\($0):hs" } + ["$200:hs"])

            let policy = RetentionPolicy(catchUpAfterMS: 3_600_000)
            let report = try await outbox.prune(policy)
            #expect(report.rowsDeleted == 199)
            #expect(report.logBodiesMoved == 10, "the quiet rooms' bodies move; the busy room's newest is in the last segment")
            #expect(!report.droppedUnits)
            // The segment being written, and the next one if the moved bodies did not fit in it.
            #expect(try segmentsInUse(directory) <= 2)
            #expect(try await outbox.catchUpPDUs(for: "dead.example", after: 0, limit: 50) == owed)
            _ = try await outbox.prune(policy)
            #expect(try segmentsInUse(directory) <= 2)
            #expect(try await outbox.catchUpPDUs(for: "dead.example", after: 0, limit: 50) == owed)
            let path = outbox.path
            outbox.close()

            #expect(try OutboxCheck.run(path: path).problems == [])
            let reopened = try openOutbox(in: directory, limits: OutboxLimits(maxBytes: 1 << 20))
            defer { reopened.close() }
            #expect(try await reopened.catchUpPDUs(for: "dead.example", after: 0, limit: 50) == owed)
            #expect(try await reopened.rowCounts().pdus == 11, "the moved bodies' records are not indexed again")
        }
    }

    @Test("moved bodies cut off before their commit are read where they were; after it, from their new record")
    func aMoveCutOffBeforeItsCommitLosesNothing() async throws {
        try await withTemporaryDirectory { directory in
            let limits = OutboxLimits(maxBytes: 1 << 20)
            let store = try OutboxStore.open(path: directory + "/outbox.db", limits: limits, now: { 0 })
            func round(_ room: String, _ serial: Int) throws {
                try store.beginImmediate()
                _ = try store.withSavepoint { () throws(SQLiteError) in
                    try store.accept(IngestBatch(txnID: "t\(serial)", pdus: [
                        largePDU(room: room, serial: serial, destination: "a.example"),
                    ]))
                }
                _ = try store.writeRoundToLog()
                try store.commitIndex()
            }
            try round("!quiet:hs", 0)
            for serial in 1...100 { try round("!busy:hs", serial) }
            // What a catch-up would prune: every busy PDU but the newest.
            try store.beginImmediate()
            try store.database.statement("DELETE FROM pdus WHERE room_id = '!busy:hs' AND event_id != '$100:hs'").run()
            try store.commitIndex()
            let owed = try store.pendingPDUs(for: "a.example", after: 0, limit: 10)
            #expect(owed.map(\.eventID) == ["$0:hs", "$100:hs"])

            try store.beginImmediate()
            #expect(try store.withSavepoint { () throws(SQLiteError) in
                try store.relocateSparseLogStart(maxBytes: 64 * 1_024, maxBodies: 100)
            } == 1)
            #expect(try store.writeRoundToLog(), "a record of moved bodies is committed before anything relies on it")
            try copyAsACrashLeavesThem(directory, to: directory + "/crash")
            try store.commitIndex()
            #expect(try store.pendingPDUs(for: "a.example", after: 0, limit: 10) == owed)
            store.close()

            let crashed = try OutboxStore.open(path: directory + "/crash/outbox.db", limits: limits, now: { 0 })
            #expect(crashed.reindexedAtOpen == 0)
            #expect(try crashed.pendingPDUs(for: "a.example", after: 0, limit: 10) == owed)
            crashed.close()
            let reopened = try OutboxStore.open(path: directory + "/outbox.db", limits: limits, now: { 0 })
            defer { reopened.close() }
            #expect(reopened.reindexedAtOpen == 0)
            #expect(try reopened.pendingPDUs(for: "a.example", after: 0, limit: 10) == owed)
            #expect(try OutboxCheck.run(path: directory + "/outbox.db").problems == [])
        }
    }

    @Test("bodies a destination still needs are not moved when they are more than a quarter of what moving frees")
    func denseSegmentsStay() async throws {
        try await withTemporaryDirectory { directory in
            let outbox = try openOutbox(in: directory, limits: OutboxLimits(maxBytes: 1 << 20))
            defer { outbox.close() }
            for serial in 0..<100 {
                _ = try await outbox.accept(IngestBatch(txnID: "t\(serial)", pdus: [
                    largePDU(room: "!r:hs", serial: serial, destination: "slow.example"),
                ]))
            }
            let segments = try segmentsInUse(directory)
            let report = try await outbox.prune(RetentionPolicy(catchUpAfterMS: 3_600_000))
            #expect(report.logBodiesMoved == 0)
            #expect(try segmentsInUse(directory) == segments)
        }
    }

    /// A PDU of about 2 KiB: a few dozen fill a 64 KiB segment.
    private func largePDU(room: String, serial: Int, destination: String) -> IncomingPDU {
        let body = String(repeating: "x", count: 2_000)
        let json = #"{"content":{"body":"\#(body)"},"event_id":"$\#(serial):hs","room_id":"\#(room)"}"#
        return IncomingPDU(roomID: room, eventID: "$\(serial):hs", canonicalJSON: Array(json.utf8), destinations: [destination])
    }

    /// Segment files holding records of this log, spares left out.
    private func segmentsInUse(_ directory: String) throws -> Int {
        try segmentFiles(directory, countingSpares: false)
    }

    /// The log's segment files, spares included unless told.
    private func segmentFiles(_ directory: String, countingSpares: Bool = true) throws -> Int {
        Outbox.files(at: directory + "/outbox.db").filter {
            $0.hasSuffix(".seg") && (countingSpares || !$0.contains("/spare-"))
        }.count
    }
}
