import Federation
import NIOCore

/// The decisions of `.well-known` caching, with no I/O: what a lookup may serve, and how long
/// each answer is kept.
///
/// Keys are host names in lower case. A valid answer is kept for its header-given period
/// clamped to [min, max], or the default period with jitter; in the last `gracePeriodFactor`
/// of that period a lookup asks for a refresh while the answer is still usable. A failure is
/// kept for the invalid period, or the shorter down period when the name had a valid answer
/// until less than `rememberHadValidPeriod` ago; both with jitter. At most `maxEntries` names
/// are kept (answers and "had valid" memories each): expired ones go first, then the oldest.
struct WellKnownCache: Sendable {
    /// What a lookup found.
    enum Lookup: Sendable, Equatable {
        /// A current answer to use as it is.
        case fresh(WellKnownResult)
        /// A valid answer in its grace window: fetch again, and fall back to it on a temporary failure.
        case refresh(previous: ServerName)
        /// Nothing usable: fetch.
        case miss
    }

    private struct Entry: Sendable {
        var result: WellKnownResult
        var storedAt: NIODeadline
        var refreshAt: NIODeadline
        var expiresAt: NIODeadline
    }

    let limits: WellKnownResolver.Limits
    private var entries: [String: Entry] = [:]
    private var hadValidUntil: [String: NIODeadline] = [:]

    init(limits: WellKnownResolver.Limits) {
        precondition(limits.maxEntries >= 1, "maxEntries must be at least 1, got \(limits.maxEntries)")
        self.limits = limits
    }

    /// How many names have a cached answer (expired ones included until they are evicted).
    var count: Int { entries.count }

    func lookup(_ key: String, now: NIODeadline) -> Lookup {
        guard let entry = entries[key], now < entry.expiresAt else { return .miss }
        if now < entry.refreshAt { return .fresh(entry.result) }
        guard case .delegated(let previous) = entry.result else { return .miss }
        return .refresh(previous: previous)
    }

    /// Whether a valid answer for the name was current less than `rememberHadValidPeriod` ago.
    func hadRecentValidAnswer(_ key: String, now: NIODeadline) -> Bool {
        guard let until = hadValidUntil[key] else { return false }
        return now < until
    }

    /// Keeps a valid answer and returns how long it is kept.
    @discardableResult
    mutating func storeValid(_ key: String, serverName: ServerName, lifetime: WellKnownCacheLifetime,
                             now: NIODeadline, randomUnit: Double) -> TimeAmount {
        let period: TimeAmount
        switch lifetime {
        case .unspecified:
            period = jittered(limits.defaultCachePeriod, randomUnit: randomUnit)
        case .seconds(let seconds):
            let requested = seconds >= limits.maxCachePeriod.nanoseconds / 1_000_000_000
                ? limits.maxCachePeriod : TimeAmount.seconds(seconds)
            period = min(max(requested, limits.minCachePeriod), limits.maxCachePeriod)
        case .minimum:
            period = limits.minCachePeriod
        }
        let expiresAt = now + period
        let refreshAt = now + scaled(period, by: 1 - limits.gracePeriodFactor)
        insert(key, Entry(result: .delegated(serverName), storedAt: now, refreshAt: refreshAt, expiresAt: expiresAt),
               now: now)
        rememberValid(key, until: expiresAt + limits.rememberHadValidPeriod, now: now)
        return period
    }

    /// Keeps a failure and returns how long it is kept.
    @discardableResult
    mutating func storeFailure(_ key: String, failure: WellKnownFailure, now: NIODeadline, randomUnit: Double) -> TimeAmount {
        let base = hadRecentValidAnswer(key, now: now) ? limits.downCachePeriod : limits.invalidCachePeriod
        let period = jittered(base, randomUnit: randomUnit)
        let expiresAt = now + period
        insert(key, Entry(result: .none(reason: failure), storedAt: now, refreshAt: expiresAt, expiresAt: expiresAt),
               now: now)
        return period
    }

    /// After a refresh failed temporarily: the previous answer stays until it expires, and is
    /// not refreshed again for a down period, so an unreachable server is not asked on every lookup.
    mutating func keepPrevious(_ key: String, now: NIODeadline, randomUnit: Double) {
        guard var entry = entries[key] else { return }
        entry.refreshAt = min(entry.expiresAt, now + jittered(limits.downCachePeriod, randomUnit: randomUnit))
        entries[key] = entry
    }

    private mutating func insert(_ key: String, _ entry: Entry, now: NIODeadline) {
        if entries[key] == nil, entries.count >= limits.maxEntries {
            entries = entries.filter { now < $0.value.expiresAt }
            if entries.count >= limits.maxEntries,
               let oldest = entries.min(by: { $0.value.storedAt < $1.value.storedAt }) {
                entries.removeValue(forKey: oldest.key)
            }
        }
        entries[key] = entry
    }

    private mutating func rememberValid(_ key: String, until: NIODeadline, now: NIODeadline) {
        if hadValidUntil[key] == nil, hadValidUntil.count >= limits.maxEntries {
            hadValidUntil = hadValidUntil.filter { now < $0.value }
            if hadValidUntil.count >= limits.maxEntries,
               let soonest = hadValidUntil.min(by: { $0.value < $1.value }) {
                hadValidUntil.removeValue(forKey: soonest.key)
            }
        }
        hadValidUntil[key] = until
    }

    /// `period` times a uniform factor in [1 - jitter, 1 + jitter), `randomUnit` being in [0, 1).
    private func jittered(_ period: TimeAmount, randomUnit: Double) -> TimeAmount {
        let jitter = limits.cachePeriodJitter
        return scaled(period, by: 1 - jitter + 2 * jitter * min(max(randomUnit, 0), 1))
    }

    private func scaled(_ period: TimeAmount, by factor: Double) -> TimeAmount {
        .nanoseconds(Int64((Double(period.nanoseconds) * factor).rounded()))
    }
}
