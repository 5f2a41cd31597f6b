import FuzzSupport
import Resolver
import SouthbridgeSwarm
import Testing

@Suite("RFC 2782 ordering of SRV records for connection attempts")
struct DNSServiceOrderingTests {
    private func record(_ priority: UInt16, _ weight: UInt16, _ target: String) -> SRVRecord {
        SRVRecord(priority: priority, weight: weight, port: 8448, target: target)
    }

    @Test("priorities ascend and every record appears once, whatever the draws", arguments: 0..<50)
    func prioritiesAscend(seed: UInt64) {
        let records = [
            record(20, 5, "c"), record(10, 0, "a0"), record(30, 1, "d"), record(10, 60, "a1"),
            record(20, 0, "c0"), record(10, 40, "a2"), record(20, 5, "c1"),
        ]
        var generator = SplitMix64(seed: seed)
        let ordered = DNSResolver.orderForConnection(records, using: &generator)
        #expect(ordered.map(\.priority) == [10, 10, 10, 20, 20, 20, 30])
        #expect(Set(ordered) == Set(records))
        #expect(ordered.count == records.count)
    }

    @Test("within a priority, a record comes first with probability weight / total weight")
    func weightedChoice() {
        let records = [record(10, 1, "light"), record(10, 3, "heavy"), record(20, 100, "backup")]
        var generator = SplitMix64(seed: 2782)
        var heavyFirst = 0
        let rounds = 8000
        for _ in 0..<rounds {
            let ordered = DNSResolver.orderForConnection(records, using: &generator)
            if ordered[0].target == "heavy" { heavyFirst += 1 }
            #expect(ordered[2].target == "backup")
        }
        // 3/4 expected; a ±3 % window is over 9 standard deviations wide.
        #expect((0.72...0.78).contains(Double(heavyFirst) / Double(rounds)))
    }

    @Test("weight-0 records are placed first in each round, so a draw of 0 picks them in list order")
    func zeroWeightsFirst() {
        let records = [record(10, 7, "w7"), record(10, 0, "z1"), record(10, 3, "w3"), record(10, 0, "z2")]
        var generator = FirstChoiceGenerator()
        #expect(DNSResolver.orderForConnection(records, using: &generator).map(\.target) == ["z1", "z2", "w7", "w3"])
    }

    @Test("a weight-0 record next to others comes first with probability 1 / (total weight + 1)")
    func zeroWeightChance() {
        let records = [record(10, 9, "nine"), record(10, 0, "zero")]
        var generator = SplitMix64(seed: 1)
        var zeroFirst = 0
        let rounds = 10_000
        for _ in 0..<rounds where DNSResolver.orderForConnection(records, using: &generator)[0].target == "zero" {
            zeroFirst += 1
        }
        #expect((0.08...0.12).contains(Double(zeroFirst) / Double(rounds)))
    }

    @Test("when every weight is 0 the records are tried in the order given")
    func allZeroWeights() {
        let records = [record(10, 0, "a"), record(10, 0, "b"), record(10, 0, "c")]
        var generator = SplitMix64(seed: 99)
        #expect(DNSResolver.orderForConnection(records, using: &generator).map(\.target) == ["a", "b", "c"])
    }

    @Test("no records, no order")
    func empty() {
        var generator = SplitMix64(seed: 0)
        #expect(DNSResolver.orderForConnection([], using: &generator).isEmpty)
    }
}
