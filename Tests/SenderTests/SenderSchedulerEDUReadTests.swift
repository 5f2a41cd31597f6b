import FuzzSupport
import Outbox
import Sender
import Testing

@Suite("SenderScheduler: when the persistent EDU tables are read")
struct SenderSchedulerEDUReadTests {
    let now = SenderTime(monotonicMS: 1_000, wallMS: 1_700_000_000_000)

    func makeScheduler() -> SenderScheduler {
        SenderScheduler(settings: FederationSender.Settings(),
                        retryPolicy: RetryPolicy(initialIntervalMS: 1_000, multiplier: 2, maxIntervalMS: 60_000),
                        txnIDPrefix: "t", random: SplitMix64(seed: 1))
    }

    /// What the scheduler asks for once `name`'s record is loaded (a destination never met: no record).
    func actionsAfterLoading(_ name: String, _ scheduler: inout SenderScheduler) -> [SenderScheduler.Action] {
        scheduler.handle(.loaded(name, nil, owed: []), at: now)
    }

    func readsEDUs(_ actions: [SenderScheduler.Action], for name: String) -> Bool {
        actions.contains { if case .readPersistentEDUs(name, _, _) = $0 { true } else { false } }
    }

    func sends(_ actions: [SenderScheduler.Action], for name: String) -> Bool {
        actions.contains { if case .send(name, _) = $0 { true } else { false } }
    }

    @Test("a destination first met after the start, with PDUs only, is sent to without reading the EDU tables")
    func newDestinationReadsNoEDUs() {
        var scheduler = makeScheduler()
        _ = scheduler.handle(.started(owing: []), at: now)
        let pdu = StoredPDU(streamOrdering: 1, roomID: "!r:origin.test", eventID: "$1", canonicalJSON: Array("{}".utf8))
        let loads = scheduler.handle(.committed(OutboxCommit(pdus: [.init(pdu: pdu, destinations: ["new.example"])], edus: [])),
                                     at: now)
        #expect(loads.contains { if case .load("new.example", owedPDULimit: nil) = $0 { true } else { false } })
        let next = actionsAfterLoading("new.example", &scheduler)
        #expect(!readsEDUs(next, for: "new.example"))
        #expect(sends(next, for: "new.example"))
    }

    @Test("a commit that brings a destination a persistent EDU makes it read the EDU tables")
    func committedEDUIsRead() {
        var scheduler = makeScheduler()
        _ = scheduler.handle(.started(owing: []), at: now)
        let pdu = StoredPDU(streamOrdering: 1, roomID: "!r:origin.test", eventID: "$1", canonicalJSON: Array("{}".utf8))
        let commit = OutboxCommit(pdus: [.init(pdu: pdu, destinations: ["edu.example"])],
                                  edus: [.init(eduType: "m.direct_to_device", destinations: ["edu.example"], streamOrdering: 2)])
        _ = scheduler.handle(.committed(commit), at: now)
        let next = actionsAfterLoading("edu.example", &scheduler)
        #expect(readsEDUs(next, for: "edu.example"))
        #expect(!sends(next, for: "edu.example"))
    }

    @Test("a destination owed work when the sender started reads the EDU tables: they may hold EDUs from before")
    func destinationOwedAtStartReadsEDUs() {
        var scheduler = makeScheduler()
        let loads = scheduler.handle(.started(owing: ["owed.example"]), at: now)
        #expect(loads.contains { if case .load("owed.example", _) = $0 { true } else { false } })
        let next = actionsAfterLoading("owed.example", &scheduler)
        #expect(readsEDUs(next, for: "owed.example"))
    }
}
