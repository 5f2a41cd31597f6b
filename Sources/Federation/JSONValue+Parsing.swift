extension JSONValue {
    /// The largest magnitude canonical JSON allows for an integer, (2^53)-1.
    public static let maximumSafeInteger: Int64 = (1 << 53) - 1

    /// Parses `bytes` as one JSON document: strict RFC 8259, validated UTF-8, no duplicate keys, nesting at
    /// most `maxDepth` arrays/objects deep, nothing but whitespace after the value. An error names the
    /// value it was found in, so a refusal of a large document points at the field.
    ///
    /// Numbers follow canonical JSON: integers in [-(2^53)+1, (2^53)-1]. A number written with a fraction or
    /// exponent is accepted when its value is such an integer (`1e10`, `2.50e1`); `-0` becomes 0. Anything
    /// else, such as `1.5`, is an error.
    public static func parse(_ bytes: some Collection<UInt8>, maxDepth: Int = 64) throws(JSONParseError) -> JSONValue {
        let result = bytes.withContiguousBytes { buffer in
            Result { () throws(JSONParseError) -> JSONValue in
                var parser = JSONParser(bytes: buffer, maxDepth: maxDepth)
                return try parser.parseDocument()
            }
        }
        return try result.get()
    }
}

/// A single-pass recursive-descent parser over a contiguous byte buffer.
struct JSONParser {
    private let bytes: UnsafeBufferPointer<UInt8>
    private let maxDepth: Int
    private var index = 0
    /// Reused for strings that contain escapes.
    private var scratch: [UInt8] = []

    init(bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    mutating func parseDocument() throws(JSONParseError) -> JSONValue {
        skipWhitespace()
        let value = try parseValue(depth: 0)
        skipWhitespace()
        guard index == bytes.count else { throw error(.trailingData) }
        return value
    }

    private func error(_ reason: JSONParseError.Reason, at offset: Int? = nil) -> JSONParseError {
        JSONParseError(offset: offset ?? index, reason: reason)
    }

    private func unexpected(expected: String) -> JSONParseError {
        if index < bytes.count {
            return error(.unexpectedByte(bytes[index], expected: expected))
        }
        return error(.unexpectedEnd(expected: expected))
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    private mutating func parseValue(depth: Int) throws(JSONParseError) -> JSONValue {
        guard index < bytes.count else { throw error(.unexpectedEnd(expected: "a value")) }
        switch bytes[index] {
        case UInt8(ascii: "{"):
            return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["):
            return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""):
            return .string(try parseString())
        case UInt8(ascii: "t"):
            try expectLiteral("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try expectLiteral("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try expectLiteral("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return .integer(try parseNumber())
        default:
            throw unexpected(expected: "a value")
        }
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(JSONParseError) {
        let start = index
        let expected = UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount)
        for byte in expected {
            guard index < bytes.count, bytes[index] == byte else {
                throw unexpected(expected: "the literal '\(literal)' that starts at byte \(start)")
            }
            index += 1
        }
    }

    private mutating func parseObject(depth: Int) throws(JSONParseError) -> JSONValue {
        guard depth <= maxDepth else { throw error(.tooDeep(limit: maxDepth)) }
        index += 1
        var members: [String: JSONValue] = [:]
        skipWhitespace()
        if index < bytes.count && bytes[index] == UInt8(ascii: "}") {
            index += 1
            return .object(members)
        }
        while true {
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else {
                throw unexpected(expected: "a string key")
            }
            let keyOffset = index
            let key = try parseString()
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw unexpected(expected: "':'") }
            index += 1
            skipWhitespace()
            let value: JSONValue
            do {
                value = try parseValue(depth: depth)
            } catch {
                throw error.within(FieldPath.member(key, of: ""))
            }
            if members.updateValue(value, forKey: key) != nil {
                throw error(.duplicateKey(key), at: keyOffset)
            }
            skipWhitespace()
            guard index < bytes.count else { throw error(.unexpectedEnd(expected: "',' or '}'")) }
            switch bytes[index] {
            case UInt8(ascii: ","):
                index += 1
                skipWhitespace()
            case UInt8(ascii: "}"):
                index += 1
                return .object(members)
            default:
                throw unexpected(expected: "',' or '}'")
            }
        }
    }

    private mutating func parseArray(depth: Int) throws(JSONParseError) -> JSONValue {
        guard depth <= maxDepth else { throw error(.tooDeep(limit: maxDepth)) }
        index += 1
        var elements: [JSONValue] = []
        skipWhitespace()
        if index < bytes.count && bytes[index] == UInt8(ascii: "]") {
            index += 1
            return .array(elements)
        }
        while true {
            do {
                elements.append(try parseValue(depth: depth))
            } catch {
                throw error.within(FieldPath.element(elements.count, of: ""))
            }
            skipWhitespace()
            guard index < bytes.count else { throw error(.unexpectedEnd(expected: "',' or ']'")) }
            switch bytes[index] {
            case UInt8(ascii: ","):
                index += 1
                skipWhitespace()
            case UInt8(ascii: "]"):
                index += 1
                return .array(elements)
            default:
                throw unexpected(expected: "',' or ']'")
            }
        }
    }

    /// Parses the string whose opening quote is at `index`.
    private mutating func parseString() throws(JSONParseError) -> String {
        index += 1
        var runStart = index
        var escaped = false
        while true {
            guard index < bytes.count else { throw error(.unexpectedEnd(expected: "the closing '\"' of a string")) }
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                let run = UnsafeBufferPointer(rebasing: bytes[runStart..<index])
                index += 1
                if !escaped {
                    return String(decoding: run, as: UTF8.self)
                }
                scratch.append(contentsOf: run)
                let string = String(decoding: scratch, as: UTF8.self)
                scratch.removeAll(keepingCapacity: true)
                return string
            case UInt8(ascii: "\\"):
                if !escaped {
                    escaped = true
                    scratch.removeAll(keepingCapacity: true)
                }
                scratch.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<index]))
                try parseEscape()
                runStart = index
            case 0x00..<0x20:
                throw error(.controlCharacterInString(byte))
            case 0x20..<0x80:
                index += 1
            default:
                try skipMultibyteScalar()
            }
        }
    }

    /// Parses the escape whose backslash is at `index` and appends its UTF-8 to `scratch`.
    private mutating func parseEscape() throws(JSONParseError) {
        let escapeOffset = index
        index += 1
        guard index < bytes.count else { throw error(.unexpectedEnd(expected: "an escape character")) }
        let byte = bytes[index]
        index += 1
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): scratch.append(byte)
        case UInt8(ascii: "b"): scratch.append(0x08)
        case UInt8(ascii: "f"): scratch.append(0x0C)
        case UInt8(ascii: "n"): scratch.append(0x0A)
        case UInt8(ascii: "r"): scratch.append(0x0D)
        case UInt8(ascii: "t"): scratch.append(0x09)
        case UInt8(ascii: "u"):
            let unit = try parseHex4()
            let scalarValue: UInt32
            switch unit {
            case 0xD800...0xDBFF:
                guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"),
                    bytes[index + 1] == UInt8(ascii: "u")
                else { throw error(.unpairedSurrogate(unit), at: escapeOffset) }
                index += 2
                let low = try parseHex4()
                guard (0xDC00...0xDFFF).contains(low) else { throw error(.unpairedSurrogate(unit), at: escapeOffset) }
                scalarValue = 0x10000 + ((UInt32(unit) - 0xD800) << 10) + (UInt32(low) - 0xDC00)
            case 0xDC00...0xDFFF:
                throw error(.unpairedSurrogate(unit), at: escapeOffset)
            default:
                scalarValue = UInt32(unit)
            }
            let scalar = Unicode.Scalar(scalarValue)!
            scratch.append(contentsOf: UTF8.encode(scalar)!)
        default:
            throw error(.invalidEscape(byte), at: index - 1)
        }
    }

    private mutating func parseHex4() throws(JSONParseError) -> UInt16 {
        guard index + 4 <= bytes.count else { throw error(.invalidUnicodeEscape) }
        var value: UInt16 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw error(.invalidUnicodeEscape)
            }
            value = value << 4 | UInt16(digit)
            index += 1
        }
        return value
    }

    /// Checks the multi-byte UTF-8 sequence starting at `index` (RFC 3629 table, so no overlongs, no
    /// surrogates, nothing above U+10FFFF) and steps over it.
    private mutating func skipMultibyteScalar() throws(JSONParseError) {
        let lead = bytes[index]
        let length: Int
        var secondRange: ClosedRange<UInt8> = 0x80...0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; secondRange = 0xA0...0xBF
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; secondRange = 0x80...0x9F
        case 0xF0: length = 4; secondRange = 0x90...0xBF
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; secondRange = 0x80...0x8F
        default: throw error(.invalidUTF8)
        }
        guard index + length <= bytes.count, secondRange.contains(bytes[index + 1]) else {
            throw error(.invalidUTF8)
        }
        for offset in 2..<length where !(0x80...0xBF).contains(bytes[index + offset]) {
            throw error(.invalidUTF8)
        }
        index += length
    }

    private func isDigit(_ position: Int) -> Bool {
        position < bytes.count && (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[position])
    }

    /// Parses a JSON number and applies the canonical-JSON integer rules to its value.
    private mutating func parseNumber() throws(JSONParseError) -> Int64 {
        let start = index
        let negative = bytes[index] == UInt8(ascii: "-")
        if negative { index += 1 }
        guard isDigit(index) else { throw error(.invalidNumber("expected a digit after '-'")) }
        let integerStart = index
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
            if isDigit(index) { throw error(.invalidNumber("leading zeros are not allowed"), at: index - 1) }
        } else {
            while isDigit(index) { index += 1 }
        }
        let integerEnd = index

        var fractionStart = index
        var fractionEnd = index
        if index < bytes.count && bytes[index] == UInt8(ascii: ".") {
            index += 1
            fractionStart = index
            while isDigit(index) { index += 1 }
            fractionEnd = index
            guard fractionEnd > fractionStart else { throw error(.invalidNumber("expected a digit after '.'")) }
        }

        var exponent = 0
        var hasExponent = false
        if index < bytes.count && (bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E")) {
            hasExponent = true
            index += 1
            var exponentNegative = false
            if index < bytes.count && (bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-")) {
                exponentNegative = bytes[index] == UInt8(ascii: "-")
                index += 1
            }
            guard isDigit(index) else { throw error(.invalidNumber("expected a digit in the exponent")) }
            while isDigit(index) {
                // Saturate: any exponent this large already decides the outcome.
                exponent = min(exponent * 10 + Int(bytes[index] - UInt8(ascii: "0")), 1_000_000)
                index += 1
            }
            if exponentNegative { exponent = -exponent }
        }

        let integerCount = integerEnd - integerStart
        let fractionCount = fractionEnd - fractionStart
        if fractionCount == 0 && !hasExponent {
            guard integerCount <= 16 else { throw error(.integerOutOfRange(numberText(from: start)), at: start) }
            var magnitude: Int64 = 0
            for position in integerStart..<integerEnd {
                magnitude = magnitude * 10 + Int64(bytes[position] - UInt8(ascii: "0"))
            }
            guard magnitude <= JSONValue.maximumSafeInteger else {
                throw error(.integerOutOfRange(numberText(from: start)), at: start)
            }
            return negative ? -magnitude : magnitude
        }

        // The value is D × 10^(exponent − fractionCount), where D is the integer digits followed by the
        // fraction digits. Once D's trailing zeros move into the power, the value is an integer exactly when
        // that power is not negative.
        let digitCount = integerCount + fractionCount
        func digit(_ position: Int) -> UInt8 {
            let byte = position < integerCount
                ? bytes[integerStart + position] : bytes[fractionStart + position - integerCount]
            return byte - UInt8(ascii: "0")
        }
        guard let firstNonZero = (0..<digitCount).first(where: { digit($0) != 0 }) else { return 0 }
        let lastNonZero = (0..<digitCount).last(where: { digit($0) != 0 })!
        let power = exponent - fractionCount + (digitCount - 1 - lastNonZero)
        guard power >= 0 else { throw error(.notAnInteger(numberText(from: start)), at: start) }
        guard lastNonZero - firstNonZero + 1 + power <= 16 else {
            throw error(.integerOutOfRange(numberText(from: start)), at: start)
        }
        var magnitude: Int64 = 0
        for position in firstNonZero...lastNonZero {
            magnitude = magnitude * 10 + Int64(digit(position))
        }
        for _ in 0..<power {
            magnitude *= 10
        }
        guard magnitude <= JSONValue.maximumSafeInteger else {
            throw error(.integerOutOfRange(numberText(from: start)), at: start)
        }
        return negative ? -magnitude : magnitude
    }

    /// The number text for an error message, shortened when it is long.
    private func numberText(from start: Int) -> String {
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        guard text.utf8.count > 40 else { return text }
        return String(text.prefix(37)) + "..."
    }
}
