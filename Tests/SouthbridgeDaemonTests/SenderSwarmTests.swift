import Federation
import Logging
import SouthbridgeTestSupport
import Synchronization
import Outbox
import Sender
import SouthbridgeDaemon
import SouthbridgeSwarm
import Testing

/// The PDU numbers a destination received, first arrival of each, in arrival order.
private func firstArrivals(_ log: SwarmServer.DestinationLog) -> [Int] {
    var seen = Set<String>()
    return log.pduIDs.filter { seen.insert($0).inserted }.compactMap { Int($0.dropFirst()) }
}

private func eventually(_ timeout: Duration = .seconds(30), _ condition: () async -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(50))
    }
    return await condition()
}

@Suite("Sender against a swarm of live, dead, blackholed, slow, failing and flapping servers", .serialized)
struct SenderSwarmTests {
    let rooms = ["!a:origin.test", "!b:origin.test", "!c:origin.test"]

    @Test("every PDU reaches every server that is live at some point, in order; the dead and blackholed delay no one")
    func mixedSwarm() async throws {
        let harness = try await SenderHarness(hosts: [
            "live": 3, "slow": 2, "failing": 2, "flapping": 2, "blackholed": 2, "dead": 2,
        ]) { $0.transport.requestTimeout = .seconds(20) }
        try await harness.withTearDown {
            let live = try await harness.startGroup("live")
            let slow = try await harness.startGroup("slow")
            slow.fail(next: 10_000, with: .slow(milliseconds: 200))
            let failing = try await harness.startGroup("failing")
            let flapping = try await harness.startGroup("flapping")
            let blackholed = try await harness.startGroup("blackholed")
            blackholed.fail(next: 10_000, with: .stall)
            let dead = try await harness.startGroup("dead")
            await harness.stopGroup("dead")

            let liveNames = SenderHarness.names(3, in: "live", port: live.port)
            let slowNames = SenderHarness.names(2, in: "slow", port: slow.port)
            let failingNames = SenderHarness.names(2, in: "failing", port: failing.port)
            let flappingNames = SenderHarness.names(2, in: "flapping", port: flapping.port)
            let blackholedNames = SenderHarness.names(2, in: "blackholed", port: blackholed.port)
            let deadNames = SenderHarness.names(2, in: "dead", port: dead.port)
            for name in failingNames { failing.fail(next: 2, with: .fail(status: 500), destination: name) }
            let everyone = liveNames + slowNames + failingNames + flappingNames + blackholedNames + deadNames

            let started = ContinuousClock.now
            try await harness.ingest(0..<30, rooms: rooms, destinations: everyone)
            #expect(await eventually {
                (liveNames + slowNames).allSatisfy { name in
                    firstArrivals((name.contains(".live.") ? live : slow).log(for: name)).count == 30
                } && flappingNames.allSatisfy { firstArrivals(flapping.log(for: $0)).count == 30 }
            })
            await harness.stopGroup("flapping")
            try await harness.ingest(30..<60, rooms: rooms, destinations: everyone)
            #expect(await eventually { liveNames.allSatisfy { firstArrivals(live.log(for: $0)).count == 60 } })
            // Blackholed requests are still waiting for their 20 s timeout: they held up no one.
            #expect(ContinuousClock.now - started < .seconds(15))
            #expect(await eventually { slowNames.allSatisfy { firstArrivals(slow.log(for: $0)).count == 60 } })

            // The flapping servers come back; the failing ones answer 500 once more, then heal.
            let flappingAgain = try await harness.startGroup("flapping", port: flapping.port)
            // Two failures wait at most 14 + 39 minutes (10 min, then ×2, each × 0.8-1.4).
            let stalled = Set(blackholedNames)
            #expect(await harness.advance(byMS: 60 * 60_000, stepMS: 5 * 60_000, ignoring: stalled))
            #expect(await eventually {
                failingNames.allSatisfy { firstArrivals(failing.log(for: $0)).count == 60 }
                    && flappingNames.allSatisfy { firstArrivals(flapping.log(for: $0)).count + firstArrivals(flappingAgain.log(for: $0)).count == 60 }
            })
            for name in liveNames { #expect(firstArrivals(live.log(for: name)) == Array(0..<60)) }
            for name in slowNames { #expect(firstArrivals(slow.log(for: name)) == Array(0..<60)) }
            for name in failingNames {
                #expect(firstArrivals(failing.log(for: name)) == Array(0..<60))
                #expect(failing.log(for: name).attemptCount >= 3)
            }
            for name in flappingNames {
                #expect(firstArrivals(flapping.log(for: name)) + firstArrivals(flappingAgain.log(for: name)) == Array(0..<60))
            }
            for name in blackholedNames { #expect(blackholed.log(for: name).transactionCount == 0) }

            // Four hours later the dead servers' backoff is past an hour: they will be caught up.
            #expect(await harness.advance(byMS: 4 * 3_600_000, stepMS: 5 * 60_000, ignoring: stalled))
            for name in deadNames {
                #expect(await harness.sender.status(of: name)?.phase == .catchingUp)
            }
            let revived = try await harness.startGroup("dead", port: dead.port)
            for name in deadNames {
                #expect(try await harness.sender.resetBackoffAndWake(name))
            }
            #expect(await eventually { deadNames.allSatisfy { revived.log(for: $0).pduIDs.count >= 3 } })
            // The newest PDU of each room, in stream order, and nothing else.
            for name in deadNames { #expect(revived.log(for: name).pduIDs == ["$57", "$58", "$59"]) }
            for name in deadNames {
                #expect(await eventually { await harness.sender.status(of: name)?.phase == .live })
            }
            #expect(live.rejectedSignatureCount + slow.rejectedSignatureCount + failing.rejectedSignatureCount == 0)
        }
    }

    @Test("a body the receiver refuses (400) is split until the one PDU it refuses is skipped; the rest arrive in order")
    func refusedBodiesAreSplitAndSkipped() async throws {
        let harness = try await SenderHarness(hosts: ["picky": 1])
        try await harness.withTearDown {
            let picky = try await harness.startGroup("picky")
            let name = SenderHarness.names(1, in: "picky", port: picky.port)[0]
            // 30 PDUs, then 15, 7, 3 and PDU 0 alone are refused; PDU 0 is skipped.
            picky.fail(next: 5, with: .fail(status: 400), destination: name)
            try await harness.ingest(0..<30, rooms: rooms, destinations: [name])
            #expect(await eventually { firstArrivals(picky.log(for: name)).count == 29 })
            #expect(firstArrivals(picky.log(for: name)) == Array(1..<30))
            #expect(await harness.sender.currentMetrics.unitsRejected == 1)
            #expect(await harness.sender.currentMetrics.destinationsInBackoff == 0)
        }
    }

    @Test("deliveries that finish one after the other share progress commits, and a stop writes all progress")
    func progressIsWrittenInBatches() async throws {
        let harness = try await SenderHarness(hosts: ["live": 20])
        try await harness.withTearDown {
            let live = try await harness.startGroup("live")
            let names = SenderHarness.names(20, in: "live", port: live.port)
            let commitsBefore = harness.outbox.committedTransactionCount
            var receipts: [String: Int64] = [:]
            for (number, name) in names.enumerated() {
                receipts[name] = try await harness.ingest(number..<(number + 1), rooms: rooms, destinations: [name]).streamOrdering
                #expect(await eventually { firstArrivals(live.log(for: name)) == [number] })
            }
            // 20 ingest commits, and the 20 deliveries' progress in fewer commits than deliveries.
            let progressCommits = harness.outbox.committedTransactionCount - commitsBefore - names.count
            #expect(progressCommits < names.count / 2, "\(progressCommits) commits for \(names.count) deliveries")
            _ = await harness.sender.shutdown(within: .seconds(5))
            for name in names {
                let record = try await harness.outbox.destination(name)
                #expect(record?.lastSuccessfulStreamOrdering == receipts[name], "\(name)")
            }
        }
    }

    @Test("the state of quiet destinations beyond 4× the connection cap is dropped, and one met again gets everything owed")
    func quietDestinationsAreForgottenAndMetAgain() async throws {
        let harness = try await SenderHarness(hosts: ["live": 30]) { $0.limits.maxConnections = 2 }
        try await harness.withTearDown {
            let live = try await harness.startGroup("live")
            let names = SenderHarness.names(30, in: "live", port: live.port)
            for (number, name) in names.enumerated() {
                try await harness.ingest(number..<(number + 1), rooms: rooms, destinations: [name])
                #expect(await eventually { firstArrivals(live.log(for: name)) == [number] })
            }
            #expect(await harness.waitUntilSettled())
            // A destination's state is dropped only once its delivery progress is written.
            harness.clock.advance(byMS: SenderScheduler.progressWriteDelayMS)
            #expect(await eventually { await harness.sender.currentMetrics.destinationsInMemory <= 4 * 2 })
            let held = await harness.sender.currentMetrics.destinationsInMemory
            #expect(held <= 4 * 2, "\(held) destinations held, 8 allowed while quiet")
            #expect(await harness.sender.status(of: names[0]) == nil, "the first met was quiet the longest")

            // Met again, forgotten or not: the new PDU and a to-device message, once each.
            let toDevice = #"{"content":{"message_id":"again","messages":{},"sender":"@alice:origin.test","type":"m.dummy"},"edu_type":"m.direct_to_device"}"#
            _ = try await harness.outbox.accept(IngestBatch(
                txnID: "again", pdus: [SenderHarness.pdu(100, room: rooms[0], destinations: names)],
                edus: [IncomingEDU(eduType: "m.direct_to_device", canonicalJSON: Array(toDevice.utf8), destinations: names)]))
            #expect(await eventually { names.allSatisfy { live.log(for: $0).edus.count == 1 && live.log(for: $0).pduIDs.count == 2 } })
            for (number, name) in names.enumerated() {
                #expect(firstArrivals(live.log(for: name)) == [number, 100], "\(name)")
                #expect(live.log(for: name).edus.count == 1, "\(name)")
            }
        }
    }

    @Test("a wall clock stepped by hours, forward or back, neither brings a backoff due nor holds it back")
    func wallClockSteps() async throws {
        let harness = try await SenderHarness(hosts: ["stepped": 1])
        try await harness.withTearDown {
            let server = try await harness.startGroup("stepped")
            await harness.stopGroup("stepped")
            let name = SenderHarness.names(1, in: "stepped", port: server.port)[0]
            try await harness.ingest(0..<1, rooms: rooms, destinations: [name])
            #expect(await eventually { await harness.sender.status(of: name)?.retryScheduled == true })
            // The sender's timer task re-arms its sleep whenever it is signalled, so the clock
            // may briefly have no sleeper: read the deadline once one is there.
            #expect(await eventually { harness.clock.nextDeadlineMS != nil })
            let retryAt = try #require(harness.clock.nextDeadlineMS)
            let revived = try await harness.startGroup("stepped", port: server.port)

            // NTP corrects a clock that booted 5 hours behind: the retry is not due any sooner.
            harness.clock.stepWallClock(byMS: 5 * 3_600_000)
            harness.clock.advance(byMS: 1)
            #expect(await eventually { harness.clock.nextDeadlineMS == retryAt })
            #expect(await harness.sender.status(of: name)?.retryScheduled == true)
            // …nor later when it is stepped back.
            harness.clock.stepWallClock(byMS: -10 * 3_600_000)
            harness.clock.advance(byMS: retryAt - harness.clock.monotonicMS())
            #expect(await eventually { firstArrivals(revived.log(for: name)) == [0] })
            // Delivery progress is written with the next batch, on the sender's clock.
            #expect(await eventually { await harness.sender.currentMetrics.transactionsSent == 1 })
            harness.clock.advance(byMS: SenderScheduler.progressWriteDelayMS)
            #expect(await eventually { (try? await harness.outbox.destination(name))?.retryIntervalMS == 0 },
                    "delivery cleared the stored backoff")
        }
    }

    @Test("past limits.max_pdus_in_memory the longest queues are dropped and read back from the outbox, nothing lost")
    func globalBudgetSpillsTheLongestQueues() async throws {
        let harness = try await SenderHarness(hosts: ["gone": 3]) { $0.limits.maxPDUsInMemory = 15 }
        try await harness.withTearDown {
            let gone = try await harness.startGroup("gone")
            await harness.stopGroup("gone")
            let names = SenderHarness.names(3, in: "gone", port: gone.port)
            try await harness.ingest(0..<10, rooms: rooms, destinations: names)
            // 30 references wanted, 15 allowed: the two longest queues go.
            #expect(await eventually { await harness.sender.currentMetrics.queueSpills >= 2 })
            #expect(await harness.waitUntilSettled())
            #expect(await harness.sender.currentMetrics.pdusInMemory <= 15)
            let back = try await harness.startGroup("gone", port: gone.port)
            for name in names { _ = try await harness.sender.resetBackoffAndWake(name) }
            #expect(await eventually { names.allSatisfy { firstArrivals(back.log(for: $0)).count >= 3 } })
            // Spilled or not, every PDU arrives in order: a spilled queue is read back from the outbox.
            #expect(await eventually { names.allSatisfy { firstArrivals(back.log(for: $0)).count == 10 } })
            for name in names { #expect(firstArrivals(back.log(for: name)) == Array(0..<10)) }
        }
    }

    @Test("5,000 destinations, half of them down for four days: memory stays inside the budget, then they are caught up")
    func fiveThousandDestinationsFourDayOutage() async throws {
        let perHalf = 2_500
        // Enough for every destination's first ten PDUs at once; what must not happen is
        // that four days of backoff make the dead half hold more.
        let total = 60_000
        let harness = try await SenderHarness(hosts: ["up": perHalf, "down": perHalf]) {
            $0.limits.maxConnections = 64
            $0.limits.maxTLSHandshakes = 4
            $0.limits.maxPDUsInMemoryPerDestination = 50
            $0.limits.maxPDUsInMemory = total
            $0.transport.requestTimeout = .seconds(10)
        }
        try await harness.withTearDown {
            let live = try await harness.startGroup("up")
            let dead = try await harness.startGroup("down")
            await harness.stopGroup("down")
            let liveNames = SenderHarness.names(perHalf, in: "up", port: live.port)
            let deadNames = SenderHarness.names(perHalf, in: "down", port: dead.port)
            let rooms = (0..<5).map { "!room\($0):origin.test" }
            let baselineKiB = ProcessMemory.currentKiB()
            var afterFirstDeliveryKiB = 0
            var peakKiB = baselineKiB
            var peakReferences = 0
            let started = ContinuousClock.now

            // PDUs on the first and the third day; four days of clock in half-hour steps.
            for day in 0..<4 {
                if day % 2 == 0 {
                    let numbers = (day * 5)..<(day * 5 + 10)
                    try await harness.ingest(numbers, rooms: rooms, destinations: liveNames + deadNames)
                    #expect(await eventually(.seconds(300)) {
                        liveNames.allSatisfy { live.log(for: $0).pduIDs.count >= numbers.upperBound }
                    })
                    print("day \(day): live half has PDUs up to \(numbers.upperBound - 1) after \(ContinuousClock.now - started); RSS \(ProcessMemory.currentKiB() / 1024) MiB")
                    if day == 0 { afterFirstDeliveryKiB = ProcessMemory.currentKiB() }
                }
                for _ in 0..<48 {
                    // Every retry that came due ends before the next half hour, as it would in four real days.
                    #expect(await harness.advance(byMS: 30 * 60_000, stepMS: 30 * 60_000))
                    let metrics = await harness.sender.currentMetrics
                    peakReferences = max(peakReferences, metrics.pdusInMemory)
                    peakKiB = max(peakKiB, ProcessMemory.currentKiB())
                }
            }
            let metrics = await harness.sender.currentMetrics
            #expect(peakReferences <= total)
            #expect(metrics.destinationsCatchingUp == deadNames.count)
            #expect(metrics.pdusInMemory == 0)
            for name in liveNames.prefix(50) { #expect(firstArrivals(live.log(for: name)) == Array(0..<20)) }
            // Measured in this process, which also runs the swarm's side of every connection:
            // meeting 5,000 destinations costs memory once (connections, TLS sessions, DNS and
            // ranking entries, the swarm's records); four days of outage must not add to it.
            let outageGrowthMiB = Double(peakKiB - afterFirstDeliveryKiB) / 1024
            print("""
                5,000 destinations: RSS \(baselineKiB / 1024) MiB before, \(afterFirstDeliveryKiB / 1024) MiB after the \
                first delivery, peak \(peakKiB / 1024) MiB over four days; peak PDU references \(peakReferences)
                """)
            #expect(outageGrowthMiB < 32, "RSS grew by \(outageGrowthMiB) MiB during the outage")
            #expect(Double(peakKiB - baselineKiB) / Double(2 * perHalf) < 24, "more than 24 KiB per destination")

            let revived = try await harness.startGroup("down", port: dead.port)
            for name in deadNames { _ = try await harness.sender.resetBackoffAndWake(name) }
            #expect(await eventually(.seconds(300)) { deadNames.allSatisfy { revived.log(for: $0).pduIDs.count >= 5 } })
            for name in deadNames.prefix(50) { #expect(revived.log(for: name).pduIDs == ["$15", "$16", "$17", "$18", "$19"]) }
            print("caught up the revived half after \(ContinuousClock.now - started)")
        }
    }

    @Test("a query's timeout runs on the sender's clock: a server that never answers fails the query when that clock passes it")
    func queryTimeoutFollowsTheSenderClock() async throws {
        let harness = try await SenderHarness(hosts: ["silent": 1])
        try await harness.withTearDown {
            let silent = try await harness.startGroup("silent")
            let name = SenderHarness.names(1, in: "silent", port: silent.port)[0]
            silent.fail(next: 10, with: .stall)
            let querier = FederationQuerier(client: harness.stack.client, sender: harness.sender, logger: Logger(label: "query"))
            let query = FederationQuery(destination: try ServerName(name), method: "GET",
                                        path: "/_matrix/federation/v1/query/profile", query: [("user_id", "@a:\(name)")],
                                        body: nil, timeout: .seconds(3_600), ignoreBackoff: false)
            let answer = Mutex<FederationQueryResult?>(nil)
            Task {
                let outcome = await querier.send(query)
                answer.withLock { $0 = outcome }
            }
            // An hour of the sender's clock passes in moments of real time; the first attempt never returns.
            let answered = await eventually(.seconds(60)) {
                harness.clock.advance(byMS: 600_000)
                return answer.withLock { $0 != nil }
            }
            let outcome = answer.withLock { $0 }
            guard answered, case .failed(let reason) = outcome else {
                Issue.record("expected the query to time out on the sender's clock, got \(String(describing: outcome))")
                return
            }
            #expect(reason.contains("no answer within"))
        }
    }
}
