/// Everything wrong with a configuration, one problem per offending key or line.
///
/// Parsing collects every problem it can find before throwing, so an operator fixes a file
/// in one pass. The description has one line per problem, in file order, such as
/// `line 12: limits.max_connections: must be between 1 and 65535, got 0` or
/// `server.name: required key is missing`.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// One thing wrong with the configuration.
    public struct Problem: Sendable, Equatable, CustomStringConvertible {
        /// The 1-based line of the offending value; nil when the key is missing entirely or
        /// the file could not be read.
        public var line: Int?
        /// The key the problem is about (`limits.max_connections`,
        /// `network.ip_range_allowlist[1]`); empty for TOML syntax errors and unreadable files.
        public var keyPath: String
        /// The rule that was broken, naming the offending value.
        public var message: String

        public init(line: Int?, keyPath: String, message: String) {
            self.line = line
            self.keyPath = keyPath
            self.message = message
        }

        public var description: String {
            var text = ""
            if let line {
                text += "line \(line): "
            }
            if !keyPath.isEmpty {
                text += "\(keyPath): "
            }
            return text + message
        }
    }

    /// The path of the file, or whatever name the caller gave the text.
    public var source: String
    /// Every problem found, ordered by line; problems without a line come last.
    public var problems: [Problem]

    public init(source: String, problems: [Problem]) {
        self.source = source
        self.problems = problems.enumerated()
            .sorted { ($0.element.line ?? .max, $0.offset) < ($1.element.line ?? .max, $1.offset) }
            .map(\.element)
    }

    public var description: String {
        problems.map(\.description).joined(separator: "\n")
    }
}
