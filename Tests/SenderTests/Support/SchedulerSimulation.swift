import FuzzSupport
import Outbox
import Sender
import Testing

/// A discrete-event run of `SenderScheduler` against simulated destinations and an Outbox in
/// memory, on simulated time: every action is carried out (a read answers after a few
/// milliseconds, a send after its destination's latency, the timer fires when due) and its
/// result handed back as the next event. After every event the invariants of the scheduler's
/// header are checked for the destinations the event touched, and for all of them every
/// `sweepInterval` events.
struct SchedulerSimulation {
    /// How a destination answers at a given moment.
    enum Answer {
        case ok, refused, heldBack
    }


    var scheduler: SenderScheduler
    let settings: FederationSender.Settings
    private(set) var monotonicMS: Int64 = 1_000_000
    private(set) var wallOffsetMS: Int64 = 1_700_000_000_000
    var now: SenderTime { SenderTime(monotonicMS: monotonicMS, wallMS: monotonicMS + wallOffsetMS) }
    var random: SplitMix64
    /// Decides each send's answer.
    var answer: (_ name: String, _ simulation: SchedulerSimulation) -> Answer = { _, _ in .ok }
    /// Destinations refusing connections now.
    var down: Set<String> = []
    var outboxReadFailureRate = 0.0
    var sweepInterval = 500

    // The Outbox.
    private(set) var stored: [StoredPDU] = []
    private var owed: [String: [StoredPDU]] = [:]
    private(set) var records: [String: DestinationRecord] = [:]

    // What the destinations received, and checks.
    private(set) var received: [String: [Int64]] = [:]
    private(set) var transactionsSent = 0
    private(set) var events = 0
    /// The longest a destination was seen waiting for a sending slot.
    private(set) var longestSlotWaitMS: Int64 = 0
    /// Jumps of the monotonic clock (when, by how much): time nobody could use is no wait for a slot.
    private var jumps: [(atMS: Int64, byMS: Int64)] = []
    private var ioInFlight: [String: Int] = [:]
    private var pending: [(at: Int64, order: Int, event: SenderScheduler.Event)] = []
    private var order = 0
    private var timerAt: Int64?

    init(settings: FederationSender.Settings, retryPolicy: RetryPolicy, seed: UInt64) {
        self.settings = settings
        self.random = SplitMix64(seed: seed)
        self.scheduler = SenderScheduler(settings: settings, retryPolicy: retryPolicy, txnIDPrefix: "sim",
                                         random: SplitMix64(seed: seed &+ 1))
    }

    /// Every PDU owed to `name` that it has not acknowledged, per the Outbox.
    func owedPDUs(_ name: String) -> [StoredPDU] {
        let mark = records[name]?.lastSuccessfulStreamOrdering ?? 0
        return (owed[name] ?? []).filter { $0.streamOrdering > mark }
    }

    var destinationNames: [String] { Array(owed.keys) }

    // MARK: - Driving

    /// Starts the scheduler as the sender does, with what the Outbox owes now.
    mutating func start() {
        let owing = owed.keys.filter { !owedPDUs($0).isEmpty }.sorted()
        handle(.started(owing: owing))
    }

    /// Stores a PDU in `room` for `destinations` and hands the commit to the scheduler.
    mutating func commit(room: String, destinations: [String]) {
        let pdu = StoredPDU(streamOrdering: Int64(stored.count + 1), roomID: room, eventID: "$\(stored.count + 1)",
                            canonicalJSON: Array("{}".utf8))
        stored.append(pdu)
        for name in destinations { owed[name, default: []].append(pdu) }
        handle(.committed(OutboxCommit(pdus: [OutboxCommit.PDU(pdu: pdu, destinations: destinations)], edus: [])))
    }

    /// Stores a PDU without telling the scheduler: what a previous run left in the Outbox.
    mutating func storeBeforeStart(room: String, destinations: [String]) {
        let pdu = StoredPDU(streamOrdering: Int64(stored.count + 1), roomID: room, eventID: "$\(stored.count + 1)",
                            canonicalJSON: Array("{}".utf8))
        stored.append(pdu)
        for name in destinations { owed[name, default: []].append(pdu) }
    }

    /// The monotonic clock jumps (a machine resumed from suspend): every timer is late at once.
    mutating func jump(byMS milliseconds: Int64) {
        monotonicMS += milliseconds
        jumps.append((monotonicMS, milliseconds))
    }

    /// The wall clock is stepped (NTP), monotonic time does not move.
    mutating func stepWallClock(byMS milliseconds: Int64) {
        wallOffsetMS += milliseconds
    }

    /// Runs reads, sends and the timer in time order until nothing is left before `endMS`.
    mutating func run(untilMS endMS: Int64) async {
        while true {
            events += 1
            if events % 32 == 0 { await Task.yield() }
            let next = pending.indices.min { (pending[$0].at, pending[$0].order) < (pending[$1].at, pending[$1].order) }
            if let timerAt, timerAt <= endMS, next.map({ timerAt <= pending[$0].at }) ?? true {
                monotonicMS = max(monotonicMS, timerAt)
                self.timerAt = nil
                handle(.timerFired)
                continue
            }
            guard let next, pending[next].at <= endMS else { break }
            let (at, _, event) = pending.remove(at: next)
            monotonicMS = max(monotonicMS, at)
            if let name = event.destination { ioInFlight[name, default: 0] -= 1 }
            handle(event)
        }
        monotonicMS = max(monotonicMS, endMS)
        if let timerAt, timerAt <= monotonicMS {
            self.timerAt = nil
            handle(.timerFired)
        }
    }

    mutating func handle(_ event: SenderScheduler.Event) {
        let actions = scheduler.handle(event, at: now)
        var touched = Set<String>()
        if let name = event.destination { touched.insert(name) }
        if case .backoffReset(let name) = event { touched.insert(name) }
        if case .committed(let commit) = event { for pdu in commit.pdus { touched.formUnion(pdu.destinations) } }
        for action in actions {
            if let name = action.destination { touched.insert(name) }
            perform(action)
        }
        check(touched)
    }

    private mutating func perform(_ action: SenderScheduler.Action) {
        switch action {
        case .load(let name, let limit):
            startIO(name)
            if failsRead() { return report(.outboxReadFailed(name, reason: "simulated"), afterMS: 2) }
            let record = records[name]
            let owedNow = limit.map { Array(owedPDUs(name).prefix($0)) } ?? []
            report(.loaded(name, record, owed: owedNow), afterMS: 2)
        case .read(let name, let kind, let after, let limit):
            startIO(name)
            if failsRead() { return report(.outboxReadFailed(name, reason: "simulated"), afterMS: 2) }
            let beyond = (owed[name] ?? []).filter { $0.streamOrdering > after }
            let pdus: [StoredPDU]
            switch kind {
            case .backlog:
                pdus = Array(beyond.prefix(limit))
            case .catchUp:
                var newest: [String: StoredPDU] = [:]
                for pdu in beyond { newest[pdu.roomID] = pdu }
                pdus = Array(newest.values.sorted { $0.streamOrdering < $1.streamOrdering }.prefix(limit))
            }
            report(.read(name, kind, pdus: pdus), afterMS: 3)
        case .readPersistentEDUs(let name, let draft, _):
            startIO(name)
            report(.persistentEDUsRead(name, draft, []), afterMS: 1)
        case .send(let name, let transaction):
            startIO(name)
            transactionsSent += 1
            let outcome: TransactionOutcome
            var latency: Int64 = 20 + Int64.random(in: 0...80, using: &random)
            switch down.contains(name) ? .refused : answer(name, self) {
            case .ok:
                outcome = .delivered
                var last = received[name]?.last ?? 0
                for pdu in transaction.pdus {
                    #expect(pdu.streamOrdering > last, "\(name) got PDU \(pdu.streamOrdering) after \(last)")
                    last = pdu.streamOrdering
                    received[name, default: []].append(pdu.streamOrdering)
                }
            case .refused:
                outcome = .failed(reason: "connection refused")
                latency = 5
            case .heldBack:
                outcome = .deferred(reason: "no connection slot in time")
                latency = 1_000
            }
            report(.transactionFinished(name, transaction, outcome), afterMS: latency)
        case .recordProgress(let deliveries):
            for delivery in deliveries {
                var record = records[delivery.destination] ?? DestinationRecord(name: delivery.destination)
                if let upTo = delivery.upTo { record.lastSuccessfulStreamOrdering = max(record.lastSuccessfulStreamOrdering, upTo) }
                record.retryIntervalMS = 0
                record.retryLastTS = nil
                records[delivery.destination] = record
            }
            report(.progressRecorded(deliveries), afterMS: 1)
        case .recordFailure(let name, let failure):
            var record = records[name] ?? DestinationRecord(name: name)
            record.retryIntervalMS = failure.retryIntervalMS
            record.retryLastTS = failure.retryLastTS
            records[name] = record
        case .armTimer(let atMS):
            timerAt = atMS
        case .publish, .queueSpilled:
            break
        }
    }

    private mutating func startIO(_ name: String) {
        ioInFlight[name, default: 0] += 1
        #expect(ioInFlight[name] == 1, "\(name) has \(ioInFlight[name]!) reads or sends at once")
    }

    private mutating func failsRead() -> Bool {
        outboxReadFailureRate > 0 && Double.random(in: 0..<1, using: &random) < outboxReadFailureRate
    }

    private mutating func report(_ event: SenderScheduler.Event, afterMS delay: Int64) {
        pending.append((monotonicMS + delay, order, event))
        order += 1
    }

    // MARK: - Invariants

    private mutating func check(_ touched: Set<String>) {
        #expect(scheduler.sendingCount <= settings.maxDestinationsSending)
        #expect(scheduler.sendingCount >= 0)
        if scheduler.readyCount > 0 {
            #expect(scheduler.sendingCount == settings.maxDestinationsSending, "a slot is free while destinations wait")
        }
        #expect(scheduler.pduReferencesHeld <= settings.maxPDUsInMemory)
        let names = events % sweepInterval == 0 ? Set(scheduler.heldDestinationNames) : touched
        for name in names { checkStanding(name) }
    }

    private mutating func checkStanding(_ name: String) {
        guard let standing = scheduler.standing(of: name) else { return }
        switch standing {
        case .stranded:
            Issue.record("\(name) owes something but nothing will wake it")
        case .waitingUntil(let deadline):
            #expect(scheduler.timerMS.map { $0 <= deadline } == true, "\(name) waits until \(deadline); timer at \(String(describing: scheduler.timerMS))")
        case .ready(let since):
            let jumped = jumps.filter { $0.atMS > since }.reduce(0) { $0 + $1.byMS }
            longestSlotWaitMS = max(longestSlotWaitMS, monotonicMS - since - jumped)
        case .sending, .awaitingWakeup, .quiet:
            break
        }
        if case .sending = standing {} else if (ioInFlight[name] ?? 0) > 0 {
            Issue.record("\(name) has a read or send in flight without a sending slot")
        }
    }
}

extension SenderScheduler.Event {
    /// The destination a read or send reports on.
    var destination: String? {
        switch self {
        case .loaded(let name, _, _), .read(let name, _, _), .persistentEDUsRead(let name, _, _),
             .transactionFinished(let name, _, _), .outboxReadFailed(let name, _):
            return name
        case .started, .committed, .ephemeralQueued, .recentEvents, .progressRecorded, .backoffReset, .timerFired, .stop:
            return nil
        }
    }
}

extension SenderScheduler.Action {
    var destination: String? {
        switch self {
        case .load(let name, _), .read(let name, _, _, _), .readPersistentEDUs(let name, _, _), .send(let name, _),
             .recordFailure(let name, _), .queueSpilled(let name, _, _):
            return name
        case .publish(let change):
            return change.destination
        case .recordProgress, .armTimer:
            return nil
        }
    }
}
