import FuzzSupport
import Outbox
import Sender
import Testing

@Suite("SenderScheduler: when a destination's record is read")
struct SenderSchedulerRecordReadTests {
    let now = SenderTime(monotonicMS: 1_000, wallMS: 1_700_000_000_000)
    let pdu = StoredPDU(streamOrdering: 1, roomID: "!r:origin.test", eventID: "$1", canonicalJSON: Array("{}".utf8))

    func startedScheduler() -> SenderScheduler {
        var scheduler = SenderScheduler(settings: FederationSender.Settings(),
                                        retryPolicy: RetryPolicy(initialIntervalMS: 1_000, multiplier: 2, maxIntervalMS: 60_000),
                                        txnIDPrefix: "t", random: SplitMix64(seed: 1))
        _ = scheduler.handle(.started(owing: []), at: now)
        return scheduler
    }

    func loads(_ actions: [SenderScheduler.Action], _ name: String) -> Bool {
        actions.contains { if case .load(name, _) = $0 { true } else { false } }
    }

    func sentPDUs(_ actions: [SenderScheduler.Action], _ name: String) -> [Int64]? {
        for case .send(name, let transaction) in actions { return transaction.pdus.map(\.streamOrdering) }
        return nil
    }

    @Test("a destination whose record the commit created is sent to at once, without reading that record")
    func createdDestinationIsNotLoaded() {
        var scheduler = startedScheduler()
        let commit = OutboxCommit(pdus: [.init(pdu: pdu, destinations: ["new.example"])], edus: [],
                                  createdDestinations: ["new.example"])
        let actions = scheduler.handle(.committed(commit), at: now)
        #expect(!loads(actions, "new.example"))
        #expect(sentPDUs(actions, "new.example") == [1])
    }

    @Test("a destination the Outbox had a record of before the commit reads it: it may hold a backoff or a mark")
    func knownDestinationIsLoaded() {
        var scheduler = startedScheduler()
        let commit = OutboxCommit(pdus: [.init(pdu: pdu, destinations: ["known.example", "new.example"])], edus: [],
                                  createdDestinations: ["new.example"])
        let actions = scheduler.handle(.committed(commit), at: now)
        #expect(loads(actions, "known.example"))
        #expect(sentPDUs(actions, "known.example") == nil)
        #expect(sentPDUs(actions, "new.example") == [1])
    }

    @Test("a destination already held keeps its state when a commit says its record was created")
    func heldDestinationKeepsItsState() {
        var scheduler = startedScheduler()
        let first = scheduler.handle(.committed(OutboxCommit(pdus: [.init(pdu: pdu, destinations: ["held.example"])], edus: [])),
                                     at: now)
        #expect(loads(first, "held.example"))
        let second = StoredPDU(streamOrdering: 2, roomID: "!r:origin.test", eventID: "$2", canonicalJSON: Array("{}".utf8))
        let commit = OutboxCommit(pdus: [.init(pdu: second, destinations: ["held.example"])], edus: [],
                                  createdDestinations: ["held.example"])
        let actions = scheduler.handle(.committed(commit), at: now)
        #expect(sentPDUs(actions, "held.example") == nil)
        // The load asked for before is still the one that decides, and both PDUs go.
        let loaded = scheduler.handle(.loaded("held.example", nil, owed: []), at: now)
        #expect(sentPDUs(loaded, "held.example") == [1, 2])
    }
}
