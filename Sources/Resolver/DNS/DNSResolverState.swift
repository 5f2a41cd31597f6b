import NIOCore

/// Every decision `DNSResolver` makes, as a value: the cache, which lookups are in flight
/// and who waits for them, the query slots, and the counters.
///
/// Events go in with the current time (`startLookup`, `finishLookup`, `acquireQuerySlot`...)
/// and the waiters to resume come out, so the resolver itself only does I/O and resumes
/// continuations outside its lock. Tests drive it with plain values as waiters.
struct DNSResolverState<LookupWaiter, SlotWaiter> {
    enum LookupAction {
        /// The cache holds an unexpired answer.
        case answer(DNSAnswer)
        /// Someone else's query for the key is in flight; the waiter gets its result.
        case joined
        /// Query the nameservers, then call `finishLookup`.
        case query
    }

    private let configuration: DNSResolver.Configuration
    private var cache: DNSCache
    private var lookups = DNSLookupTable<LookupWaiter>()
    private var slots: DNSQuerySlots<SlotWaiter>
    private var counters = DNSStatistics()

    init(configuration: DNSResolver.Configuration) {
        self.configuration = configuration
        cache = DNSCache(capacity: configuration.maxCacheEntries)
        slots = DNSQuerySlots(limit: configuration.maxQueriesInFlight)
    }

    var statistics: DNSStatistics {
        var snapshot = counters
        snapshot.cacheEntries = cache.count
        snapshot.queriesInFlight = slots.inUse
        snapshot.peakQueriesInFlight = slots.peakInUse
        snapshot.queriesWaiting = slots.waitingCount
        return snapshot
    }

    /// The cached answer for `key`, counted as a hit; nil when absent or expired.
    mutating func cachedAnswer(for key: DNSCacheKey, now: NIODeadline) -> DNSAnswer? {
        guard let answer = cache.answer(for: key, now: now) else { return nil }
        counters.cacheHits += 1
        return answer
    }

    /// Follows `name`'s aliases through the cache to the records of `type` ([] for NODATA);
    /// nil when a link of the chain is not cached.
    mutating func cachedResolution(of name: String, type: DNSRecordType, now: NIODeadline,
                                   followingAliases: Bool = true) -> Result<[DNSRecordData], DNSError>? {
        var current = name
        for _ in 0...DNSResolver.maximumAliases {
            guard let answer = cachedAnswer(for: DNSCacheKey(name: current, type: type), now: now) else { return nil }
            switch Self.step(answer, asked: name, type: type, followingAliases: followingAliases) {
            case .resolved(let result): return result
            case .follow(let target): current = target
            }
        }
        return .failure(.tooManyAliases(name: name, type: type, limit: DNSResolver.maximumAliases))
    }

    mutating func startLookup(_ key: DNSCacheKey, now: NIODeadline, waiter: LookupWaiter) -> LookupAction {
        if let answer = cachedAnswer(for: key, now: now) { return .answer(answer) }
        switch lookups.start(key, waiter: waiter) {
        case .query:
            counters.cacheMisses += 1
            return .query
        case .joined:
            counters.sharedLookups += 1
            return .joined
        }
    }

    /// Caches what the query learned (failures are not cached) and returns the answer for
    /// `key` with the waiters that share it.
    mutating func finishLookup(_ key: DNSCacheKey, outcome: Result<[DNSLearnedAnswer], DNSError>,
                               now: NIODeadline) -> (result: Result<DNSAnswer, DNSError>, waiters: [LookupWaiter]) {
        let waiters = lookups.finish(key)
        switch outcome {
        case .failure(let error):
            return (.failure(error), waiters)
        case .success(let learned):
            for fact in learned {
                let lifetime = configuration.cacheLifetime(of: fact.answer, ttl: fact.ttl)
                cache.insert(fact.answer, for: DNSCacheKey(name: fact.name, type: key.type), expires: now + lifetime)
            }
            let answer = learned.first { $0.name == key.name }?.answer ?? .noData
            return (.success(answer), waiters)
        }
    }

    /// Takes a query slot, or queues the waiter (false) until `releaseQuerySlot` hands it one.
    mutating func acquireQuerySlot(waiter: SlotWaiter) -> Bool {
        slots.acquire(waiter: waiter)
    }

    /// Returns a slot; the result is the waiter that now owns it, if any.
    mutating func releaseQuerySlot() -> SlotWaiter? {
        slots.release()
    }

    mutating func querySent(overTCP: Bool) {
        counters.queriesSent += 1
        if overTCP { counters.tcpQueriesSent += 1 }
    }

    mutating func queryTimedOut() {
        counters.timeouts += 1
    }

    mutating func answeredFromHostsFile() {
        counters.hostsFileAnswers += 1
    }

    enum Step: Equatable {
        case resolved(Result<[DNSRecordData], DNSError>)
        case follow(String)
    }

    /// What one answer means for a resolution of `asked`: records (none for NODATA), an
    /// error naming the name asked for, or an alias to follow. Without `followingAliases`
    /// an alias is an error: only `asked` itself may own the records.
    static func step(_ answer: DNSAnswer, asked: String, type: DNSRecordType, followingAliases: Bool = true) -> Step {
        switch answer {
        case .records(let records): .resolved(.success(records))
        case .noData: .resolved(.success([]))
        case .noSuchName: .resolved(.failure(.noSuchName(name: asked)))
        case .alias(let target) where followingAliases: .follow(target)
        case .alias(let target): .resolved(.failure(.aliasNotAllowed(name: asked, target: target)))
        }
    }
}

extension DNSResolverState: Sendable where LookupWaiter: Sendable, SlotWaiter: Sendable {}
