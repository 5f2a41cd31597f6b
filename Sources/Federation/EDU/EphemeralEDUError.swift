/// Why the content of a typing, presence or receipt EDU was refused: names the field, as a
/// path from `content`, and the rule it broke, e.g.
/// `content.push[2].user_id: required string is missing`.
public struct EphemeralEDUError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The JSON kinds a field can be required to have.
    public enum Kind: String, Sendable, Equatable {
        case string, boolean, integer, array, object
    }

    /// The rule that was broken.
    public enum Rule: Sendable, Equatable {
        /// A required member is absent.
        case missing(Kind)
        /// The member is present with another JSON kind.
        case wrongKind(expected: Kind)
        /// An array that must hold at least one element is empty.
        case empty
    }

    public let eduType: String
    /// Where the broken rule was found, e.g. `content["!room:a.example"]["m.read"]["@u:a.example"].event_ids`.
    public let field: String
    public let rule: Rule

    public init(eduType: String, field: String, rule: Rule) {
        self.eduType = eduType
        self.field = field
        self.rule = rule
    }

    public var description: String {
        switch rule {
        case .missing(let kind):
            return "\(field): required \(kind.rawValue) is missing"
        case .wrongKind(let kind):
            return "\(field): must be \(kind == .array || kind == .integer || kind == .object ? "an" : "a") \(kind.rawValue)"
        case .empty:
            return "\(field): must not be empty"
        }
    }
}
