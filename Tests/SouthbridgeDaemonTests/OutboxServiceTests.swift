import Logging
import Outbox
@testable import SouthbridgeDaemon
import SouthbridgeSwarm
import Testing

@Suite struct OutboxServiceTests {
    @Test("a delivered PDU log is given back when it takes its last spare segment, not at the minute's prune")
    func theLogIsPrunedWhenItNeedsASpare() async throws {
        let directory = try TemporaryDirectory(prefix: "southbridge-outbox-service")
        defer { directory.remove() }
        // 1 MiB of budget: segments of 64 KiB, about 25 of the PDUs below each.
        let outbox = try Outbox(path: directory.path + "/outbox.db", logger: Logger(label: "test"),
                                limits: OutboxLimits(maxBytes: 1 << 20))
        let service = OutboxService(outbox: outbox, retention: RetentionPolicy(), logger: Logger(label: "test"),
                                    logGrowthPassGap: .zero)
        let running = Task { try await service.run() }
        let body = String(repeating: "x", count: 2_000)
        for serial in 0..<300 {
            let json = #"{"content":{"body":"\#(body)"},"event_id":"$\#(serial):hs","room_id":"!r:hs"}"#
            let receipt = try await outbox.accept(IngestBatch(txnID: "t\(serial)", pdus: [
                IncomingPDU(roomID: "!r:hs", eventID: "$\(serial):hs", canonicalJSON: Array(json.utf8), destinations: ["a.example"]),
            ]))
            try await outbox.recordDeliveries([Outbox.Delivery(destination: "a.example", upTo: receipt.streamOrdering, eduIDs: [])])
        }
        // Twelve segments' worth went through; the passes leave the one being written and a few more at most.
        let deadline = ContinuousClock.now + .seconds(20)
        while segmentsInUse(directory.path) > 3, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(segmentsInUse(directory.path) <= 3)
        running.cancel()
        _ = await running.result
    }

    private func segmentsInUse(_ directory: String) -> Int {
        Outbox.files(at: directory + "/outbox.db").filter { $0.hasSuffix(".seg") && !$0.contains("/spare-") }.count
    }
}
