import Sender
import Testing

@Suite("DestinationWakeupQueue paces wake-ups with an injected clock")
struct DestinationWakeupQueueTests {
    let start = Duration.seconds(86_400)

    @Test func wakesOnePerIntervalInOrder() {
        var queue = DestinationWakeupQueue(interval: .milliseconds(100))
        for name in ["a", "b", "c"] { queue.enqueue(name) }
        var due = queue.due(at: start)
        #expect(due.names == ["a"])
        #expect(due.nextAt == start + .milliseconds(100))
        #expect(queue.due(at: start + .milliseconds(50)).names.isEmpty)
        due = queue.due(at: start + .milliseconds(100))
        #expect(due.names == ["b"])
        due = queue.due(at: start + .milliseconds(200))
        #expect(due.names == ["c"])
        #expect(due.nextAt == nil)
        #expect(queue.count == 0)
    }

    @Test func aLateCallerGetsTheTurnsItMissedUpToOneSecondsWorth() {
        var queue = DestinationWakeupQueue(interval: .milliseconds(100))
        for index in 0..<30 { queue.enqueue("d\(index)") }
        #expect(queue.due(at: start).names == ["d0"])
        #expect(queue.due(at: start + .milliseconds(350)).names == ["d1", "d2", "d3"])
        #expect(queue.due(at: start + .milliseconds(400)).names == ["d4"])
        // Ten quiet seconds allow one second's worth (10), not a hundred turns.
        let late = queue.due(at: start + .seconds(10))
        #expect(late.names.count == 10)
        #expect(late.nextAt == start + .seconds(10) + .milliseconds(100))
    }

    @Test func duplicatesAndRemovedNamesAreSkipped() {
        var queue = DestinationWakeupQueue(interval: .milliseconds(10))
        queue.enqueue("a")
        queue.enqueue("a")
        queue.enqueue("b")
        queue.remove("a")
        #expect(queue.count == 1)
        #expect(queue.due(at: start).names == ["b"])
    }

    @Test("10,000 destinations at 20 per second are all woken within nine minutes, never more than the pace allows")
    func tenThousandDestinations() {
        var queue = DestinationWakeupQueue(interval: .milliseconds(50))
        for index in 0..<10_000 { queue.enqueue("server\(index).example") }
        var now = start
        var woken = 0
        while let next = Optional(queue.due(at: now)) {
            woken += next.names.count
            #expect(next.names.count <= 1)
            guard let nextAt = next.nextAt else { break }
            now = nextAt
        }
        #expect(woken == 10_000)
        #expect(now - start <= .seconds(9 * 60))
    }
}
