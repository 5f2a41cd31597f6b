/// A JSON value restricted to what Matrix canonical JSON can hold: integers only, no floats.
///
/// Values come from `JSONValue.parse` (strict RFC 8259 plus the canonical-JSON number rules) or are built
/// in code with literals. `CanonicalJSON.encode` turns any value into its canonical bytes.
///
/// Object keys are Swift `String`s, so two keys that differ only in Unicode normalisation count as the
/// same key here; the parser reports such a pair as a duplicate key.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case integer(Int64)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// The member `key` of an object, or nil when this is not an object or has no such member.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members[key]
    }

    /// The element at `index` of an array, or nil when this is not an array or the index is out of range.
    public subscript(index: Int) -> JSONValue? {
        guard case .array(let elements) = self, elements.indices.contains(index) else { return nil }
        return elements[index]
    }

    public var stringValue: String? {
        guard case .string(let value) = self else { return nil }
        return value
    }

    public var intValue: Int64? {
        guard case .integer(let value) = self else { return nil }
        return value
    }

    public var boolValue: Bool? {
        guard case .bool(let value) = self else { return nil }
        return value
    }

    public var arrayValue: [JSONValue]? {
        guard case .array(let value) = self else { return nil }
        return value
    }

    public var objectValue: [String: JSONValue]? {
        guard case .object(let value) = self else { return nil }
        return value
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }
}

extension JSONValue: CustomStringConvertible {
    /// The canonical JSON text of the value.
    public var description: String {
        String(decoding: CanonicalJSON.encode(self), as: UTF8.self)
    }

    /// The canonical JSON text cut after `limit` characters with "…": how an error message
    /// shows a value it refuses, which may be as large as the document. Canonical JSON escapes
    /// every control character, so the text is one line.
    public func excerpt(limit: Int = 64) -> String {
        let scalars = description.unicodeScalars
        guard scalars.count > limit else { return description }
        return String(String.UnicodeScalarView(scalars.prefix(limit))) + "…"
    }
}

extension JSONValue: ExpressibleByNilLiteral {
    public init(nilLiteral: ()) {
        self = .null
    }
}

extension JSONValue: ExpressibleByBooleanLiteral {
    public init(booleanLiteral value: Bool) {
        self = .bool(value)
    }
}

extension JSONValue: ExpressibleByIntegerLiteral {
    public init(integerLiteral value: Int64) {
        self = .integer(value)
    }
}

extension JSONValue: ExpressibleByStringLiteral {
    public init(stringLiteral value: String) {
        self = .string(value)
    }
}

extension JSONValue: ExpressibleByArrayLiteral {
    public init(arrayLiteral elements: JSONValue...) {
        self = .array(elements)
    }
}

extension JSONValue: ExpressibleByDictionaryLiteral {
    /// Builds an object; a key written twice in the literal is a programming error and traps.
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(Dictionary(uniqueKeysWithValues: elements))
    }
}
