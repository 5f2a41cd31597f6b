import NIOCore
@testable import Resolver
import Testing

@Suite("DNS resolver state: cache, shared lookups, query slots, TTL bounds, system files")
struct DNSResolverStateTests {
    private let start = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
    private let key = DNSCacheKey(name: "a.example.test", type: .a)
    private let records = DNSAnswer.records([.a([192, 0, 2, 1])])

    private func state(_ configure: (inout DNSResolver.Configuration) -> Void = { _ in }) -> DNSResolverState<Int, Int> {
        var configuration = DNSResolver.Configuration()
        configure(&configuration)
        return DNSResolverState(configuration: configuration)
    }

    @Test("concurrent askers of one (name, type) share one query; its answer is then cached until it expires")
    func sharedLookup() {
        var state = state()
        guard case .query = state.startLookup(key, now: start, waiter: 1) else { Issue.record("first asker must query"); return }
        guard case .joined = state.startLookup(key, now: start, waiter: 2) else { Issue.record("second asker must join"); return }
        guard case .joined = state.startLookup(key, now: start, waiter: 3) else { Issue.record("third asker must join"); return }
        guard case .query = state.startLookup(DNSCacheKey(name: "a.example.test", type: .aaaa), now: start, waiter: 4) else {
            Issue.record("another type is another lookup"); return
        }
        let learned = [DNSLearnedAnswer(name: "a.example.test", answer: records, ttl: 300)]
        let (result, waiters) = state.finishLookup(key, outcome: .success(learned), now: start)
        #expect(result == .success(records))
        #expect(waiters == [2, 3])
        #expect(state.cachedAnswer(for: key, now: start + .seconds(299)) == records)
        #expect(state.cachedAnswer(for: key, now: start + .seconds(300)) == nil)
        let statistics = state.statistics
        #expect(statistics.cacheMisses == 2)
        #expect(statistics.sharedLookups == 2)
        #expect(statistics.cacheHits == 1)
    }

    @Test("failures are shared with the waiters but not cached")
    func failuresNotCached() {
        var state = state()
        _ = state.startLookup(key, now: start, waiter: 1)
        _ = state.startLookup(key, now: start, waiter: 2)
        let (result, waiters) = state.finishLookup(key, outcome: .failure(.timeout(name: key.name, type: .a)), now: start)
        #expect(result == .failure(.timeout(name: "a.example.test", type: .a)))
        #expect(waiters == [2])
        guard case .query = state.startLookup(key, now: start, waiter: 3) else { Issue.record("must query again"); return }
    }

    @Test("every link of a learned CNAME chain is cached and followed from the cache")
    func chainFromCache() {
        var state = state()
        _ = state.startLookup(DNSCacheKey(name: "www.example.test", type: .a), now: start, waiter: 1)
        _ = state.finishLookup(DNSCacheKey(name: "www.example.test", type: .a), outcome: .success([
            DNSLearnedAnswer(name: "www.example.test", answer: .alias("host.example.test"), ttl: 600),
            DNSLearnedAnswer(name: "host.example.test", answer: records, ttl: 60),
        ]), now: start)
        #expect(state.cachedResolution(of: "www.example.test", type: .a, now: start + .seconds(59))
            == .success([.a([192, 0, 2, 1])]))
        #expect(state.cachedResolution(of: "www.example.test", type: .a, now: start + .seconds(61)) == nil)
    }

    @Test("a cached CNAME loop ends in tooManyAliases")
    func loopFromCache() {
        var state = state()
        let key = DNSCacheKey(name: "www.example.test", type: .a)
        _ = state.startLookup(key, now: start, waiter: 1)
        _ = state.finishLookup(key, outcome: .success([
            DNSLearnedAnswer(name: "www.example.test", answer: .alias("loop.example.test"), ttl: 600),
            DNSLearnedAnswer(name: "loop.example.test", answer: .alias("www.example.test"), ttl: 600),
        ]), now: start)
        #expect(state.cachedResolution(of: "www.example.test", type: .a, now: start)
            == .failure(.tooManyAliases(name: "www.example.test", type: .a, limit: 8)))
    }

    @Test("cache lifetimes are the TTL clamped to the configured bounds", arguments: [
        (DNSAnswer.records([]), UInt32?.some(0), TimeAmount.seconds(30)),
        (.records([]), 300, .seconds(300)),
        (.records([]), 86_400, .hours(1)),
        (.alias("x"), 5, .seconds(30)),
        (.noSuchName, 5, .seconds(30)),
        (.noSuchName, 600, .seconds(600)),
        (.noData, 86_400, .minutes(15)),
        (.noData, nil, .seconds(60)),
        (.noSuchName, nil, .seconds(60)),
    ])
    func lifetimes(answer: DNSAnswer, ttl: UInt32?, expected: TimeAmount) {
        #expect(DNSResolver.Configuration().cacheLifetime(of: answer, ttl: ttl) == expected)
    }

    @Test("the cache holds at most maxCacheEntries and evicts the oldest insertion first")
    func eviction() {
        var cache = DNSCache(capacity: 3)
        let far = start + .hours(1)
        for index in 0..<3 {
            cache.insert(records, for: DNSCacheKey(name: "n\(index)", type: .a), expires: far)
        }
        cache.insert(.noData, for: DNSCacheKey(name: "n0", type: .a), expires: far)  // replaced: now the newest
        cache.insert(records, for: DNSCacheKey(name: "n3", type: .a), expires: far)
        #expect(cache.count == 3)
        #expect(cache.answer(for: DNSCacheKey(name: "n1", type: .a), now: start) == nil)
        #expect(cache.answer(for: DNSCacheKey(name: "n0", type: .a), now: start) == .noData)
        for index in 4..<1000 {
            cache.insert(records, for: DNSCacheKey(name: "n\(index % 7)", type: .a), expires: far)
        }
        #expect(cache.count == 3)
    }

    @Test("query slots never exceed the limit and are handed out in FIFO order")
    func querySlots() {
        var slots = DNSQuerySlots<Int>(limit: 2)
        let granted = (1...4).map { slots.acquire(waiter: $0) }
        #expect(granted == [true, true, false, false])
        #expect(slots.inUse == 2)
        #expect(slots.waitingCount == 2)
        let first = slots.release()
        let fifthGranted = slots.acquire(waiter: 5)
        let handedOver = [first, slots.release(), slots.release()]
        #expect(!fifthGranted)
        #expect(handedOver == [3, 4, 5])
        #expect(slots.inUse == 2)
        let freed = [slots.release(), slots.release()]
        #expect(freed == [nil, nil])
        #expect(slots.inUse == 0)
        #expect(slots.peakInUse == 2)
    }

    @Test("the hosts file: comments, aliases, case, IPv6 first, bad lines and zone indices skipped")
    func hostsFile() {
        let hosts = HostsFile(contents: """
            # a comment
            127.0.0.1\tlocalhost
            192.0.2.10  Pinned.Example.Test. pinned-alias   # trailing comment
            2001:DB8:0::10 pinned.example.test
            192.0.2.11 pinned.example.test
            192.0.2.10 pinned.example.test
            fe80::1%eth0 zoned.example.test
            999.1.1.1 broken.example.test
            192.0.2.12
            """)
        #expect(hosts.addresses(for: "pinned.example.test") == ["2001:db8::10", "192.0.2.10", "192.0.2.11"])
        #expect(hosts.addresses(for: "pinned-alias") == ["192.0.2.10"])
        #expect(hosts.addresses(for: "localhost") == ["127.0.0.1"])
        #expect(hosts.addresses(for: "zoned.example.test") == nil)
        #expect(hosts.addresses(for: "broken.example.test") == nil)
        #expect(hosts.addresses(for: "absent.example.test") == nil)
    }

    @Test("resolv.conf: nameserver lines in order, everything else ignored")
    func resolvConf() throws {
        let servers = ResolvConf.nameservers(contents: """
            # generated
            search example.test
            nameserver 10.0.0.53
            nameserver   2001:db8::53 # comment
            nameserver not-an-address
            options timeout:1
            ; nameserver 10.9.9.9
            """)
        #expect(servers == [try SocketAddress(ipAddress: "10.0.0.53", port: 53), try SocketAddress(ipAddress: "2001:db8::53", port: 53)])
    }
}
