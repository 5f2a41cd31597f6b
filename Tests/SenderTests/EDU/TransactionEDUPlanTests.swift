import Federation
import Outbox
import Sender
import Testing

@Suite("TransactionEDUPlan chooses a transaction's EDUs under Synapse's limits")
struct TransactionEDUPlanTests {
    typealias F = EDUFixtures
    let dest = "b.example"

    /// Persistent EDUs of each category with ids in blocks (to-device 1000+, device lists 2000+,
    /// others 3000+), interleaved oldest first as the Outbox would return them.
    static func stored(toDevice: Int, deviceLists: Int, others: Int) -> [StoredEDU] {
        var edus: [StoredEDU] = []
        for index in 0..<max(toDevice, deviceLists, others) {
            if index < toDevice { edus.append(make(1000 + index, "m.direct_to_device")) }
            if index < deviceLists {
                edus.append(make(2000 + index, index % 3 == 2 ? "org.matrix.signing_key_update"
                                   : index % 3 == 1 ? "m.signing_key_update" : "m.device_list_update"))
            }
            if index < others { edus.append(make(3000 + index, "org.example.persistent")) }
        }
        return edus
    }

    static func make(_ id: Int, _ type: String) -> StoredEDU {
        StoredEDU(eduID: Int64(id), eduType: type, canonicalJSON: F.edu(type, ["n": .integer(Int64(id))]))
    }

    struct Case: Sendable, CustomTestStringConvertible {
        var receiptEDUs: Int
        var toDevice: Int
        var deviceLists: Int
        var others: Int
        var typing: Int
        var expected: (toDevice: Int, deviceLists: Int, others: Int, typing: Int)
        var testDescription: String {
            "\(receiptEDUs) receipt EDUs, \(toDevice) to-device, \(deviceLists) device-list, \(others) other, \(typing) typing"
        }
    }

    @Test("Slots per category", arguments: [
        Case(receiptEDUs: 0, toDevice: 0, deviceLists: 0, others: 0, typing: 3, expected: (0, 0, 0, 3)),
        Case(receiptEDUs: 0, toDevice: 200, deviceLists: 0, others: 0, typing: 5, expected: (90, 0, 0, 5)),
        Case(receiptEDUs: 0, toDevice: 200, deviceLists: 30, others: 0, typing: 5, expected: (90, 10, 0, 0)),
        Case(receiptEDUs: 5, toDevice: 200, deviceLists: 30, others: 0, typing: 0, expected: (85, 10, 0, 0)),
        Case(receiptEDUs: 0, toDevice: 20, deviceLists: 200, others: 0, typing: 0, expected: (20, 80, 0, 0)),
        Case(receiptEDUs: 0, toDevice: 10, deviceLists: 10, others: 200, typing: 50, expected: (10, 10, 80, 0)),
        Case(receiptEDUs: 0, toDevice: 0, deviceLists: 0, others: 50, typing: 80, expected: (0, 0, 50, 50)),
        Case(receiptEDUs: 2, toDevice: 3, deviceLists: 4, others: 5, typing: 6, expected: (3, 4, 5, 6)),
    ])
    func slots(_ testCase: Case) throws {
        var buffer = EphemeralEDUBuffer(maxEntries: 10_000)
        for thread in 0..<testCase.receiptEDUs {
            buffer.add(try F.receipt("!r:a", "@u:a", "$e", threadID: "$t\(thread)"), for: [dest], nowMS: 0)
        }
        for user in 0..<testCase.typing { buffer.add(try F.typing("!r:a", "@t\(user):a"), for: [dest], nowMS: 0) }
        let persistent = Self.stored(toDevice: testCase.toDevice, deviceLists: testCase.deviceLists, others: testCase.others)

        let plan = TransactionEDUPlan.assemble(for: dest, ephemeral: &buffer, persistent: persistent, nowMS: 0)

        let expected = testCase.expected
        let ids = plan.persistentEDUIDs
        var expectedIDs: [Int64] = []
        for (base, count) in [(1000, expected.toDevice), (2000, expected.deviceLists), (3000, expected.others)] {
            expectedIDs += (0..<count).map { Int64(base + $0) }
        }
        #expect(ids == expectedIDs)
        let types = try plan.edus.map(F.decode).map(\.eduType)
        let deviceListTypes = TransactionEDUPlan.deviceListEDUTypes
        let category: (String) -> Int = { type in
            switch type {
            case "m.receipt": 0
            case "m.direct_to_device": 1
            case _ where deviceListTypes.contains(type): 2
            case "m.typing": 4
            default: 3
            }
        }
        #expect(types.map(category) == types.map(category).sorted(), "categories in transaction order")
        #expect(types.filter { $0 == "m.receipt" }.count == testCase.receiptEDUs)
        #expect(types.filter { $0 == "m.typing" }.count == expected.typing)
        #expect(plan.edus.count <= TransactionBody.maximumEDUCount)
        let persistentBytes = plan.edus.dropFirst(testCase.receiptEDUs).prefix(ids.count)
        #expect(Array(persistentBytes) == ids.map { id in persistent.first { $0.eduID == id }!.canonicalJSON })
    }

    @Test("A to-device flood leaves ten slots for device lists after presence and receipts")
    func toDeviceFloodReservesDeviceListSlots() throws {
        var buffer = EphemeralEDUBuffer(maxEntries: 10_000)
        buffer.add(try F.presence((0..<80).map { F.presenceState("@p\($0):a") }), for: [dest], nowMS: 0)
        buffer.add(try F.receipt("!r1:a", "@u:a", "$e1"), for: [dest], nowMS: 0)
        buffer.add(try F.receipt("!r2:a", "@u:a", "$e2", threadID: "$t"), for: [dest], nowMS: 0)
        buffer.add(try F.receipt("!r2:a", "@u:a", "$e3"), for: [dest], nowMS: 0)
        buffer.add(try F.typing("!r:a", "@u:a"), for: [dest], nowMS: 0)
        let persistent = Self.stored(toDevice: 500, deviceLists: 40, others: 10)

        let plan = TransactionEDUPlan.assemble(for: dest, ephemeral: &buffer, persistent: persistent, nowMS: 0)

        let types = try plan.edus.map(F.decode).map(\.eduType)
        #expect(plan.edus.count == 100)
        #expect(types.prefix(3) == ["m.presence", "m.receipt", "m.receipt"])
        #expect(types.filter { $0 == "m.direct_to_device" }.count == 87)
        #expect(types.filter { TransactionEDUPlan.deviceListEDUTypes.contains($0) }.count == 10)
        #expect(plan.persistentEDUIDs.count == 97)
        #expect(buffer.hasPending(for: dest), "30 presence states and the typing state wait for the next transaction")
        #expect(buffer.count == 30 + 1)
    }

    @Test func smallerLimitsAreHonoured() throws {
        #expect(TransactionEDUPlan.selectPersistent(Self.stored(toDevice: 5, deviceLists: 5, others: 5), slots: 0).isEmpty)
        let chosen = TransactionEDUPlan.selectPersistent(Self.stored(toDevice: 5, deviceLists: 5, others: 5), slots: 12)
        #expect(chosen.map(\.eduID) == [1000, 1001, 2000, 2001, 2002, 2003, 2004, 3000, 3001, 3002, 3003, 3004])
    }
}
