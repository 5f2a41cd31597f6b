import FuzzSupport
import Outbox
import Sender
import Testing

@Suite("SenderScheduler in a discrete-event simulation of thousands of destinations")
struct SenderSchedulerSimulationTests {
    static let minute: Int64 = 60_000
    static let hour: Int64 = 60 * minute

    static var settings: FederationSender.Settings {
        var settings = FederationSender.Settings()
        settings.maxDestinationsSending = 64
        settings.maxPDUsInMemoryPerDestination = 40
        settings.maxPDUsInMemory = 15_000
        settings.maxQuietDestinations = 400
        settings.catchUpAfterMS = hour
        settings.startupWakeupInterval = .milliseconds(20)
        return settings
    }

    static let retryPolicy = RetryPolicy(initialIntervalMS: minute, multiplier: 2, maxIntervalMS: 6 * hour)

    @Test("restart, outages, flapping, held-back sends, failed reads and clock steps: every cap holds after every event, nobody waits long for a slot, and everything owed is delivered",
          arguments: [1 as UInt64, 2])
    func thousandsOfDestinationsUnderFaults(seed: UInt64) async {
        var simulation = SchedulerSimulation(settings: Self.settings, retryPolicy: Self.retryPolicy, seed: seed)
        var random = SplitMix64(seed: seed &* 7919)
        let names = (0..<3_000).map { "s\($0).example" }
        let rooms = (0..<40).map { room in
            (id: "!r\(room):origin.test", members: names.filter { _ in Int.random(in: 0..<100, using: &random) < 2 + room % 9 })
        }
        // A previous run left PDUs owed to a third of the servers; the others are met as commits arrive.
        for index in 0..<60 {
            let room = rooms[index % rooms.count]
            simulation.storeBeforeStart(room: room.id, destinations: room.members.filter { $0.utf8.reduce(0) { $0 + Int($1) } % 3 == 0 })
        }
        let unreachable = Set(names.shuffled(using: &random).prefix(300))
        let flapping = Set(names.filter { !unreachable.contains($0) }.shuffled(using: &random).prefix(150))
        simulation.down = unreachable
        simulation.outboxReadFailureRate = 0.002
        simulation.answer = { name, simulation in
            if flapping.contains(name), (simulation.monotonicMS / (10 * Self.minute)) % 2 == 1 { return .refused }
            // About one send in fifty waits too long for a pool slot.
            return simulation.monotonicMS % 50 == 0 ? .heldBack : .ok
        }
        simulation.start()

        // Two hours of traffic, a commit every 15 s, with the clocks misbehaving on the way.
        let start = simulation.monotonicMS
        for step in 1...480 {
            let room = rooms[Int.random(in: 0..<rooms.count, using: &random)]
            simulation.commit(room: room.id, destinations: room.members)
            await simulation.run(untilMS: start + Int64(step) * 15_000)
            switch step {
            case 120: simulation.stepWallClock(byMS: 5 * Self.hour)
            case 200: simulation.stepWallClock(byMS: -10 * Self.hour)
            case 240: simulation.down = []  // the unreachable servers come back
            case 300: simulation.jump(byMS: 2 * Self.hour)  // suspended for two hours
            case 360: for name in unreachable.prefix(50) { simulation.handle(.backoffReset(name)) }
            default: break
            }
        }
        let metrics = simulation.scheduler.currentMetrics
        print("""
            seed \(seed): \(simulation.events) events, \(simulation.transactionsSent) transactions, \(metrics.transactionsFailed) \
            failed, \(metrics.transactionsDeferred) held back, \(metrics.queueSpills) spills, \(metrics.destinationsInMemory) \
            destinations held; longest wait for a slot \(simulation.longestSlotWaitMS) ms
            """)
        #expect(metrics.queueSpills > 0, "the memory budget was tested")
        #expect(metrics.transactionsDeferred > 0)
        #expect(metrics.transactionsFailed > 0)

        // Everyone is reachable and every read works: within the longest backoff everything owed arrives.
        simulation.outboxReadFailureRate = 0
        simulation.answer = { _, _ in .ok }
        await simulation.run(untilMS: simulation.monotonicMS + 8 * Self.hour)
        for name in names {
            #expect(simulation.owedPDUs(name).isEmpty, "\(name) is still owed \(simulation.owedPDUs(name).count) PDUs")
        }
        #expect(simulation.scheduler.sendingCount == 0)
        #expect(simulation.scheduler.currentMetrics.destinationsInMemory <= Self.settings.maxQuietDestinations)
        // 64 slots among a few hundred destinations woken at once, each taking up to a tenth of a second a step.
        #expect(simulation.longestSlotWaitMS < 10 * Self.minute, "a destination waited \(simulation.longestSlotWaitMS) ms for a slot")
    }

    @Test("two slots, ten destinations that always have more to send: slots go round in turn")
    func busyDestinationsTakeTurns() async {
        var settings = Self.settings
        settings.maxDestinationsSending = 2
        var simulation = SchedulerSimulation(settings: settings, retryPolicy: Self.retryPolicy, seed: 9)
        let names = (0..<10).map { "busy\($0).example" }
        simulation.start()
        for step in 1...400 {
            simulation.commit(room: "!busy:origin.test", destinations: names)
            await simulation.run(untilMS: simulation.monotonicMS + 10)
            if step % 100 == 0 {
                for name in names { #expect(simulation.received[name]?.isEmpty == false, "\(name) never sent") }
            }
        }
        await simulation.run(untilMS: simulation.monotonicMS + Self.minute)
        for name in names {
            #expect(simulation.received[name] == Array(1...400), "\(name) got every PDU once, in order")
        }
        #expect(simulation.longestSlotWaitMS < 2_000)
    }
}
