import Federation
import Sender
import Testing

@Suite("ReadReceiptPacer sends receipts at once only where Synapse does")
struct ReadReceiptPacerTests {
    static let now: Int64 = 1_700_000_000_000
    static let nine = (1...9).map { "s\($0).example" }
    static let ten = (1...10).map { "s\($0).example" }

    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var destinations: [String]
        /// The receipted event's age and sender server, or nil when it was never recorded.
        var event: (ageMS: Int64, senderServer: String)?
        var immediate: [String]
        var testDescription: String { name }
    }

    @Test("Decisions", arguments: [
        Case(name: "fewer than 10 destinations, old event", destinations: nine,
             event: (3_600_000, "s4.example"), immediate: nine),
        Case(name: "fewer than 10 destinations, unknown event", destinations: nine, event: nil, immediate: nine),
        Case(name: "10 destinations, event received 59,999 ms ago", destinations: ten,
             event: (59_999, "s4.example"), immediate: ten),
        Case(name: "10 destinations, event received just now", destinations: ten,
             event: (0, "s4.example"), immediate: ten),
        Case(name: "10 destinations, event received 60,000 ms ago", destinations: ten,
             event: (60_000, "s4.example"), immediate: ["s4.example"]),
        Case(name: "10 destinations, old event from a server not among them", destinations: ten,
             event: (600_000, "elsewhere.example"), immediate: []),
        Case(name: "10 destinations, unknown event", destinations: ten, event: nil, immediate: []),
    ])
    func decisions(_ testCase: Case) {
        var pacer = ReadReceiptPacer(recentEventCapacity: 100)
        if let event = testCase.event {
            pacer.eventReceived(eventID: "$e", senderServer: event.senderServer, receivedMS: Self.now - event.ageMS)
        }
        let delivery = pacer.schedule(receiptFor: ["$e"], to: testCase.destinations, nowMS: Self.now)
        #expect(delivery.immediate == testCase.immediate)
        #expect(delivery.delayed == testCase.destinations.filter { !testCase.immediate.contains($0) })
    }

    @Test func severalEventsMakeEachKnownSenderImmediate() throws {
        var pacer = ReadReceiptPacer(recentEventCapacity: 100)
        pacer.eventReceived(eventID: "$a", senderServer: "s2.example", receivedMS: Self.now - 120_000)
        pacer.eventReceived(eventID: "$b", senderServer: "s7.example", receivedMS: Self.now - 90_000)
        let edu = try EDUFixtures.parse(receipts: ["$a", "$b", "$unknown"])
        let delivery = pacer.schedule(receiptFor: edu.receiptedEventIDs, to: Self.ten, nowMS: Self.now)
        #expect(delivery.immediate == ["s2.example", "s7.example"])
        #expect(delivery.delayed.count == 8)

        pacer.eventReceived(eventID: "$c", senderServer: "s9.example", receivedMS: Self.now - 1000)
        #expect(pacer.schedule(receiptFor: ["$a", "$c"], to: Self.ten, nowMS: Self.now).immediate == Self.ten)
    }

    @Test func recentEventsForgetsTheLongestRecordedFirst() {
        var events = RecentEvents(capacity: 3)
        events.record(eventID: "$1", senderServer: "a", receivedMS: 1)
        events.record(eventID: "$2", senderServer: "b", receivedMS: 2)
        events.record(eventID: "$3", senderServer: "c", receivedMS: 3)
        events.record(eventID: "$1", senderServer: "a", receivedMS: 4)
        events.record(eventID: "$4", senderServer: "d", receivedMS: 5)
        #expect(events.count == 3)
        #expect(events.event("$2") == nil)
        #expect(events.event("$1") == RecentEvents.Event(receivedMS: 4, senderServer: "a"))
        #expect(events.event("$4")?.senderServer == "d")
    }

    @Test func recentEventsStaysWithinCapacityUnderChurn() {
        var events = RecentEvents(capacity: 100)
        for index in 0..<50_000 {
            events.record(eventID: "$\(index % 150)", senderServer: "s", receivedMS: Int64(index))
            #expect(events.count <= 100)
        }
        #expect(events.event("$149")?.receivedMS == 49_949)
    }

    @Test("Server name of a user ID", arguments: [
        ("@alice:example.org", "example.org"), ("@bob:example.org:8448", "example.org:8448"),
        ("@c:[::1]:8448", "[::1]:8448"), ("nocolon", nil), ("@d:", nil),
    ] as [(String, String?)])
    func serverName(userID: String, expected: String?) {
        #expect(UserID.serverName(of: userID) == expected)
    }

    @Test func theDelayedQueueFollowsTheRateSetting() {
        let queue = ReadReceiptPacer.delayedWakeupQueue()
        #expect(queue.interval == .milliseconds(20))
        #expect(queue.maxTimeInQueue == .seconds(30))
        #expect(ReadReceiptPacer.delayedWakeupQueue(transactionsPerRoomPerSecond: 4).interval == .milliseconds(250))
    }
}

extension EDUFixtures {
    /// One `m.receipt` EDU with a receipt per event, each by another user.
    static func parse(receipts eventIDs: [String]) throws -> EphemeralEDU {
        var users: [String: JSONValue] = [:]
        for (index, eventID) in eventIDs.enumerated() { users["@u\(index):a"] = receiptValue(eventID) }
        return try #require(try EphemeralEDU.parse(eduType: "m.receipt", content: ["!r:a": ["m.read": .object(users)]]))
    }
}
