import FuzzSupport
import Outbox
import Sender
import Testing

@Suite("SenderScheduler: persistent EDUs whose removal from the Outbox is still being written")
struct SenderSchedulerEDUProgressTests {
    static let destination = "a.example"

    static func toDevice(_ id: Int64) -> StoredEDU {
        StoredEDU(eduID: id, eduType: "m.direct_to_device",
                  canonicalJSON: Array(#"{"content":{"message_id":"m\#(id)"},"edu_type":"m.direct_to_device"}"#.utf8))
    }

    static func committed(_ id: Int64) -> SenderScheduler.Event {
        .committed(OutboxCommit(pdus: [], edus: [OutboxCommit.EDU(eduType: "m.direct_to_device", destinations: [destination],
                                                                  streamOrdering: id)]))
    }

    /// The soak found it: a to-device message delivered, its removal handed to the writer behind
    /// other writes, and a read for the next transaction finding it still in the Outbox.
    @Test("a delivered to-device message that a read still finds is not sent again, whether its removal is written before or after that read returns",
          arguments: [false, true])
    func deliveredMessageIsNotSentAgain(removalWrittenBeforeTheReadReturns: Bool) {
        var scheduler = SenderScheduler(
            settings: FederationSender.Settings(),
            retryPolicy: RetryPolicy(initialIntervalMS: 60_000, multiplier: 2, maxIntervalMS: 3_600_000),
            txnIDPrefix: "t", random: SplitMix64(seed: 1))
        var nowMS: Int64 = 1_000
        var outbox = [Self.toDevice(1)]
        var events: [SenderScheduler.Event] = [.started(owing: []), Self.committed(1)]
        var sent: [[Int64]] = []
        var progressWrites: [[Outbox.Delivery]] = []
        var holdNextRead = false
        var heldRead: SenderScheduler.TransactionDraft?

        // Carries the actions out as the driver does: reads answered from `outbox` at once
        // (except one held back), every send delivered, progress writes left pending.
        func drain() {
            while !events.isEmpty {
                let event = events.removeFirst()
                for action in scheduler.handle(event, at: SenderTime(monotonicMS: nowMS, wallMS: nowMS)) {
                    switch action {
                    case .load(let name, _):
                        events.append(.loaded(name, nil, owed: []))
                    case .readPersistentEDUs(let name, let draft, _):
                        if holdNextRead {
                            holdNextRead = false
                            heldRead = draft
                        } else {
                            events.append(.persistentEDUsRead(name, draft, outbox))
                        }
                    case .send(let name, let transaction):
                        sent.append(transaction.persistentEDUIDs)
                        events.append(.transactionFinished(name, transaction, .delivered))
                    case .recordProgress(let deliveries):
                        progressWrites.append(deliveries)
                    default:
                        break
                    }
                }
            }
        }
        func finishProgressWrite() {
            let deliveries = progressWrites.removeFirst()
            let removed = Set(deliveries.flatMap(\.eduIDs))
            outbox.removeAll { removed.contains($0.eduID) }
            events.append(.progressRecorded(deliveries))
            drain()
        }

        drain()
        #expect(sent == [[1]])
        nowMS += SenderScheduler.progressWriteDelayMS
        events.append(.timerFired)
        drain()
        #expect(progressWrites.map { $0.map(\.eduIDs) } == [[[1]]])

        // The write is slow; meanwhile a second message arrives and its read still finds the first.
        outbox.append(Self.toDevice(2))
        holdNextRead = true
        events.append(Self.committed(2))
        drain()
        guard let draft = heldRead else {
            Issue.record("no read was asked for after the second message")
            return
        }
        if removalWrittenBeforeTheReadReturns { finishProgressWrite() }
        events.append(.persistentEDUsRead(Self.destination, draft, [Self.toDevice(1), Self.toDevice(2)]))
        drain()
        if !removalWrittenBeforeTheReadReturns { finishProgressWrite() }

        #expect(sent == [[1], [2]])
    }
}
