import Sender
import Testing

@Suite("DestinationWakeupQueue with maxTimeInQueue wakes every destination within 30 s")
struct DestinationWakeupQueueMaxTimeInQueueTests {
    let start = Duration.seconds(86_400)

    /// Runs the queue as a driver would, asking at each `nextAt` and right after each arrival;
    /// returns when each destination was woken.
    func drive(_ queue: inout DestinationWakeupQueue, arrivals: [(at: Duration, names: [String])]) -> [String: Duration] {
        var woken: [String: Duration] = [:]
        var pending = arrivals.sorted { $0.at < $1.at }
        var nextAt: Duration? = nil
        var now = start
        while true {
            if let arrival = pending.first, nextAt.map({ start + arrival.at <= $0 }) ?? true {
                now = start + arrival.at
                for name in arrival.names { queue.enqueue(name) }
                pending.removeFirst()
            } else if let next = nextAt {
                now = next
            } else {
                break
            }
            let due = queue.due(at: now)
            for name in due.names { woken[name] = now }
            nextAt = due.nextAt
        }
        return woken
    }

    @Test("5,000 queued at once are woken one at a time, the last within 30 s")
    func fiveThousandWithinThirtySeconds() {
        var queue = DestinationWakeupQueue(interval: .milliseconds(20), maxTimeInQueue: .seconds(30))
        let names = (0..<5000).map { "s\($0).example" }
        let woken = drive(&queue, arrivals: [(.zero, names)])
        #expect(woken.count == 5000)
        let times = names.map { woken[$0]! }
        #expect(times.allSatisfy { $0 - start <= .seconds(30) })
        #expect(times.last! - start == .milliseconds(6) * 4999)
        #expect(zip(times, times.dropFirst()).allSatisfy { $1 - $0 == .milliseconds(6) }, "in order, one per 30 s / 5,000")
        #expect(queue.count == 0)
    }

    @Test func aShortQueueKeepsTheInterval() {
        var queue = DestinationWakeupQueue(interval: .milliseconds(20), maxTimeInQueue: .seconds(30))
        let names = (0..<10).map { "s\($0).example" }
        let woken = drive(&queue, arrivals: [(.zero, names)])
        let times = names.map { woken[$0]! }
        #expect(zip(times, times.dropFirst()).allSatisfy { $1 - $0 == .milliseconds(20) })
    }

    @Test("Late arrivals shrink the gap so they too are woken within 30 s of being queued")
    func lateArrivals() {
        var queue = DestinationWakeupQueue(interval: .milliseconds(20), maxTimeInQueue: .seconds(30))
        let first = (0..<2000).map { "a\($0).example" }
        let second = (0..<3000).map { "b\($0).example" }
        let third = (0..<1000).map { "c\($0).example" }
        let woken = drive(&queue, arrivals: [(.zero, first), (.seconds(5), second), (.milliseconds(12_345), third)])
        #expect(woken.count == 6000)
        #expect(first.allSatisfy { woken[$0]! - start <= .seconds(30) })
        #expect(second.allSatisfy { woken[$0]! - (start + .seconds(5)) <= .seconds(30) })
        #expect(third.allSatisfy { woken[$0]! - (start + .milliseconds(12_345)) <= .seconds(30) })
    }

    @Test func theGapReturnsToTheIntervalOnceTheQueueIsEmpty() {
        var queue = DestinationWakeupQueue(interval: .milliseconds(20), maxTimeInQueue: .seconds(30))
        _ = drive(&queue, arrivals: [(.zero, (0..<5000).map { "s\($0).example" })])
        let later = start + .seconds(60)
        queue.enqueue("x.example")
        #expect(queue.due(at: later).names == ["x.example"])
        queue.enqueue("y.example")
        queue.enqueue("z.example")
        let next = queue.due(at: later)
        #expect(next.names.isEmpty)
        #expect(next.nextAt == later + .milliseconds(20))
    }
}
