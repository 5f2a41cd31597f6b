import Federation
import Sender
import Testing

@Suite("EphemeralEDUBuffer collapses, expires, bounds and orders ephemeral EDUs")
struct EphemeralEDUBufferTests {
    typealias F = EDUFixtures
    let dest = "b.example"

    @Test func typingCollapsesPerRoomAndUser() throws {
        var buffer = EphemeralEDUBuffer(maxEntries: 100)
        buffer.add(try F.typing("!r1:a", "@u1:a", true), for: [dest], nowMS: 0)
        buffer.add(try F.typing("!r1:a", "@u2:a"), for: [dest], nowMS: 1)
        buffer.add(try F.typing("!r2:a", "@u1:a"), for: [dest], nowMS: 2)
        buffer.add(try F.typing("!r1:a", "@u1:a", false), for: [dest], nowMS: 3)
        #expect(buffer.count == 3)
        let edus = buffer.take(for: dest, maxEDUs: 100, nowMS: 4)
        #expect(edus == [
            F.edu("m.typing", F.typingContent("!r1:a", "@u2:a")),
            F.edu("m.typing", F.typingContent("!r2:a", "@u1:a")),
            F.edu("m.typing", F.typingContent("!r1:a", "@u1:a", false)),
        ])
        #expect(buffer.count == 0)
        #expect(!buffer.hasPending(for: dest))
        #expect(buffer.destinationCount == 0)
    }

    @Test func presenceCollapsesPerUserIntoOneEDU() throws {
        var buffer = EphemeralEDUBuffer(maxEntries: 100)
        buffer.add(try F.presence([F.presenceState("@u1:a"), F.presenceState("@u2:a")]), for: [dest], nowMS: 0)
        buffer.add(try F.presence([F.presenceState("@u1:a", "offline")]), for: [dest], nowMS: 0)
        #expect(buffer.count == 2)
        #expect(buffer.take(for: dest, maxEDUs: 100, nowMS: 0) == [
            F.edu("m.presence", ["push": [F.presenceState("@u2:a"), F.presenceState("@u1:a", "offline")]]),
        ])
    }

    @Test func presenceLastActiveAgoGrowsWhileQueued() throws {
        var buffer = EphemeralEDUBuffer(maxEntries: 100)
        buffer.add(try F.presence([F.presenceState("@u1:a", lastActiveAgo: 5000)]), for: [dest], nowMS: 1000)
        #expect(buffer.take(for: dest, maxEDUs: 100, nowMS: 4000) == [
            F.edu("m.presence", ["push": [F.presenceState("@u1:a", lastActiveAgo: 8000)]]),
        ])
    }

    @Test func receiptsCollapsePerRoomTypeUserAndThreadAndGroupAsSynapseDoes() throws {
        var buffer = EphemeralEDUBuffer(maxEntries: 100)
        buffer.add(try F.receipt("!r1:a", "@u1:a", "$e1"), for: [dest], nowMS: 0)
        buffer.add(try F.receipt("!r1:a", "@u1:a", "$e2"), for: [dest], nowMS: 0)
        buffer.add(try F.receipt("!r1:a", "@u1:a", "$e3", threadID: "$root"), for: [dest], nowMS: 0)
        buffer.add(try F.receipt("!r1:a", "@u2:a", "$e4"), for: [dest], nowMS: 0)
        buffer.add(try F.receipt("!r2:a", "@u1:a", "$e5"), for: [dest], nowMS: 0)
        buffer.add(try F.receipt("!r1:a", "@u1:a", "$e6", type: "org.example.receipt"), for: [dest], nowMS: 0)
        #expect(buffer.count == 5)
        let edus = buffer.take(for: dest, maxEDUs: 100, nowMS: 0)
        #expect(edus == [
            F.edu("m.receipt", [
                "!r1:a": [
                    "m.read": ["@u1:a": F.receiptValue("$e2"), "@u2:a": F.receiptValue("$e4")],
                    "org.example.receipt": ["@u1:a": F.receiptValue("$e6")],
                ],
                "!r2:a": ["m.read": ["@u1:a": F.receiptValue("$e5")]],
            ]),
            F.edu("m.receipt", ["!r1:a": ["m.read": ["@u1:a": F.receiptValue("$e3", threadID: "$root")]]]),
        ])
        #expect(buffer.count == 0)
    }

    enum Kind: String, CaseIterable, Sendable {
        case typing, presence, receipt
    }

    @Test("Stale entries are dropped at take time, exactly at the lifetime", arguments: [
        (Kind.typing, Int64(59_999), true), (.typing, 60_000, false),
        (.presence, 599_999, true), (.presence, 600_000, false),
        (.receipt, 10_000_000_000, true),
    ])
    func expiry(kind: Kind, ageMS: Int64, delivered: Bool) throws {
        var buffer = EphemeralEDUBuffer(maxEntries: 10)
        let edu: EphemeralEDU = switch kind {
        case .typing: try F.typing("!r:a", "@u:a")
        case .presence: try F.presence([F.presenceState("@u:a")])
        case .receipt: try F.receipt("!r:a", "@u:a", "$e")
        }
        let added: Int64 = 1_700_000_000_000
        buffer.add(edu, for: [dest], nowMS: added)
        let edus = buffer.take(for: dest, maxEDUs: 100, nowMS: added + ageMS)
        #expect(edus.count == (delivered ? 1 : 0))
        #expect(buffer.droppedExpired == (delivered ? 0 : 1))
        #expect(buffer.count == 0)
        #expect(!buffer.hasPending(for: dest))
    }

    @Test func expiryOnlyTakesTheStaleOnes() throws {
        var buffer = EphemeralEDUBuffer(maxEntries: 10)
        buffer.add(try F.typing("!r:a", "@old:a"), for: [dest], nowMS: 0)
        buffer.add(try F.typing("!r:a", "@new:a"), for: [dest], nowMS: 30_000)
        #expect(buffer.take(for: dest, maxEDUs: 10, nowMS: 60_000) == [F.edu("m.typing", F.typingContent("!r:a", "@new:a"))])
        #expect(buffer.droppedExpired == 1)
    }

    @Test("The oldest entry of any destination is evicted at the bound, 5,000 destinations")
    func evictionAcrossDestinations() throws {
        var buffer = EphemeralEDUBuffer(maxEntries: 1000)
        let destinations = (0..<5000).map { "s\($0).example" }
        for (index, destination) in destinations.enumerated() {
            buffer.add(try F.typing("!r:a", "@u:a"), for: [destination], nowMS: Int64(index))
        }
        #expect(buffer.count == 1000)
        #expect(buffer.droppedForMemory == 4000)
        #expect(buffer.droppedExpired == 0)
        #expect(buffer.destinationCount == 1000)
        #expect(destinations[..<4000].allSatisfy { !buffer.hasPending(for: $0) })
        #expect(destinations[4000...].allSatisfy { buffer.hasPending(for: $0) })
    }

    @Test("A fan-out of receipts to 5,000 destinations stays within the bound")
    func fanOutStaysBounded() throws {
        var buffer = EphemeralEDUBuffer(maxEntries: 20_000)
        let destinations = (0..<5000).map { "s\($0).example" }
        for round in 0..<20 {
            buffer.add(try F.receipt("!r\(round):a", "@u:a", "$e\(round)"), for: destinations, nowMS: Int64(round))
            #expect(buffer.count <= 20_000)
        }
        #expect(buffer.count == 20_000)
        #expect(buffer.droppedForMemory == 80_000)
        let edus = buffer.take(for: destinations[0], maxEDUs: 100, nowMS: 20)
        let (type, content) = try F.decode(try #require(edus.first))
        #expect(type == "m.receipt")
        #expect(content.objectValue?.keys.sorted() == ["!r16:a", "!r17:a", "!r18:a", "!r19:a"])
    }

    @Test func aReplacedEntryCountsAsNewForEviction() throws {
        var buffer = EphemeralEDUBuffer(maxEntries: 3)
        buffer.add(try F.typing("!r:a", "@u:a"), for: ["d1"], nowMS: 0)
        buffer.add(try F.typing("!r:a", "@u:a"), for: ["d2"], nowMS: 0)
        buffer.add(try F.typing("!r:a", "@u:a"), for: ["d3"], nowMS: 0)
        buffer.add(try F.typing("!r:a", "@u:a", false), for: ["d1"], nowMS: 0)
        #expect(buffer.count == 3)
        #expect(buffer.droppedForMemory == 0)
        buffer.add(try F.typing("!r:a", "@u:a"), for: ["d4"], nowMS: 0)
        #expect(buffer.droppedForMemory == 1)
        #expect(["d1", "d3", "d4"].allSatisfy { buffer.hasPending(for: $0) })
        #expect(!buffer.hasPending(for: "d2"))
    }

    @Test func anEvictedStaleEntryCountsAsExpired() throws {
        var buffer = EphemeralEDUBuffer(maxEntries: 2)
        buffer.add(try F.typing("!r:a", "@u:a"), for: ["d1"], nowMS: 0)
        buffer.add(try F.receipt("!r:a", "@u:a", "$e"), for: ["d2"], nowMS: 0)
        buffer.add(try F.receipt("!r:a", "@u:a", "$e"), for: ["d3"], nowMS: 60_000)
        #expect(buffer.droppedExpired == 1)
        buffer.add(try F.receipt("!r:a", "@u:a", "$e"), for: ["d4"], nowMS: 60_000)
        #expect(buffer.droppedForMemory == 1)
        #expect(buffer.count == 2)
    }

    @Test func takenEntriesAreNotEvictedTwice() throws {
        var buffer = EphemeralEDUBuffer(maxEntries: 2)
        for round in 0..<10_000 {
            buffer.add(try F.typing("!r:a", "@u\(round % 3):a"), for: ["d\(round % 2)"], nowMS: Int64(round))
            if round % 5 == 0 { _ = buffer.take(for: "d\(round % 2)", maxEDUs: 100, nowMS: Int64(round)) }
            #expect(buffer.count <= 2)
        }
        #expect(buffer.count == 2)
    }

    @Test("Transaction order: one presence EDU of 50, five receipt EDUs, then typing")
    func takeOrderAndLimits() throws {
        var buffer = EphemeralEDUBuffer(maxEntries: 1000)
        buffer.add(try F.presence((0..<120).map { F.presenceState("@p\($0):a") }), for: [dest], nowMS: 0)
        // Twelve receipts of one user in one room, each in its own thread: twelve EDUs' worth.
        for thread in 0..<12 {
            buffer.add(try F.receipt("!r:a", "@u:a", "$e\(thread)", threadID: "$t\(thread)"), for: [dest], nowMS: 0)
        }
        for user in 0..<10 { buffer.add(try F.typing("!r:a", "@t\(user):a"), for: [dest], nowMS: 0) }

        var edus = try buffer.take(for: dest, maxEDUs: 100, nowMS: 0).map(F.decode)
        #expect(edus.map(\.eduType) == ["m.presence"] + Array(repeating: "m.receipt", count: 5)
                                         + Array(repeating: "m.typing", count: 10))
        #expect(edus[0].content["push"]?.arrayValue?.map { $0["user_id"]?.stringValue } == (0..<50).map { "@p\($0):a" })
        #expect(buffer.count == 70 + 7)

        edus = try buffer.take(for: dest, maxEDUs: 3, nowMS: 0).map(F.decode)
        #expect(edus.map(\.eduType) == ["m.presence", "m.receipt", "m.receipt"])
        #expect(edus[0].content["push"]?[0]?["user_id"] == "@p50:a")
        #expect(buffer.count == 20 + 5)

        #expect(buffer.take(for: dest, maxEDUs: 0, nowMS: 0).isEmpty)
        #expect(buffer.count == 25)
    }

    @Test func leadingAndTypingCanBeTakenSeparately() throws {
        var buffer = EphemeralEDUBuffer(maxEntries: 100)
        buffer.add(try F.typing("!r:a", "@u:a"), for: [dest], nowMS: 0)
        buffer.add(try F.receipt("!r:a", "@u:a", "$e"), for: [dest], nowMS: 0)
        let leading = try buffer.takeLeading(for: dest, maxEDUs: 100, nowMS: 0).map(F.decode)
        #expect(leading.map(\.eduType) == ["m.receipt"])
        #expect(buffer.hasPending(for: dest))
        #expect(try buffer.takeTyping(for: dest, maxEDUs: 100, nowMS: 0).map(F.decode).map(\.eduType) == ["m.typing"])
        #expect(!buffer.hasPending(for: dest))
    }

    @Test func destinationsAreIndependent() throws {
        var buffer = EphemeralEDUBuffer(maxEntries: 100)
        buffer.add(try F.typing("!r:a", "@u:a"), for: ["d1", "d2"], nowMS: 0)
        #expect(buffer.count == 2)
        #expect(buffer.take(for: "d1", maxEDUs: 100, nowMS: 0).count == 1)
        #expect(buffer.hasPending(for: "d2"))
        #expect(buffer.take(for: "unknown.example", maxEDUs: 100, nowMS: 0).isEmpty)
        #expect(buffer.destinationCount == 1)
    }

    @Test func removeAllCountsAsExpiredAndLeavesNothingBehind() throws {
        var buffer = EphemeralEDUBuffer(maxEntries: 100)
        buffer.add(try F.presence([F.presenceState("@u1:a"), F.presenceState("@u2:a")]), for: [dest, "other"], nowMS: 0)
        buffer.add(try F.receipt("!r:a", "@u:a", "$e"), for: [dest], nowMS: 0)
        buffer.removeAll(for: dest)
        #expect(buffer.droppedExpired == 3)
        #expect(buffer.count == 2)
        #expect(!buffer.hasPending(for: dest))
        #expect(buffer.destinationCount == 1)
        #expect(buffer.take(for: dest, maxEDUs: 100, nowMS: 0).isEmpty)
    }
}
