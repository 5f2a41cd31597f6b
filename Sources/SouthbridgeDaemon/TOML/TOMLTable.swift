/// A TOML table: its keys in document order and their values.
///
/// Keys are unique; the parser reports a duplicate as an error instead of keeping either.
struct TOMLTable: Sendable, Equatable {
    /// The keys in the order they were first written.
    private(set) var keys: [String] = []
    private var values: [String: TOMLValue] = [:]

    init() {}

    subscript(key: String) -> TOMLValue? {
        values[key]
    }

    /// Adds a key that is not yet in the table.
    mutating func insert(_ value: TOMLValue, for key: String) {
        precondition(values[key] == nil, "duplicate TOML key \(key)")
        keys.append(key)
        values[key] = value
    }
}
