/// A syntax error in a TOML document: the line it was found on and what was wrong there,
/// described as `line 7: expected '=' after key "max_connections"`.
struct TOMLError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The 1-based line of the error.
    var line: Int
    /// What was expected or which rule was broken.
    var message: String

    var description: String {
        "line \(line): \(message)"
    }
}
