/// One value of a parsed TOML document, with the 1-based line it starts on, so that
/// configuration errors can point at the line that holds the offending value.
struct TOMLValue: Sendable, Equatable {
    /// The value itself. Arrays hold their own elements' lines; tables are TOML tables.
    enum Kind: Sendable, Equatable {
        case string(String)
        case integer(Int)
        case float(Double)
        case boolean(Bool)
        case array([TOMLValue])
        case table(TOMLTable)
    }

    var kind: Kind
    var line: Int

    /// The type with its article, for messages: "a string", "an integer", ...
    var typeDescription: String {
        switch kind {
        case .string: "a string"
        case .integer: "an integer"
        case .float: "a float"
        case .boolean: "a boolean"
        case .array: "an array"
        case .table: "a table"
        }
    }
}
