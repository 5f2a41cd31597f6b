/// How error messages name a place in a JSON document, the way a reader would write it:
/// `pdus[3].destinations[0]`, `content.push[1].user_id`.
///
/// A key that is not a plain name (letters, digits, `_`, `-` and `.`, at most 64 of them) is
/// written `["…"]`, quoted, escaped and shortened like `quotedExcerpt`, since keys come from
/// whoever sent the document and may be empty, huge or full of control characters.
public enum FieldPath {
    /// The member `key` of the object at `parent` ("" for the top level).
    public static func member(_ key: some StringProtocol, of parent: String) -> String {
        guard isPlainName(key) else { return Self.key(key, of: parent) }
        return parent.isEmpty ? String(key) : parent + "." + key
    }

    /// The member `key` of an object used as a map (room IDs, user IDs), always written
    /// `parent["key"]`, since such keys are data rather than names.
    public static func key(_ key: some StringProtocol, of parent: String) -> String {
        parent + "[" + key.quotedExcerpt(limit: 64) + "]"
    }

    /// The element at `index` of the array at `parent`.
    public static func element(_ index: Int, of parent: String) -> String {
        parent + "[\(index)]"
    }

    /// `inner`, a path from the member or element `outer`, as a path from the top level.
    public static func joining(_ outer: String, _ inner: String) -> String {
        if inner.isEmpty { return outer }
        return inner.hasPrefix("[") ? outer + inner : outer + "." + inner
    }

    private static func isPlainName(_ key: some StringProtocol) -> Bool {
        let bytes = key.utf8
        return !bytes.isEmpty && bytes.count <= 64 && bytes.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: "."):
                true
            default:
                false
            }
        }
    }
}
