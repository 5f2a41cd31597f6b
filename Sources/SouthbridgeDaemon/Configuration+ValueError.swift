extension Configuration {
    /// Why a configuration value such as a listen address or nameserver could not be parsed;
    /// the description names the text and the rule, e.g.
    /// `"[::1]" is not a valid listen address: expected a port after ']'`.
    public struct ValueError: Error, Sendable, Equatable, CustomStringConvertible {
        /// The text as given.
        public var text: String
        /// What the text was supposed to be: "listen address", "nameserver address", "server name".
        public var expected: String
        /// The rule the text broke.
        public var reason: String

        public init(text: String, expected: String, reason: String) {
            self.text = text
            self.expected = expected
            self.reason = reason
        }

        public var description: String {
            "\(Configuration.quoted(text)) is not a valid \(expected): \(reason)"
        }
    }

    /// The text as a TOML basic string, which is also how messages quote values.
    static func quoted(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\t": result += "\\t"
            case "\r": result += "\\r"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    let hex = String(scalar.value, radix: 16, uppercase: true)
                    result += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    result.unicodeScalars.append(scalar)
                }
            }
        }
        return result + "\""
    }
}
