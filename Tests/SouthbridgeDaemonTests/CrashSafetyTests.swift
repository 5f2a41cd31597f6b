import Federation
import FuzzSupport
import Glibc
import Logging
import Outbox
import SouthbridgeSwarm
import SouthbridgeTestSupport
import Synchronization
import Testing

/// What the homeserver's clients know: the PDU numbers of every txnId southbridge acknowledged, and the txnIds
/// sent without an answer (the daemon was killed first), which a homeserver sends again.
private final class IngestLedger: Sendable {
    struct Transaction: Sendable {
        let txnID: String
        let numbers: Range<Int>
    }

    private struct State {
        var acknowledged: [Transaction] = []
        var unanswered: [Int: Transaction] = [:]
        var nextNumber: [Int: Int] = [:]
    }

    private let state = Mutex(State())
    /// Acknowledgements since the daemon last started, to pick the moment of the next kill.
    let acknowledgedThisRun = Atomic<Int>(0)
    /// txnIds acknowledged when sent again after a kill cut their first attempt.
    let acknowledgedWhenResent = Atomic<Int>(0)

    var acknowledgedNumbers: [Int] { state.withLock { $0.acknowledged.flatMap(\.numbers) } }
    var acknowledgedCount: Int { state.withLock { $0.acknowledged.count } }

    /// The txnId client `client` sends next: the one left unanswered if any, else a new one of three PDUs.
    func next(for client: Int) -> Transaction {
        state.withLock { state in
            if let unanswered = state.unanswered[client] { return unanswered }
            let start = state.nextNumber[client, default: client * 1_000_000]
            state.nextNumber[client] = start + 3
            return Transaction(txnID: "client\(client)-\(start)", numbers: start..<start + 3)
        }
    }

    func answered(_ transaction: Transaction, by client: Int) {
        let resent = state.withLock { state in
            state.acknowledged.append(transaction)
            return state.unanswered.removeValue(forKey: client) != nil
        }
        if resent { acknowledgedWhenResent.add(1, ordering: .relaxed) }
        acknowledgedThisRun.add(1, ordering: .relaxed)
    }

    func unanswered(_ transaction: Transaction, by client: Int) {
        state.withLock { $0.unanswered[client] = transaction }
    }
}

@Suite("southbridge binary, killed again and again")
struct CrashSafetyTests {
    static let clients = 4
    static let kills = 20

    @Test("SIGKILL 20 times under concurrent ingest: acknowledged txnIds are stored once and delivered, re-sent ones stored once")
    func killedUnderConcurrentIngest() async throws {
        // Runs are shorter than the sender's progress flush, so each restart owes the live servers everything
        // again; a budget above that keeps them reading their backlog in order instead of catching up.
        let fixture = try await DaemonProcess(destinations: 4) { $0.limits.maxPDUsInMemoryPerDestination = 100_000 }
        do {
            try await killRepeatedly(fixture)
        } catch {
            await fixture.tearDown()
            throw error
        }
        await fixture.tearDown()
    }

    private func killRepeatedly(_ fixture: DaemonProcess) async throws {
        let live = Array(fixture.swarm.servers.prefix(3))
        // A destination that never answers keeps every PDU in the outbox, where they are counted at the end.
        let dead = fixture.swarm.servers[3]
        dead.fail(next: 1_000_000, with: .fail(status: 503))
        let ledger = IngestLedger()
        var random = SplitMix64(seed: 0x5EED_C4A5)

        for kill in 0...Self.kills {
            try await fixture.start()
            ledger.acknowledgedThisRun.store(0, ordering: .relaxed)
            let killAfter = Int.random(in: 2...24, using: &random)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for client in 0..<Self.clients {
                    group.addTask {
                        await sendUntilCut(fixture, ledger: ledger, client: client, stopAfter: kill == Self.kills ? 5 : nil)
                    }
                }
                if kill < Self.kills {
                    let reached = await DaemonProcess.eventually(timeout: .seconds(30)) {
                        ledger.acknowledgedThisRun.load(ordering: .relaxed) >= killAfter
                    }
                    #expect(reached, "run \(kill): \(ledger.acknowledgedThisRun.load(ordering: .relaxed)) acknowledgements")
                    fixture.process?.signal(SIGKILL)
                    #expect(await fixture.process?.waitForExit(timeout: .seconds(10)) == -SIGKILL)
                }
                try await group.waitForAll()
            }
        }

        let acknowledged = ledger.acknowledgedNumbers
        #expect(ledger.acknowledgedCount >= Self.kills * 2)
        #expect(ledger.acknowledgedWhenResent.load(ordering: .relaxed) >= Self.kills / 2,
                "most kills cut a request in flight, which is sent again")
        let delivered = await DaemonProcess.eventually(timeout: .seconds(60)) {
            live.allSatisfy { Set(pduNumbers($0)).isSuperset(of: acknowledged) }
        }
        #expect(delivered, "southbridge printed:\n\(fixture.process?.output() ?? "")")
        for server in live {
            #expect(Set(pduNumbers(server)) == Set(acknowledged), "\(server.serverName) got other PDUs than acknowledged")
        }

        fixture.process?.signal(SIGTERM)
        #expect(await fixture.process?.waitForExit(timeout: .seconds(20)) == 0)
        let outbox = try Outbox(path: fixture.configuration.storage.path, logger: Logger(label: "test"))
        let stored = try await outbox.pendingPDUs(for: dead.serverName, after: 0, limit: .max)
        outbox.close()
        let storedNumbers = stored.compactMap { pdu -> Int? in
            guard case .integer(let number)? = (try? JSONValue.parse(pdu.canonicalJSON))?["content"]?["n"] else { return nil }
            return Int(number)
        }
        #expect(storedNumbers.sorted() == acknowledged.sorted(), "each acknowledged PDU is stored exactly once")

        let check = try ChildProcess(executable: DaemonProcess.binaryPath,
                                     arguments: ["check-storage", "--config", fixture.configPath],
                                     logPath: fixture.directory.path + "/check-storage.log")
        #expect(await check.waitForExit(timeout: .seconds(20)) == 0, "\(check.output())")
        #expect(check.output().contains("ok: integrity_check"))
    }

    /// One homeserver client: sends its unanswered txnId again, then new ones, until the daemon is killed
    /// (or, on the last run, `stopAfter` acknowledgements).
    private func sendUntilCut(_ fixture: DaemonProcess, ledger: IngestLedger, client: Int, stopAfter: Int?) async {
        // The daemon may be killed before this client got to connect: it then sends at the next run.
        guard let connection = try? await fixture.client() else { return }
        var sent = 0
        while stopAfter.map({ sent < $0 }) ?? true {
            let transaction = ledger.next(for: client)
            let body = DaemonProcess.ingestBody(transaction.numbers, destinations: fixture.swarm.serverNames)
            guard let response = try? await connection.send(txnID: transaction.txnID, body: body), response.status == 200 else {
                ledger.unanswered(transaction, by: client)
                break
            }
            ledger.answered(transaction, by: client)
            sent += 1
        }
        await connection.close()
    }
}
