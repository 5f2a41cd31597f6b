import NIOCore

/// What the cache is keyed by: a canonical (lower case, no trailing dot) name and a type.
struct DNSCacheKey: Sendable, Hashable, CustomStringConvertible {
    var name: String
    var type: DNSRecordType

    var description: String { "\(name) \(type)" }
}

/// A bounded map from (name, type) to the answer and the moment it expires.
///
/// When full, the oldest insertion goes first: answers are only inserted after a query, so
/// the oldest entry is also the one closest to being asked again. Expired entries are
/// dropped when they are looked at or reach the front of the line.
struct DNSCache: Sendable {
    private struct Entry {
        var answer: DNSAnswer
        var expires: NIODeadline
        var serial: UInt64
    }

    let capacity: Int
    private var entries: [DNSCacheKey: Entry] = [:]
    /// Insertion order; an element is stale when its key was replaced or removed since.
    private var order = CircularBuffer<(key: DNSCacheKey, serial: UInt64)>()
    private var nextSerial: UInt64 = 0

    init(capacity: Int) {
        self.capacity = max(capacity, 1)
    }

    var count: Int { entries.count }

    /// The answer for `key` if it has not expired at `now`.
    mutating func answer(for key: DNSCacheKey, now: NIODeadline) -> DNSAnswer? {
        guard let entry = entries[key] else { return nil }
        guard now < entry.expires else {
            entries[key] = nil
            return nil
        }
        return entry.answer
    }

    mutating func insert(_ answer: DNSAnswer, for key: DNSCacheKey, expires: NIODeadline) {
        nextSerial += 1
        entries[key] = Entry(answer: answer, expires: expires, serial: nextSerial)
        order.append((key, nextSerial))
        while entries.count > capacity, let oldest = order.popFirst() {
            if entries[oldest.key]?.serial == oldest.serial { entries[oldest.key] = nil }
        }
        // Replacing keys leaves stale elements behind; rebuild before they outnumber the entries.
        if order.count > 2 * capacity + 16 {
            order = CircularBuffer(entries.map { (key: $0.key, serial: $0.value.serial) }.sorted { $0.serial < $1.serial })
        }
    }
}
