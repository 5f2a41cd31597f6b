import Testing
@testable import Outbox

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

@Suite struct OutboxCheckTests {
    @Test func aSoundFileHasNoProblemsAndSaysWhatItHolds() async throws {
        try await withTemporaryDirectory { directory in
            let outbox = try openOutbox(in: directory)
            _ = try await outbox.accept(IngestBatch(txnID: "t", pdus: [
                pdu(room: "!a:hs.example", serial: 1, destinations: ["x.example", "y.example"]),
            ], edus: [edu(serial: 1, destinations: ["x.example"])]))
            let report = try OutboxCheck.run(path: outbox.path)
            #expect(report.problems == [])
            #expect(report.contents.contains("pdus: 1, in 1 destination sets, for 2 destinations"))
            #expect(report.contents.contains("highest stream ordering handed out: 1"))
            outbox.close()
        }
    }

    @Test func bodiesInThePDULogAreCheckedAndAMissingSegmentIsNamed() async throws {
        try await withTemporaryDirectory { directory in
            let outbox = try openOutbox(in: directory)
            for serial in 1...3 {
                _ = try await outbox.accept(IngestBatch(txnID: "t\(serial)", pdus: [
                    pdu(room: "!a:hs.example", serial: serial, destinations: ["x.example"]),
                ]))
            }
            let path = outbox.path
            outbox.close()
            let sound = try OutboxCheck.run(path: path)
            #expect(sound.problems == [])
            #expect(sound.contents.contains { $0.hasPrefix("pdu log: 3 bodies") }, "\(sound.contents)")
            #expect(unlink(path + "-log/0000000000000000.seg") == 0)
            let report = try OutboxCheck.run(path: path)
            #expect(report.problems.count == 3)
            #expect(report.problems.first?.hasPrefix("pdus: 1's body is in the log") == true, "\(report.problems)")
        }
    }

    @Test func brokenInvariantsAreEachNamed() async throws {
        try await withTemporaryDirectory { directory in
            let outbox = try openOutbox(in: directory)
            _ = try await outbox.accept(IngestBatch(txnID: "t", pdus: [
                pdu(room: "!a:hs.example", serial: 1, destinations: ["x.example", "y.example"]),
            ]))
            let path = outbox.path
            outbox.close()
            let database = try SQLiteDatabase(path: path)
            try database.execute("""
                DELETE FROM destination_set_members WHERE destination = 'y.example';
                UPDATE destinations SET last_successful_stream_ordering = 7 WHERE destination = 'x.example';
                UPDATE destinations SET retry_interval_ms = 600000 WHERE destination = 'y.example';
                """)
            database.close()
            let report = try OutboxCheck.run(path: path)
            #expect(report.problems == [
                "destinations: a last successful stream ordering of 7 is beyond the highest handed out, 1; PDUs accepted later would be skipped",
                "destination_sets: set 1 says 2 members and has 1",
                "destination_sets: set 1's members do not match its hash; a PDU for those servers would be sent to others",
                "destinations: y.example has retry interval 600000 ms and 0 failures",
            ])
        }
    }

    @Test func aFileThatIsNotAnOutboxCannotBeChecked() async throws {
        try await withTemporaryDirectory { directory in
            let database = try SQLiteDatabase(path: "\(directory)/other.db")
            try database.execute("CREATE TABLE t (x)")
            database.close()
            #expect(throws: OutboxError.self) { try OutboxCheck.run(path: "\(directory)/other.db") }
        }
    }
}
