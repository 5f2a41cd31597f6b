import FuzzSupport
import Outbox
import Sender
import SouthbridgeSwarm
import Testing
import Transport

/// A PDU whose bytes say which one it is.
private func pdu(_ streamOrdering: Int64, room: String = "!r:origin.test") -> StoredPDU {
    StoredPDU(streamOrdering: streamOrdering, roomID: room, eventID: "$\(streamOrdering)",
              canonicalJSON: Array("{\"n\":\(streamOrdering)}".utf8))
}

private func transaction(_ id: String, _ pdus: [StoredPDU], edus: Int = 0, catchUp: Bool = false) -> OutgoingTransaction {
    OutgoingTransaction(txnID: id, originServerTS: 0, pdus: pdus, edus: Array(repeating: Array("{}".utf8), count: edus),
                        persistentEDUIDs: [], isCatchUp: catchUp)
}

private func liveQueue(budget: Int = 100, catchUpAfterMS: Int64 = 3_600_000, owed: [StoredPDU] = [],
                       record: DestinationRecord? = nil) -> PerDestinationQueue {
    var queue = PerDestinationQueue(budget: budget, catchUpAfterMS: catchUpAfterMS)
    #expect(queue.nextStep(nowMS: 0, maxPDUs: 50) == .load)
    queue.loaded(record, owed: owed, nowMS: 1_000, wallNowMS: 1_000)
    return queue
}

@Suite("PerDestinationQueue: what a destination is sent next")
struct PerDestinationQueueTests {
    @Test func aLoadedBacklogWithinTheBudgetIsSentInStreamOrderInTransactionsOfAtMostMaxPDUs() {
        var queue = liveQueue(owed: (1...70).map { pdu($0) })
        #expect(queue.phase == .live)
        guard case .build(let first) = queue.nextStep(nowMS: 0, maxPDUs: 50) else { Issue.record("expected a build"); return }
        #expect(first.map(\.streamOrdering) == Array(1...50))
        queue.send(transaction("t1", first))
        #expect(queue.nextStep(nowMS: 0, maxPDUs: 50) == .resend)
        queue.delivered(queue.inFlight!)
        #expect(queue.lastSuccessfulStreamOrdering == 50)
        #expect(queue.nextStep(nowMS: 0, maxPDUs: 50) == .build(pdus: (51...70).map { pdu($0) }))
    }

    @Test("a transaction held back by local limits waits, unchanged, without touching the retry state")
    func deferredTransactionKeepsTheRetryState() {
        var queue = liveQueue(owed: [pdu(1)])
        guard case .build(let pdus) = queue.nextStep(nowMS: 0, maxPDUs: 50) else { Issue.record("expected a build"); return }
        queue.send(transaction("t1", pdus))
        queue.deferred(untilMS: 1_500)
        #expect(queue.retryIntervalMS == 0 && queue.retryDueMS == 0)
        #expect(!queue.isBackingOff)
        #expect(queue.nextStep(nowMS: 1_000, maxPDUs: 50) == .waitUntil(1_500))
        #expect(queue.nextStep(nowMS: 1_500, maxPDUs: 50) == .resend)
        #expect(queue.inFlight?.txnID == "t1")
    }

    @Test("only an answer or silence from the remote is a failure; waiting for a pool slot is not")
    func localLimitsAreDeferredNotFailed() {
        let waited = FederationRequestError(
            destination: "d.example", reason: "\(ConnectionPoolError.waitTimeout(destination: "d.example", requestClass: .pduTransaction, waited: .seconds(120), reason: .maxConnections(64)))",
            isLocalLimit: true)
        guard case .deferred = TransactionOutcome.classify(error: waited) else { Issue.record("a pool wait counted as a failure"); return }
        let refused = FederationRequestError(destination: "d.example", reason: "connection refused")
        guard case .failed = TransactionOutcome.classify(error: refused) else { Issue.record("a refused connection was not a failure"); return }
    }

    @Test func committedPDUsJoinTheQueueOnceAndOlderOnesAreIgnored() {
        var queue = liveQueue(owed: [pdu(5)], record: DestinationRecord(name: "d", lastSuccessfulStreamOrdering: 4))
        queue.pduCommitted(pdu(6))
        queue.pduCommitted(pdu(6))
        queue.pduCommitted(pdu(3))
        #expect(queue.nextStep(nowMS: 0, maxPDUs: 50) == .build(pdus: [pdu(5), pdu(6)]))
        #expect(queue.pduReferenceCount == 2)
    }

    @Test func pdusCommittedWhileLoadingAreKeptWithoutDuplicatingTheOnesTheLoadRead() {
        var queue = PerDestinationQueue(budget: 100, catchUpAfterMS: 3_600_000)
        #expect(queue.nextStep(nowMS: 0, maxPDUs: 50) == .load)
        queue.pduCommitted(pdu(2))
        queue.pduCommitted(pdu(3))
        queue.loaded(nil, owed: [pdu(1), pdu(2)], nowMS: 0, wallNowMS: 0)
        #expect(queue.nextStep(nowMS: 0, maxPDUs: 50) == .build(pdus: [pdu(1), pdu(2), pdu(3)]))
    }

    @Test func aDestinationThatOwedNothingAtStartQueuesWhatArrivesBeforeItsRecordIsRead() {
        var queue = PerDestinationQueue(budget: 100, catchUpAfterMS: 3_600_000, backlogKnownEmpty: true)
        #expect(queue.needsBacklogRead == false)
        queue.pduCommitted(pdu(8))
        #expect(queue.pduReferenceCount == 1)
        #expect(queue.nextStep(nowMS: 0, maxPDUs: 50) == .load)
        queue.pduCommitted(pdu(9))
        queue.loaded(DestinationRecord(name: "d", lastSuccessfulStreamOrdering: 3), owed: [], nowMS: 0, wallNowMS: 0)
        #expect(queue.nextStep(nowMS: 0, maxPDUs: 50) == .build(pdus: [pdu(8), pdu(9)]))
    }

    @Test func aQueuePastItsBudgetIsDroppedAndItsBacklogReadBackInOrder() {
        var queue = liveQueue(budget: 3)
        for streamOrdering in Int64(1)...3 { queue.pduCommitted(pdu(streamOrdering)) }
        #expect(queue.pduReferenceCount == 3)
        #expect(queue.pduCommitted(pdu(4)) == 3)
        #expect(queue.phase == .readingBacklog)
        #expect(queue.pduReferenceCount == 0)
        #expect(queue.nextStep(nowMS: 0, maxPDUs: 2) == .readBacklog(after: 0, limit: 2))
        #expect(queue.caughtUp(with: [pdu(1), pdu(2)]) == [pdu(1), pdu(2)])
        queue.send(transaction("b1", [pdu(1), pdu(2)]))
        #expect(queue.pduReferenceCount == 2)
        queue.delivered(queue.inFlight!)
        #expect(queue.nextStep(nowMS: 0, maxPDUs: 2) == .readBacklog(after: 2, limit: 2))
        #expect(queue.caughtUp(with: [pdu(3), pdu(4)]) == [pdu(3), pdu(4)])
        queue.send(transaction("b2", [pdu(3), pdu(4)]))
        queue.delivered(queue.inFlight!)
        #expect(queue.caughtUp(with: []) == nil)
        #expect(queue.phase == .live)
        queue.pduCommitted(pdu(5))
        #expect(queue.nextStep(nowMS: 0, maxPDUs: 50) == .build(pdus: [pdu(5)]))
    }

    @Test func catchUpSendsTheNewestPDUOfEachRoomAndReadsAgainForPDUsCommittedMeanwhile() {
        let record = DestinationRecord(name: "d", lastSuccessfulStreamOrdering: 0, retryLastTS: 0, retryIntervalMS: 7_200_000)
        var queue = liveQueue(owed: [], record: record)
        queue.clearBackoff()
        #expect(queue.phase == .catchingUp)
        #expect(queue.nextStep(nowMS: 0, maxPDUs: 50) == .readCatchUp(after: 0, limit: 50))
        let newest = [pdu(3, room: "!a:o"), pdu(4, room: "!b:o")]
        #expect(queue.caughtUp(with: newest) == newest)
        queue.send(transaction("c1", newest, catchUp: true))
        queue.pduCommitted(pdu(5, room: "!a:o"))
        queue.delivered(queue.inFlight!)
        #expect(queue.lastSuccessfulStreamOrdering == 4)
        // PDU 5 was committed after the read: an empty read means "read again", not "done".
        #expect(queue.nextStep(nowMS: 0, maxPDUs: 50) == .readCatchUp(after: 4, limit: 50))
        #expect(queue.caughtUp(with: []) == [])
        #expect(queue.caughtUp(with: [pdu(5, room: "!a:o")]) == [pdu(5, room: "!a:o")])
        queue.send(transaction("c2", [pdu(5, room: "!a:o")], catchUp: true))
        queue.delivered(queue.inFlight!)
        #expect(queue.caughtUp(with: []) == nil)
        #expect(queue.phase == .live)
        queue.pduCommitted(pdu(6))
        #expect(queue.nextStep(nowMS: 0, maxPDUs: 50) == .build(pdus: [pdu(6)]))
    }

    @Test func aRestartWithMoreOwedThanTheBudgetStartsInCatchUp() {
        let queue = liveQueue(budget: 10, owed: (1...11).map { pdu($0) })
        #expect(queue.phase == .catchingUp)
        #expect(queue.pduReferenceCount == 0)
    }

    @Test func aRestartDuringALongBackoffStartsInCatchUp() {
        let record = DestinationRecord(name: "d", lastSuccessfulStreamOrdering: 7, retryLastTS: 1_000, retryIntervalMS: 7_200_000)
        var queue = liveQueue(owed: [pdu(8)], record: record)
        #expect(queue.phase == .catchingUp)
        #expect(queue.nextStep(nowMS: 1_000 + 7_199_999, maxPDUs: 50) == .waitUntil(1_000 + 7_200_000))
        #expect(queue.nextStep(nowMS: 1_000 + 7_200_000, maxPDUs: 50) == .readCatchUp(after: 7, limit: 50))
    }

    /// (wall clock when loaded, ms until the backoff ends) for a failure stored at 50,000,000 with a 10-minute interval.
    static let storedBackoffCases: [(wallNowMS: Int64, dueInMS: Int64)] = [
        // Read by a boot whose clock is 5 h behind (no clock battery, NTP not yet synced):
        // at most the interval, not 5 h more.
        (50_000_000 - 18_000_000, 600_000),
        // Read 4 minutes after the failure: the 6 minutes left.
        (50_000_000 + 240_000, 360_000),
        // Read by a clock far ahead (or long after): due now, each destination once.
        (50_000_000 + 86_400_000, 0),
    ]

    @Test(arguments: storedBackoffCases)
    func aStoredBackoffEndsAtMostOneIntervalAfterItIsLoaded(wallNowMS: Int64, dueInMS: Int64) {
        let record = DestinationRecord(name: "d", lastSuccessfulStreamOrdering: 3, retryLastTS: 50_000_000, retryIntervalMS: 600_000)
        var queue = PerDestinationQueue(budget: 10, catchUpAfterMS: 3_600_000)
        _ = queue.nextStep(nowMS: 7_000, maxPDUs: 50)
        queue.loaded(record, owed: [pdu(4)], nowMS: 7_000, wallNowMS: wallNowMS)
        #expect(queue.retryDueMS == 7_000 + dueInMS)
        #expect(queue.nextStep(nowMS: 7_000 + dueInMS, maxPDUs: 50) == .build(pdus: [pdu(4)]))
    }

    @Test func aFailedTransactionIsResentUnchangedWhenItsBackoffEndsToTheMillisecond() {
        var queue = liveQueue(owed: [pdu(1), pdu(2)])
        guard case .build(let pdus) = queue.nextStep(nowMS: 0, maxPDUs: 50) else { Issue.record("expected a build"); return }
        queue.send(transaction("t1", pdus))
        #expect(queue.failed(nowMS: 5_000, intervalMS: 600_000) == false)
        queue.pduCommitted(pdu(3))
        #expect(queue.nextStep(nowMS: 604_999, maxPDUs: 50) == .waitUntil(605_000))
        #expect(queue.nextStep(nowMS: 605_000, maxPDUs: 50) == .resend)
        #expect(queue.inFlight?.txnID == "t1")
        #expect(queue.inFlight?.pdus == [pdu(1), pdu(2)])
        #expect(queue.delivered(queue.inFlight!) == true)
        #expect(queue.isBackingOff == false)
        #expect(queue.nextStep(nowMS: 605_000, maxPDUs: 50) == .build(pdus: [pdu(3)]))
    }

    @Test func aBackoffLongerThanCatchUpAfterDropsTheQueueAndTheTransactionInFlight() {
        var queue = liveQueue(catchUpAfterMS: 3_600_000, owed: [pdu(1), pdu(2)])
        guard case .build(let pdus) = queue.nextStep(nowMS: 0, maxPDUs: 1) else { Issue.record("expected a build"); return }
        queue.send(transaction("t1", pdus))
        #expect(queue.failed(nowMS: 0, intervalMS: 3_600_000) == false)
        #expect(queue.pduReferenceCount == 2)
        #expect(queue.failed(nowMS: 0, intervalMS: 3_600_001) == true)
        #expect(queue.phase == .catchingUp)
        #expect(queue.inFlight == nil)
        #expect(queue.pduReferenceCount == 0)
    }

    @Test func aRefusedBodyIsSplitUntilTheOneUnitItRefusesIsSkipped() {
        var queue = liveQueue(owed: (1...4).map { pdu($0) })
        guard case .build(let all) = queue.nextStep(nowMS: 0, maxPDUs: 50) else { Issue.record("expected a build"); return }
        queue.send(transaction("t1", all))
        #expect(queue.rejected(queue.inFlight!) == false)
        #expect(queue.nextStep(nowMS: 0, maxPDUs: 50) == .build(pdus: [pdu(1), pdu(2)]))
        queue.send(transaction("t2", [pdu(1), pdu(2)]))
        #expect(queue.rejected(queue.inFlight!) == false)
        #expect(queue.nextStep(nowMS: 0, maxPDUs: 50) == .build(pdus: [pdu(1)]))
        queue.send(transaction("t3", [pdu(1)]))
        #expect(queue.rejected(queue.inFlight!) == true)
        #expect(queue.lastSuccessfulStreamOrdering == 1)
        #expect(queue.isBackingOff == false)
        #expect(queue.nextStep(nowMS: 0, maxPDUs: 50) == .build(pdus: [pdu(2)]))
        queue.send(transaction("t4", [pdu(2)]))
        queue.delivered(queue.inFlight!)
        #expect(queue.nextStep(nowMS: 0, maxPDUs: 50) == .build(pdus: [pdu(3), pdu(4)]))
    }

    @Test func aQuietDestinationHoldsNothing() {
        var queue = liveQueue(owed: [pdu(1)])
        guard case .build(let pdus) = queue.nextStep(nowMS: 0, maxPDUs: 50) else { Issue.record("expected a build"); return }
        queue.send(transaction("t1", pdus))
        queue.delivered(queue.inFlight!)
        #expect(queue.isQuiet)
        #expect(queue.pduReferenceCount == 0)
        // Thousands are held inline in the scheduler's dictionary: words first, flags last, the
        // transaction in flight boxed (92 bytes; 154 with padding and the transaction inline).
        #expect(MemoryLayout<PerDestinationQueue>.size <= 96, "\(MemoryLayout<PerDestinationQueue>.size) bytes")
    }
}

@Suite("Backoff schedule under an injected clock")
struct BackoffScheduleTests {
    @Test func theQueueWaitsExactlyThePolicysIntervalsAndEntersCatchUpPastOneHour() {
        let policy = RetryPolicy(initialIntervalMS: 600_000, multiplier: 2, maxIntervalMS: 604_800_000)
        var expectedRandom = SplitMix64(seed: 42)
        var expected: [Int64] = []
        var previous: Int64 = 0
        for _ in 0..<12 {
            previous = policy.interval(after: previous, using: &expectedRandom)
            expected.append(previous)
        }
        #expect((480_000...840_000).contains(expected[0]))
        #expect(expected.last == 604_800_000)

        var random = SplitMix64(seed: 42)
        var queue = liveQueue(owed: [pdu(1)])
        var now: Int64 = 1_000_000
        var enteredCatchUpAt: Int?
        for (attempt, interval) in expected.enumerated() {
            let step = queue.nextStep(nowMS: now, maxPDUs: 50)
            switch step {
            case .build(let pdus): queue.send(transaction("t", pdus))
            case .resend, .readCatchUp: break
            default: Issue.record("attempt \(attempt): unexpected \(step)")
            }
            let chosen = policy.interval(after: queue.retryIntervalMS, using: &random)
            #expect(chosen == interval)
            if queue.failed(nowMS: now, intervalMS: chosen), enteredCatchUpAt == nil { enteredCatchUpAt = attempt }
            #expect(queue.nextStep(nowMS: now + interval - 1, maxPDUs: 50) == .waitUntil(now + interval))
            now += interval
        }
        // About 10, 20, 40 minutes, then the first interval past an hour sends it to catch-up.
        #expect(enteredCatchUpAt == expected.firstIndex { $0 > 3_600_000 })
        #expect(queue.phase == .catchingUp)
    }
}
