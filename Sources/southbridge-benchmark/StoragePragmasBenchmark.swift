import Federation
import Glibc
import Logging
import Outbox
import SouthbridgeSwarm

/// `southbridge-benchmark storage-pragmas`: what SQLite's `synchronous` and `wal_autocheckpoint`
/// would change in the bytes written per accepted PDU, measured in this process on the
/// Outbox itself (a new file on this machine's disk per row): PDUs of `storage-writes`, one
/// per batch, accepted one after another, so each is a commit of its own.
struct StoragePragmasBenchmark {
    var pdus: Int

    static func fromCommandLine() -> StoragePragmasBenchmark {
        StoragePragmasBenchmark(pdus: option("--pdus", default: 2_000))
    }

    private static let variants: [(OutboxLimits.Synchronous, Int)] = [
        (.full, 1_000), (.full, 100), (.full, 4_000), (.full, 10_000), (.normal, 1_000),
    ]

    func run() async throws {
        print("""
            ### storage-pragmas: \(pdus) PDUs of \(StorageWritesBenchmark.pduBytes) bytes, one per commit

            | synchronous | wal_autocheckpoint (pages) | bytes written per PDU | × PDU size | mean accept |
            | --- | ---: | ---: | ---: | ---: |
            """)
        for (synchronous, checkpointPages) in Self.variants {
            let directory = try TemporaryDirectory(prefix: "southbridge-pragmas")
            defer { directory.remove() }
            var limits = OutboxLimits()
            limits.synchronous = synchronous
            limits.walAutocheckpointPages = checkpointPages
            var logger = Logger(label: "storage-pragmas")
            logger.logLevel = .warning
            let outbox = try Outbox(path: "\(directory.path)/outbox.sqlite3", logger: logger, limits: limits)
            _ = try await outbox.accept(batch(number: 0))
            let before = StorageWritesBenchmark.writeBytes(pid: getpid())
            let started = ContinuousClock.now
            for number in 1...pdus {
                _ = try await outbox.accept(batch(number: number))
            }
            let elapsed = ContinuousClock.now - started
            let written = StorageWritesBenchmark.writeBytes(pid: getpid()) - before
            outbox.close()
            let perPDU = Double(written) / Double(pdus)
            print("| \(synchronous.rawValue) | \(checkpointPages) | \(Int(perPDU.rounded())) B "
                  + "| \((perPDU / Double(StorageWritesBenchmark.pduBytes) * 10).rounded() / 10) "
                  + "| \(format(elapsed / pdus)) |")
        }
    }

    private func batch(number: Int) -> IngestBatch {
        IngestBatch(txnID: "pdu-\(number)", pdus: [IncomingPDU(
            roomID: "!room:origin.southbridge.localhost", eventID: "$event-\(number)",
            canonicalJSON: CanonicalJSON.encode(StorageWritesBenchmark.event(number: number)),
            destinations: ["remote.example"])])
    }
}
