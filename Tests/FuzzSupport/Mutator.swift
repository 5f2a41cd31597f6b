/// Deterministic mutation fuzzing for the parsers of untrusted bytes: from a small corpus of
/// valid inputs it derives malformed ones the way coverage-guided fuzzers do (bit flips, byte
/// insertions and deletions, duplicated and repeated ranges, truncations, splices of two
/// inputs, tokens of the format and numbers at the edges of integer types), each input from
/// its own seed so that a failure names the one input to replay.
///
/// Inputs stay small (at most `maxLength` bytes), so that thousands of them run in seconds
/// in a debug build and a parser that loops or blows up shows as a test that does not finish.
public struct Mutator: Sendable {
    /// One generated input and how to get it again.
    public struct Case: Sendable, CustomStringConvertible {
        /// The position of the input in the run; `Mutator.input(_:)` regenerates it.
        public var index: Int
        public var bytes: [UInt8]

        public init(index: Int, bytes: [UInt8]) {
            self.index = index
            self.bytes = bytes
        }

        public var description: String {
            "case \(index) (\(bytes.count) bytes): \(Self.escaped(bytes))"
        }

        /// The bytes as a Swift-like string literal: printable ASCII as it is, the rest as \u{XX}.
        static func escaped(_ bytes: [UInt8]) -> String {
            var text = "\""
            for byte in bytes.prefix(600) {
                switch byte {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"): text += "\\" + String(UnicodeScalar(byte))
                case 0x20..<0x7F: text.append(Character(UnicodeScalar(byte)))
                default: text += "\\u{\(String(byte, radix: 16, uppercase: true))}"
                }
            }
            return text + (bytes.count > 600 ? "\"…" : "\"")
        }
    }

    public let corpus: [[UInt8]]
    /// Pieces of the format (keywords, delimiters, field names) inserted whole.
    public let tokens: [[UInt8]]
    public let seed: UInt64
    public let maxLength: Int

    public init(corpus: [[UInt8]], tokens: [[UInt8]] = [], seed: UInt64, maxLength: Int = 4096) {
        precondition(!corpus.isEmpty, "a mutator needs at least one valid input")
        self.corpus = corpus
        self.tokens = tokens
        self.seed = seed
        self.maxLength = maxLength
    }

    /// `count` inputs: the corpus itself, then mutants.
    public func cases(_ count: Int) -> [Case] {
        (0..<count).map(input)
    }

    /// Every truncation of every corpus entry of at most `maxLength` bytes: what a peer that
    /// stops mid-message sends.
    public func truncations(ofEntriesUpTo maxLength: Int = 512) -> [[UInt8]] {
        corpus.filter { $0.count <= maxLength }.flatMap { entry in (0..<entry.count).map { Array(entry[..<$0]) } }
    }

    /// The input at `index`, the same for a given seed and corpus on every run.
    public func input(_ index: Int) -> Case {
        if index < corpus.count { return Case(index: index, bytes: corpus[index]) }
        var generator = SplitMix64(seed: seed &+ UInt64(index) &* 0x2545_F491_4F6C_DD1D)
        var bytes = corpus[Int(generator.next() % UInt64(corpus.count))]
        let rounds = 1 + Int(generator.next() % 4)
        for _ in 0..<rounds {
            mutate(&bytes, using: &generator)
        }
        if bytes.count > maxLength { bytes.removeLast(bytes.count - maxLength) }
        return Case(index: index, bytes: bytes)
    }

    /// Bytes parsers treat specially, and the edges of signed and unsigned bytes.
    static let interestingBytes: [UInt8] = [
        0x00, 0x01, 0x7F, 0x80, 0xC0, 0xFF, 0xFE, 0x3F, 0x40,
        0x09, 0x0A, 0x0D, 0x20, 0x22, 0x2C, 0x2D, 0x2E, 0x30, 0x31, 0x39, 0x3A, 0x3B, 0x5C, 0x5B, 0x5D, 0x7B, 0x7D,
    ]

    /// Numbers at the edges of integer types and of the formats' limits, as text.
    static let interestingNumbers: [[UInt8]] = [
        "0", "-0", "-1", "1", "255", "256", "65535", "65536", "2147483647", "4294967296", "9007199254740991",
        "9007199254740992", "9223372036854775807", "9223372036854775808", "18446744073709551616",
        "99999999999999999999999999999", "1e308", "1e-308", "7fffffffffffffff", "ffffffffffffffffff",
    ].map { Array($0.utf8) }

    private func mutate(_ bytes: inout [UInt8], using generator: inout SplitMix64) {
        func position(_ upper: Int) -> Int {
            upper <= 0 ? 0 : Int(generator.next() % UInt64(upper))
        }
        switch generator.next() % 14 {
        case 0 where !bytes.isEmpty:
            bytes[position(bytes.count)] ^= 1 << UInt8(generator.next() % 8)
        case 1 where !bytes.isEmpty:
            bytes[position(bytes.count)] = UInt8(truncatingIfNeeded: generator.next())
        case 2 where !bytes.isEmpty:
            bytes[position(bytes.count)] = Self.interestingBytes[position(Self.interestingBytes.count)]
        case 3:
            bytes.insert(UInt8(truncatingIfNeeded: generator.next()), at: position(bytes.count + 1))
        case 4 where !bytes.isEmpty:
            let start = position(bytes.count)
            bytes.removeSubrange(start..<min(bytes.count, start + 1 + position(16)))
        case 5 where !bytes.isEmpty:
            let start = position(bytes.count)
            let range = start..<min(bytes.count, start + 1 + position(32))
            bytes.insert(contentsOf: bytes[range], at: position(bytes.count + 1))
        case 6 where !bytes.isEmpty:
            bytes.removeLast(1 + position(bytes.count))
        case 7:
            let other = corpus[position(corpus.count)]
            let cut = position(bytes.count + 1)
            let otherCut = position(other.count + 1)
            bytes = Array(bytes[..<cut] + other[otherCut...])
        case 8 where !tokens.isEmpty:
            bytes.insert(contentsOf: tokens[position(tokens.count)], at: position(bytes.count + 1))
        case 9 where !tokens.isEmpty:
            let token = tokens[position(tokens.count)]
            let start = position(bytes.count + 1)
            bytes.replaceSubrange(start..<min(bytes.count, start + token.count), with: token)
        case 10:
            let number = Self.interestingNumbers[position(Self.interestingNumbers.count)]
            let start = position(bytes.count + 1)
            bytes.replaceSubrange(start..<min(bytes.count, start + 1 + position(4)), with: number)
        case 11 where !bytes.isEmpty:
            // An oversized field: one range repeated until it is hundreds of bytes long.
            let start = position(bytes.count)
            let range = start..<min(bytes.count, start + 1 + position(8))
            let piece = Array(bytes[range])
            let repeats = 16 + position(256)
            bytes.insert(contentsOf: (0..<repeats).flatMap { _ in piece }, at: range.upperBound)
        case 12 where bytes.count >= 2:
            // A 16- or 32-bit big-endian field set to an edge value (DNS counts and lengths).
            let edges: [UInt32] = [0, 1, 0x7F, 0x80, 0xFF, 0x3FFF, 0x7FFF, 0x8000, 0xC000, 0xFFFF, 0xFFFF_FFFF]
            let value = edges[position(edges.count)]
            let width = bytes.count >= 4 && generator.next() % 2 == 0 ? 4 : 2
            let start = position(bytes.count - width + 1)
            for offset in 0..<width {
                bytes[start + offset] = UInt8(truncatingIfNeeded: value >> UInt32(8 * (width - 1 - offset)))
            }
        default:
            let start = position(bytes.count + 1)
            let end = min(bytes.count, start + position(8))
            bytes.removeSubrange(start..<end)
        }
    }
}
