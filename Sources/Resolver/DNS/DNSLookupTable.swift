/// The (name, type) lookups in flight and who waits for each: one query per key at a time,
/// every other asker shares its result.
struct DNSLookupTable<Waiter> {
    enum StartAction: Equatable {
        /// Nobody is looking this key up: the caller queries and must call `finish` afterwards.
        case query
        /// A query for this key is in flight; the waiter gets its result.
        case joined
    }

    private var waiters: [DNSCacheKey: [Waiter]] = [:]

    var count: Int { waiters.count }

    mutating func start(_ key: DNSCacheKey, waiter: Waiter) -> StartAction {
        if waiters[key] != nil {
            waiters[key]!.append(waiter)
            return .joined
        }
        waiters[key] = []
        return .query
    }

    /// Ends the lookup of `key` and returns the waiters that joined it, in arrival order.
    mutating func finish(_ key: DNSCacheKey) -> [Waiter] {
        waiters.removeValue(forKey: key) ?? []
    }
}

extension DNSLookupTable: Sendable where Waiter: Sendable {}
