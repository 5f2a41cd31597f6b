import Federation

/// A strict parser for the part of TOML 1.0 that a configuration file needs.
///
/// Supported: comments, `[table]` and `[a.b]` headers, bare, quoted and dotted keys, basic
/// strings with escapes, literal strings, integers (decimal with sign and `_` separators,
/// `0x`, `0o`, `0b`), floats, booleans, and arrays (multi-line, trailing comma, comments
/// inside). The rest of TOML (multi-line strings, inline tables, arrays of tables, dates and
/// times) is an error naming the feature, so nothing is ever silently misread. Duplicate keys
/// and tables are errors, as TOML requires. The first error ends the parse.
struct TOMLParser {
    /// Parses a whole document into its root table.
    static func parse(_ text: String) throws(TOMLError) -> TOMLTable {
        var parser = TOMLParser(text)
        return try parser.parseDocument()
    }

    private let bytes: [UInt8]
    private var index = 0
    private var line = 1
    private let root = Node(origin: .root, line: 0)
    private var current: Node
    private var currentPath: [String] = []

    private init(_ text: String) {
        bytes = Array(text.utf8)
        current = root
    }

    private mutating func parseDocument() throws(TOMLError) -> TOMLTable {
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) {
            index = 3
        }
        while true {
            skipSpaces()
            guard let byte = peek() else { break }
            switch byte {
            case Byte.hash: try skipComment()
            case Byte.lineFeed, Byte.carriageReturn: try consumeNewline()
            case Byte.openBracket: try parseTableHeader()
            default: try parseKeyValue()
            }
        }
        return root.table()
    }

    private mutating func parseTableHeader() throws(TOMLError) {
        index += 1
        if peek() == Byte.openBracket {
            throw error("arrays of tables ([[...]]) are not supported")
        }
        skipSpaces()
        let path = try parseKey()
        skipSpaces()
        guard peek() == Byte.closeBracket else {
            throw error("expected ']' to close the table header [\(display(path))], got \(describeNext())")
        }
        index += 1
        try defineTable(path)
        try consumeEndOfLine(after: "the table header [\(display(path))]")
    }

    private mutating func parseKeyValue() throws(TOMLError) {
        let path = try parseKey()
        skipSpaces()
        guard peek() == Byte.equals else {
            throw error("expected '=' after key \"\(display(path))\"")
        }
        index += 1
        skipSpaces()
        guard let next = peek(), next != Byte.lineFeed, next != Byte.carriageReturn, next != Byte.hash else {
            throw error("expected a value after '=' for key \"\(display(path))\"")
        }
        let value = try parseValue()
        try insert(value, at: path)
        try consumeEndOfLine(after: "the value of key \"\(display(path))\"")
    }

    private mutating func parseKey() throws(TOMLError) -> [String] {
        var parts: [String] = []
        while true {
            parts.append(try parseSimpleKey())
            skipSpaces()
            guard peek() == Byte.dot else { return parts }
            index += 1
            skipSpaces()
        }
    }

    private mutating func parseSimpleKey() throws(TOMLError) -> String {
        switch peek() {
        case Byte.quote:
            if startsWith("\"\"\"") { throw error("a key cannot be a multi-line string") }
            return try parseBasicString()
        case Byte.apostrophe:
            if startsWith("'''") { throw error("a key cannot be a multi-line string") }
            return try parseLiteralString()
        default:
            let start = index
            while let byte = peek(), Byte.isBareKey(byte) { index += 1 }
            guard index > start else {
                throw error("expected a key, got \(describeNext())")
            }
            return String(decoding: bytes[start..<index], as: UTF8.self)
        }
    }

    private mutating func parseValue() throws(TOMLError) -> TOMLValue {
        let valueLine = line
        switch peek() {
        case Byte.quote:
            if startsWith("\"\"\"") { throw error("multi-line strings (\"\"\") are not supported") }
            return TOMLValue(kind: .string(try parseBasicString()), line: valueLine)
        case Byte.apostrophe:
            if startsWith("'''") { throw error("multi-line strings (''') are not supported") }
            return TOMLValue(kind: .string(try parseLiteralString()), line: valueLine)
        case Byte.openBracket:
            return try parseArray()
        case Byte.openBrace:
            throw error("inline tables ({...}) are not supported; use a [table] header instead")
        default:
            let start = index
            while let byte = peek(), !Byte.endsBareValue(byte) { index += 1 }
            guard index > start else {
                throw error("expected a value, got \(describeNext())")
            }
            let token = String(decoding: bytes[start..<index], as: UTF8.self)
            return TOMLValue(kind: try bareValue(token), line: valueLine)
        }
    }

    private mutating func parseArray() throws(TOMLError) -> TOMLValue {
        let openingLine = line
        index += 1
        var elements: [TOMLValue] = []
        while true {
            try skipArraySpace()
            guard let byte = peek() else {
                throw error("unterminated array: no ']' for the '[' on line \(openingLine)")
            }
            if byte == Byte.closeBracket {
                index += 1
                break
            }
            elements.append(try parseValue())
            try skipArraySpace()
            switch peek() {
            case Byte.comma:
                index += 1
            case Byte.closeBracket:
                index += 1
                return TOMLValue(kind: .array(elements), line: openingLine)
            case nil:
                throw error("unterminated array: no ']' for the '[' on line \(openingLine)")
            default:
                throw error("expected ',' or ']' after an array element, got \(describeNext())")
            }
        }
        return TOMLValue(kind: .array(elements), line: openingLine)
    }

    private mutating func parseBasicString() throws(TOMLError) -> String {
        index += 1
        var content: [UInt8] = []
        while true {
            guard let byte = peek(), byte != Byte.lineFeed, byte != Byte.carriageReturn else {
                throw error("unterminated string: missing the closing '\"' on this line")
            }
            index += 1
            switch byte {
            case Byte.quote:
                return String(decoding: content, as: UTF8.self)
            case Byte.backslash:
                try parseEscape(into: &content)
            default:
                if Byte.isControl(byte) {
                    throw error("control character \(Byte.codePoint(byte)) must be escaped in a string")
                }
                content.append(byte)
            }
        }
    }

    private mutating func parseEscape(into content: inout [UInt8]) throws(TOMLError) {
        guard let escape = peek(), escape != Byte.lineFeed, escape != Byte.carriageReturn else {
            throw error("unterminated string: missing the closing '\"' on this line")
        }
        index += 1
        switch escape {
        case UInt8(ascii: "b"): content.append(0x08)
        case UInt8(ascii: "t"): content.append(0x09)
        case UInt8(ascii: "n"): content.append(0x0A)
        case UInt8(ascii: "f"): content.append(0x0C)
        case UInt8(ascii: "r"): content.append(0x0D)
        case Byte.quote, Byte.backslash: content.append(escape)
        case UInt8(ascii: "u"): try parseUnicodeEscape(digits: 4, into: &content)
        case UInt8(ascii: "U"): try parseUnicodeEscape(digits: 8, into: &content)
        default:
            index -= 1
            throw error("invalid escape sequence \\\(describeNext().dropFirst().dropLast()) in a string")
        }
    }

    private mutating func parseUnicodeEscape(digits: Int, into content: inout [UInt8]) throws(TOMLError) {
        let letter = digits == 4 ? "u" : "U"
        var value: UInt32 = 0
        for _ in 0..<digits {
            guard let byte = peek(), let digit = byte.hexDigitValue else {
                throw error("\\\(letter) must be followed by \(digits) hex digits")
            }
            value = value << 4 | UInt32(digit)
            index += 1
        }
        guard let scalar = Unicode.Scalar(value) else {
            let hex = String(value, radix: 16, uppercase: true)
            throw error("\\\(letter)\(String(repeating: "0", count: max(0, digits - hex.count)))\(hex) is not a Unicode scalar value")
        }
        UTF8.encode(scalar) { content.append($0) }
    }

    private mutating func parseLiteralString() throws(TOMLError) -> String {
        index += 1
        let start = index
        while true {
            guard let byte = peek(), byte != Byte.lineFeed, byte != Byte.carriageReturn else {
                throw error("unterminated literal string: missing the closing \"'\" on this line")
            }
            if byte == Byte.apostrophe {
                index += 1
                return String(decoding: bytes[start..<(index - 1)], as: UTF8.self)
            }
            if Byte.isControl(byte) {
                throw error("control character \(Byte.codePoint(byte)) is not allowed in a literal string")
            }
            index += 1
        }
    }

    private func bareValue(_ token: String) throws(TOMLError) -> TOMLValue.Kind {
        switch token {
        case "true": return .boolean(true)
        case "false": return .boolean(false)
        case "inf", "+inf": return .float(.infinity)
        case "-inf": return .float(-.infinity)
        case "nan", "+nan", "-nan": return .float(.nan)
        default: break
        }
        let characters = Array(token.utf8)
        if Byte.looksLikeDateOrTime(characters) {
            throw error("dates and times are not supported: \(token)")
        }
        if characters.count > 2, characters[0] == Byte.zero,
           let radix = [UInt8(ascii: "x"): 16, UInt8(ascii: "o"): 8, UInt8(ascii: "b"): 2][characters[1]] {
            return .integer(try radixInteger(token, digits: characters[2...], radix: radix))
        }
        guard let first = characters.first,
              Byte.isDigit(first) || first == Byte.plus || first == Byte.minus || first == Byte.dot
        else {
            throw error("expected a value, got \(token) (strings must be quoted)")
        }
        if characters.contains(where: { $0 == Byte.dot || $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") }) {
            return .float(try float(token, characters))
        }
        return .integer(try decimalInteger(token, characters))
    }

    private func decimalInteger(_ token: String, _ characters: [UInt8]) throws(TOMLError) -> Int {
        var digits = characters[...]
        if digits.first == Byte.plus || digits.first == Byte.minus {
            digits = digits.dropFirst()
        }
        guard Byte.areDigits(digits, radix: 10) else {
            throw error("invalid integer \(token)")
        }
        guard digits.count == 1 || digits.first != Byte.zero else {
            throw error("invalid integer \(token): leading zeros are not allowed")
        }
        guard let value = Int(String(decoding: characters.filter { $0 != Byte.underscore }, as: UTF8.self)) else {
            throw error("integer \(token) does not fit in 64 bits")
        }
        return value
    }

    private func radixInteger(_ token: String, digits: ArraySlice<UInt8>, radix: Int) throws(TOMLError) -> Int {
        guard Byte.areDigits(digits, radix: radix) else {
            throw error("invalid integer \(token)")
        }
        var value = 0
        for byte in digits where byte != Byte.underscore {
            let (shifted, overflowShift) = value.multipliedReportingOverflow(by: radix)
            let (sum, overflowAdd) = shifted.addingReportingOverflow(Int(byte.hexDigitValue!))
            guard !overflowShift, !overflowAdd else {
                throw error("integer \(token) does not fit in 64 bits")
            }
            value = sum
        }
        return value
    }

    private func float(_ token: String, _ characters: [UInt8]) throws(TOMLError) -> Double {
        var rest = characters[...]
        if rest.first == Byte.plus || rest.first == Byte.minus {
            rest = rest.dropFirst()
        }
        let isExponentMark = { (byte: UInt8) in byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E") }
        let integerEnd = rest.firstIndex { $0 == Byte.dot || isExponentMark($0) } ?? rest.endIndex
        let integerPart = rest[..<integerEnd]
        var valid = Byte.areDigits(integerPart, radix: 10)
            && (integerPart.count == 1 || integerPart.first != Byte.zero)
        var position = integerEnd
        if position < rest.endIndex, rest[position] == Byte.dot {
            let fractionEnd = rest[(position + 1)...].firstIndex(where: isExponentMark) ?? rest.endIndex
            valid = valid && Byte.areDigits(rest[(position + 1)..<fractionEnd], radix: 10)
            position = fractionEnd
        }
        if position < rest.endIndex {
            var exponent = rest[(position + 1)...]
            if exponent.first == Byte.plus || exponent.first == Byte.minus {
                exponent = exponent.dropFirst()
            }
            valid = valid && Byte.areDigits(exponent, radix: 10)
        }
        guard valid, let value = Double(String(decoding: characters.filter { $0 != Byte.underscore }, as: UTF8.self)) else {
            throw error("invalid float \(token)")
        }
        guard value.isFinite else {
            throw error("float \(token) is out of range")
        }
        return value
    }

    private mutating func defineTable(_ path: [String]) throws(TOMLError) {
        var node = root
        for (position, key) in path.enumerated() {
            let isLast = position == path.count - 1
            switch node.children[key] {
            case nil:
                let table = Node(origin: isLast ? .header : .implicit, line: line)
                node.add(key, .table(table))
                node = table
            case .value(let value)?:
                throw error("table [\(display(path))] conflicts with key \"\(display(path[...position]))\" defined on line \(value.line)")
            case .table(let table)?:
                if isLast {
                    switch table.origin {
                    case .implicit:
                        table.origin = .header
                        table.line = line
                    case .header, .root:
                        throw error("table [\(display(path))] is defined twice (first on line \(table.line))")
                    case .dotted:
                        throw error("table [\(display(path))] was already defined by dotted keys on line \(table.line)")
                    }
                }
                node = table
            }
        }
        current = node
        currentPath = path
    }

    private mutating func insert(_ value: TOMLValue, at path: [String]) throws(TOMLError) {
        let fullPath = currentPath + path
        var node = current
        for (position, key) in path.dropLast().enumerated() {
            let prefix = display(currentPath + path[...position])
            switch node.children[key] {
            case nil:
                let table = Node(origin: .dotted, line: line)
                node.add(key, .table(table))
                node = table
            case .value(let existing)?:
                throw error("key \"\(display(fullPath))\" conflicts with key \"\(prefix)\" defined on line \(existing.line)")
            case .table(let table)?:
                guard table.origin == .dotted else {
                    throw error("key \"\(display(fullPath))\" cannot use dotted keys to add to table [\(prefix)] defined on line \(table.line)")
                }
                node = table
            }
        }
        let key = path[path.count - 1]
        if let existing = node.children[key] {
            throw error("duplicate key \"\(display(fullPath))\" (first defined on line \(existing.line))")
        }
        node.add(key, .value(value))
    }

    private func peek() -> UInt8? {
        index < bytes.count ? bytes[index] : nil
    }

    private func startsWith(_ text: String) -> Bool {
        bytes[index...].starts(with: text.utf8)
    }

    private mutating func skipSpaces() {
        while let byte = peek(), byte == Byte.space || byte == Byte.tab { index += 1 }
    }

    private mutating func skipComment() throws(TOMLError) {
        index += 1
        while let byte = peek(), byte != Byte.lineFeed, byte != Byte.carriageReturn {
            if Byte.isControl(byte) {
                throw error("control character \(Byte.codePoint(byte)) is not allowed in a comment")
            }
            index += 1
        }
    }

    private mutating func consumeNewline() throws(TOMLError) {
        if peek() == Byte.carriageReturn {
            guard index + 1 < bytes.count, bytes[index + 1] == Byte.lineFeed else {
                throw error("a carriage return must be followed by a line feed")
            }
            index += 1
        }
        index += 1
        line += 1
    }

    private mutating func consumeEndOfLine(after what: String) throws(TOMLError) {
        skipSpaces()
        if peek() == Byte.hash {
            try skipComment()
        }
        switch peek() {
        case nil:
            return
        case Byte.lineFeed, Byte.carriageReturn:
            try consumeNewline()
        default:
            throw error("expected the end of the line after \(what), got \(describeNext())")
        }
    }

    private mutating func skipArraySpace() throws(TOMLError) {
        while let byte = peek() {
            switch byte {
            case Byte.space, Byte.tab: index += 1
            case Byte.lineFeed, Byte.carriageReturn: try consumeNewline()
            case Byte.hash: try skipComment()
            default: return
            }
        }
    }

    private func describeNext() -> String {
        guard let byte = peek() else { return "the end of the file" }
        if byte == Byte.lineFeed || byte == Byte.carriageReturn { return "the end of the line" }
        if byte < 0x80, Byte.isControl(byte) { return "control character \(Byte.codePoint(byte))" }
        let scalarBytes = bytes[index..<min(index + 4, bytes.count)]
        let character = String(decoding: scalarBytes, as: UTF8.self).unicodeScalars.first.map(String.init) ?? "?"
        return "'\(character)'"
    }

    private func display<Path: Sequence<String>>(_ path: Path) -> String {
        path.joined(separator: ".")
    }

    private func error(_ message: String) -> TOMLError {
        TOMLError(line: line, message: message)
    }
}

/// A table under construction; shared by reference so dotted keys and headers can reach it.
private final class Node {
    /// How the table came to exist, which decides what may still add to it (TOML 1.0 rules).
    enum Origin {
        case root
        case implicit
        case header
        case dotted
    }

    enum Child {
        case table(Node)
        case value(TOMLValue)

        var line: Int {
            switch self {
            case .table(let node): node.line
            case .value(let value): value.line
            }
        }
    }

    var origin: Origin
    var line: Int
    private(set) var keys: [String] = []
    private(set) var children: [String: Child] = [:]

    init(origin: Origin, line: Int) {
        self.origin = origin
        self.line = line
    }

    func add(_ key: String, _ child: Child) {
        keys.append(key)
        children[key] = child
    }

    func table() -> TOMLTable {
        var table = TOMLTable()
        for key in keys {
            switch children[key]! {
            case .table(let node):
                table.insert(TOMLValue(kind: .table(node.table()), line: node.line), for: key)
            case .value(let value):
                table.insert(value, for: key)
            }
        }
        return table
    }
}

private enum Byte {
    static let tab = UInt8(ascii: "\t")
    static let lineFeed = UInt8(ascii: "\n")
    static let carriageReturn = UInt8(ascii: "\r")
    static let space = UInt8(ascii: " ")
    static let quote = UInt8(ascii: "\"")
    static let hash = UInt8(ascii: "#")
    static let apostrophe = UInt8(ascii: "'")
    static let plus = UInt8(ascii: "+")
    static let comma = UInt8(ascii: ",")
    static let minus = UInt8(ascii: "-")
    static let dot = UInt8(ascii: ".")
    static let zero = UInt8(ascii: "0")
    static let equals = UInt8(ascii: "=")
    static let openBracket = UInt8(ascii: "[")
    static let backslash = UInt8(ascii: "\\")
    static let closeBracket = UInt8(ascii: "]")
    static let underscore = UInt8(ascii: "_")
    static let openBrace = UInt8(ascii: "{")
    static let closeBrace = UInt8(ascii: "}")

    static func isDigit(_ byte: UInt8) -> Bool {
        byte >= zero && byte <= UInt8(ascii: "9")
    }

    static func isBareKey(_ byte: UInt8) -> Bool {
        isDigit(byte) || (byte | 0x20 >= UInt8(ascii: "a") && byte | 0x20 <= UInt8(ascii: "z"))
            || byte == underscore || byte == minus
    }

    static func endsBareValue(_ byte: UInt8) -> Bool {
        [space, tab, lineFeed, carriageReturn, comma, closeBracket, hash, openBrace, closeBrace, openBracket]
            .contains(byte)
    }

    /// Control characters other than tab, which TOML forbids raw in strings and comments.
    static func isControl(_ byte: UInt8) -> Bool {
        (byte < 0x20 && byte != tab) || byte == 0x7F
    }

    static func codePoint(_ byte: UInt8) -> String {
        let hex = String(byte, radix: 16, uppercase: true)
        return "U+" + String(repeating: "0", count: 4 - hex.count) + hex
    }

    /// Digits of the radix, optionally separated by single underscores between digits.
    static func areDigits(_ digits: ArraySlice<UInt8>, radix: Int) -> Bool {
        guard let first = digits.first, let last = digits.last,
              first != underscore, last != underscore
        else { return false }
        var previousWasUnderscore = false
        for byte in digits {
            if byte == underscore {
                if previousWasUnderscore { return false }
                previousWasUnderscore = true
            } else {
                guard let value = byte.hexDigitValue, Int(value) < radix else { return false }
                previousWasUnderscore = false
            }
        }
        return true
    }

    /// `1979-05-27...` or `07:32...`: the start of a TOML date or time.
    static func looksLikeDateOrTime(_ characters: [UInt8]) -> Bool {
        if characters.count >= 5, characters[0..<4].allSatisfy(isDigit), characters[4] == minus {
            return true
        }
        return characters.count >= 3 && characters[0..<2].allSatisfy(isDigit) && characters[2] == UInt8(ascii: ":")
    }
}
