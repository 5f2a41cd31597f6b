/// An array read from the front: `popFirst` is O(1), and the consumed prefix is dropped
/// once it is most of the storage, so memory follows what is still queued. The one place
/// for the sender's FIFOs (a destination's PDUs, destinations waiting to send or to be
/// woken, the insertion order of ephemeral EDUs and of recent events).
struct FrontConsumedQueue<Element> {
    private var storage: [Element] = []
    private var head = 0

    init() {}

    init(_ elements: [Element]) {
        storage = elements
    }

    var count: Int { storage.count - head }
    var isEmpty: Bool { head == storage.count }
    var first: Element? { isEmpty ? nil : storage[head] }
    var last: Element? { isEmpty ? nil : storage.last }
    /// Everything still queued, oldest first.
    var elements: ArraySlice<Element> { storage[head...] }

    mutating func append(_ element: Element) {
        storage.append(element)
    }

    mutating func append(contentsOf elements: some Sequence<Element>) {
        storage.append(contentsOf: elements)
    }

    mutating func popFirst() -> Element? {
        guard !isEmpty else { return nil }
        let element = storage[head]
        head += 1
        compact()
        return element
    }

    /// Keeps only the elements still queued that satisfy `isIncluded`, in order: for queues
    /// whose entries go stale in place (a replaced or removed key).
    mutating func keepOnly(_ isIncluded: (Element) -> Bool) {
        storage = storage[head...].filter(isIncluded)
        head = 0
    }

    mutating func removeAll() {
        storage = []
        head = 0
    }

    private mutating func compact() {
        if head == storage.count {
            storage = []
            head = 0
        } else if head > 64, head * 2 > storage.count {
            storage.removeFirst(head)
            head = 0
        }
    }
}

extension FrontConsumedQueue: Sendable where Element: Sendable {}
