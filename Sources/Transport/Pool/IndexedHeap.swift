import NIOCore

/// A binary min-heap of keys by priority that also finds each key's place, so a key's
/// priority can change and any key can leave in O(log n): the connection pool's ordered
/// sets (destinations waiting for a connection, connections waiting for a handshake turn,
/// idle connections by how likely they are to be used next) and the sender's retry deadlines.
public struct IndexedHeap<Key: Hashable & Sendable, Priority: Comparable & Sendable>: Sendable {
    private var entries: [(key: Key, priority: Priority)] = []
    private var positions: [Key: Int] = [:]

    public init() {}

    public var count: Int { entries.count }
    public var isEmpty: Bool { entries.isEmpty }

    /// The key served first.
    public var first: (key: Key, priority: Priority)? { entries.first }

    public func contains(_ key: Key) -> Bool { positions[key] != nil }

    public func priority(of key: Key) -> Priority? {
        positions[key].map { entries[$0].priority }
    }

    /// The first key other than `excluded`: the root, or else the better of its two children.
    public func first(excluding excluded: Key?) -> (key: Key, priority: Priority)? {
        guard let root = entries.first else { return nil }
        guard let excluded, root.key == excluded else { return root }
        let children = entries.indices.dropFirst().prefix(2)
        return children.map { entries[$0] }.min { $0.priority < $1.priority }
    }

    /// Inserts `key`, or moves it to its new place when it is already in.
    public mutating func set(_ key: Key, _ priority: Priority) {
        if let index = positions[key] {
            let old = entries[index].priority
            entries[index].priority = priority
            if priority < old { siftUp(index) } else { siftDown(index) }
            return
        }
        entries.append((key, priority))
        positions[key] = entries.count - 1
        siftUp(entries.count - 1)
    }

    @discardableResult
    public mutating func remove(_ key: Key) -> Priority? {
        guard let index = positions.removeValue(forKey: key) else { return nil }
        let removed = entries[index].priority
        let last = entries.removeLast()
        if index < entries.count {
            entries[index] = last
            positions[last.key] = index
            siftDown(index)
            siftUp(index)
        }
        return removed
    }

    public mutating func popFirst() -> (key: Key, priority: Priority)? {
        guard let first = entries.first else { return nil }
        remove(first.key)
        return first
    }

    private mutating func siftUp(_ start: Int) {
        var index = start
        while index > 0 {
            let parent = (index - 1) / 2
            guard entries[index].priority < entries[parent].priority else { return }
            swapAt(index, parent)
            index = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var index = start
        while true {
            let left = 2 * index + 1
            let right = left + 1
            var smallest = index
            if left < entries.count, entries[left].priority < entries[smallest].priority { smallest = left }
            if right < entries.count, entries[right].priority < entries[smallest].priority { smallest = right }
            guard smallest != index else { return }
            swapAt(index, smallest)
            index = smallest
        }
    }

    private mutating func swapAt(_ a: Int, _ b: Int) {
        entries.swapAt(a, b)
        positions[entries[a].key] = a
        positions[entries[b].key] = b
    }
}

/// Times in the order they were added (each one no earlier than the one before), of which
/// some have since stopped counting: a FIFO that drops those stale entries as they reach
/// its front, so "the earliest still counting" is amortised O(1).
struct DeadlineFIFO<ID: Hashable & Sendable>: Sendable {
    private var entries: [(id: ID, at: NIODeadline)] = []
    private var head = 0

    mutating func append(_ id: ID, at time: NIODeadline) {
        entries.append((id, time))
    }

    /// The earliest entry for which `isCurrent` holds, after dropping those before it that do not.
    mutating func first(where isCurrent: (ID, NIODeadline) -> Bool) -> (id: ID, at: NIODeadline)? {
        while head < entries.count {
            let entry = entries[head]
            if isCurrent(entry.id, entry.at) { return entry }
            head += 1
            if head >= 64, head * 2 >= entries.count {
                entries.removeFirst(head)
                head = 0
            }
        }
        return nil
    }

    /// Every current entry added at least `age` before `now`, in order (stale ones are
    /// skipped, not dropped).
    func entries(olderThan age: TimeAmount, at now: NIODeadline, where isCurrent: (ID, NIODeadline) -> Bool) -> [ID] {
        var found: [ID] = []
        for entry in entries[head...] {
            guard entry.at + age <= now else { break }
            if isCurrent(entry.id, entry.at) { found.append(entry.id) }
        }
        return found
    }
}
