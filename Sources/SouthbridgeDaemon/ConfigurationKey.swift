/// One key of the configuration file: its table and name, a one-line explanation, how its
/// TOML value is checked and stored into a `Configuration`, and how it is written back.
///
/// `ConfigurationKey.all` (Configuration+Keys.swift) is the single list that parsing,
/// unknown-key detection and `renderTOML()` all walk.
struct ConfigurationKey: Sendable {
    /// The `[table]` the key lives in.
    let table: String
    /// The key's name inside its table.
    let name: String
    /// One line saying what the key does, written above it by `renderTOML()`.
    let summary: String
    /// Whether a file must set the key; every other key has a default.
    let isRequired: Bool
    /// Checks the value (the key path is for messages) and stores it.
    let apply: @Sendable (TOMLValue, String, inout Configuration) throws(KeyProblems) -> Void
    /// The TOML literal of the key's current value.
    let render: @Sendable (Configuration) -> String

    /// `table.name`, as used in messages.
    var path: String { "\(table).\(name)" }

    init<Value>(
        _ table: String, _ name: String, _ field: WritableKeyPath<Configuration, Value> & Sendable,
        required: Bool = false, summary: String,
        decode: @escaping @Sendable (TOMLValue, String) throws(KeyProblems) -> Value,
        encode: @escaping @Sendable (Value) -> String
    ) {
        self.table = table
        self.name = name
        self.summary = summary
        self.isRequired = required
        self.apply = { (value, path, configuration) throws(KeyProblems) in
            configuration[keyPath: field] = try decode(value, path)
        }
        self.render = { configuration in encode(configuration[keyPath: field]) }
    }
}

/// The problems found in one key's value: one, or one per bad element of an array.
struct KeyProblems: Error {
    var problems: [ConfigurationError.Problem]

    init(line: Int, path: String, message: String) {
        problems = [ConfigurationError.Problem(line: line, keyPath: path, message: message)]
    }

    init(_ problems: [ConfigurationError.Problem]) {
        self.problems = problems
    }
}

extension ConfigurationKey {
    /// An integer key checked against an inclusive range.
    static func integer(
        _ table: String, _ name: String, _ field: WritableKeyPath<Configuration, Int> & Sendable,
        _ range: ClosedRange<Int>, summary: String
    ) -> ConfigurationKey {
        ConfigurationKey(table, name, field, summary: summary,
                         decode: { (value, path) throws(KeyProblems) in try integer(value, path, in: range) },
                         encode: { String($0) })
    }

    /// A duration key written as whole milliseconds and checked against an inclusive range.
    static func milliseconds(
        _ table: String, _ name: String, _ field: WritableKeyPath<Configuration, Duration> & Sendable,
        _ range: ClosedRange<Int>, summary: String
    ) -> ConfigurationKey {
        ConfigurationKey(table, name, field, summary: summary,
                         decode: { (value, path) throws(KeyProblems) in .milliseconds(try integer(value, path, in: range)) },
                         encode: { String($0.milliseconds) })
    }

    /// A string key holding an absolute file path.
    static func absolutePath(
        _ table: String, _ name: String, _ field: WritableKeyPath<Configuration, String> & Sendable,
        summary: String
    ) -> ConfigurationKey {
        ConfigurationKey(table, name, field, summary: summary,
                         decode: { (value, path) throws(KeyProblems) in try absolutePath(value, path) },
                         encode: { Configuration.quoted($0) })
    }

    static func integer(_ value: TOMLValue, _ path: String, in range: ClosedRange<Int>) throws(KeyProblems) -> Int {
        guard case .integer(let number) = value.kind else {
            throw typeMismatch(value, path, expected: "an integer")
        }
        guard range.contains(number) else {
            throw KeyProblems(line: value.line, path: path,
                              message: "must be between \(range.lowerBound) and \(range.upperBound), got \(number)")
        }
        return number
    }

    static func string(_ value: TOMLValue, _ path: String) throws(KeyProblems) -> String {
        guard case .string(let text) = value.kind else {
            throw typeMismatch(value, path, expected: "a string")
        }
        return text
    }

    static func absolutePath(_ value: TOMLValue, _ path: String) throws(KeyProblems) -> String {
        let text = try string(value, path)
        guard text.hasPrefix("/") else {
            throw KeyProblems(line: value.line, path: path, message: "must be an absolute path, got \(Configuration.quoted(text))")
        }
        guard !text.utf8.contains(0) else {
            throw KeyProblems(line: value.line, path: path, message: "must not contain a NUL character")
        }
        return text
    }

    /// An array of strings, each parsed on its own; every bad element is reported with its
    /// index (`network.ip_range_allowlist[1]`) and its own line.
    static func stringArray<Element, Failure: Error & CustomStringConvertible>(
        _ value: TOMLValue, _ path: String, element parse: (String) throws(Failure) -> Element
    ) throws(KeyProblems) -> [Element] {
        guard case .array(let items) = value.kind else {
            throw typeMismatch(value, path, expected: "an array of strings")
        }
        var elements: [Element] = []
        var problems: [ConfigurationError.Problem] = []
        for (index, item) in items.enumerated() {
            let itemPath = "\(path)[\(index)]"
            guard case .string(let text) = item.kind else {
                problems += typeMismatch(item, itemPath, expected: "a string").problems
                continue
            }
            do throws(Failure) {
                elements.append(try parse(text))
            } catch {
                problems.append(ConfigurationError.Problem(line: item.line, keyPath: itemPath, message: error.description))
            }
        }
        guard problems.isEmpty else { throw KeyProblems(problems) }
        return elements
    }

    static func typeMismatch(_ value: TOMLValue, _ path: String, expected: String) -> KeyProblems {
        KeyProblems(line: value.line, path: path, message: "expected \(expected), got \(value.typeDescription)")
    }

}
