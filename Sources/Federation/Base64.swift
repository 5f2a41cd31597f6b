/// RFC 4648 base64 as Matrix uses it: unpadded output in the standard alphabet (keys, signatures,
/// hashes) or the URL-safe alphabet (event IDs from room version 4 on).
///
/// Decoders accept input with or without `=` padding, as the spec asks, and ignore the unused low bits of
/// the last character (the spec's own test seed has them set). Any other character makes decoding fail.
public enum Base64 {
    /// Standard alphabet (`+`, `/`), no padding.
    public static func encodeUnpadded(_ bytes: some Collection<UInt8>) -> String {
        encode(bytes, alphabet: standardAlphabet)
    }

    /// URL-safe alphabet (`-`, `_`), no padding.
    public static func encodeURLSafeUnpadded(_ bytes: some Collection<UInt8>) -> String {
        encode(bytes, alphabet: urlSafeAlphabet)
    }

    /// Decodes standard-alphabet base64, padded or unpadded; nil when `string` is not base64.
    public static func decode(_ string: String) -> [UInt8]? {
        decode(string, table: standardTable)
    }

    /// Decodes URL-safe-alphabet base64, padded or unpadded; nil when `string` is not base64.
    public static func decodeURLSafe(_ string: String) -> [UInt8]? {
        decode(string, table: urlSafeTable)
    }

    private static let standardAlphabet: [UInt8] =
        Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    private static let urlSafeAlphabet: [UInt8] =
        Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
    private static let invalid: UInt8 = 0xFF
    private static let standardTable = decodingTable(for: standardAlphabet)
    private static let urlSafeTable = decodingTable(for: urlSafeAlphabet)

    private static func decodingTable(for alphabet: [UInt8]) -> [UInt8] {
        var table = [UInt8](repeating: invalid, count: 256)
        for (value, character) in alphabet.enumerated() {
            table[Int(character)] = UInt8(value)
        }
        return table
    }

    private static func encode(_ bytes: some Collection<UInt8>, alphabet: [UInt8]) -> String {
        bytes.withContiguousBytes { input in
            let outputCount = (input.count * 4 + 2) / 3
            return alphabet.withUnsafeBufferPointer { alphabet in
                String(unsafeUninitializedCapacity: outputCount) { output in
                    var inputIndex = 0
                    var outputIndex = 0
                    while inputIndex + 3 <= input.count {
                        let group = UInt32(input[inputIndex]) << 16 | UInt32(input[inputIndex + 1]) << 8
                            | UInt32(input[inputIndex + 2])
                        output[outputIndex] = alphabet[Int(group >> 18 & 0x3F)]
                        output[outputIndex + 1] = alphabet[Int(group >> 12 & 0x3F)]
                        output[outputIndex + 2] = alphabet[Int(group >> 6 & 0x3F)]
                        output[outputIndex + 3] = alphabet[Int(group & 0x3F)]
                        inputIndex += 3
                        outputIndex += 4
                    }
                    switch input.count - inputIndex {
                    case 1:
                        let group = UInt32(input[inputIndex]) << 16
                        output[outputIndex] = alphabet[Int(group >> 18 & 0x3F)]
                        output[outputIndex + 1] = alphabet[Int(group >> 12 & 0x3F)]
                        outputIndex += 2
                    case 2:
                        let group = UInt32(input[inputIndex]) << 16 | UInt32(input[inputIndex + 1]) << 8
                        output[outputIndex] = alphabet[Int(group >> 18 & 0x3F)]
                        output[outputIndex + 1] = alphabet[Int(group >> 12 & 0x3F)]
                        output[outputIndex + 2] = alphabet[Int(group >> 6 & 0x3F)]
                        outputIndex += 3
                    default:
                        break
                    }
                    return outputIndex
                }
            }
        }
    }

    private static func decode(_ string: String, table: [UInt8]) -> [UInt8]? {
        var string = string
        return string.withUTF8 { input -> [UInt8]? in
            var count = input.count
            var padding = 0
            while padding < 2 && count > 0 && input[count - 1] == UInt8(ascii: "=") {
                count -= 1
                padding += 1
            }
            if padding > 0 && input.count % 4 != 0 { return nil }
            if count % 4 == 1 { return nil }
            var output: [UInt8] = []
            output.reserveCapacity(count * 3 / 4)
            var accumulator: UInt32 = 0
            var bits = 0
            for position in 0..<count {
                let value = table[Int(input[position])]
                if value == invalid { return nil }
                accumulator = accumulator << 6 | UInt32(value)
                bits += 6
                if bits >= 8 {
                    bits -= 8
                    output.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
                }
            }
            return output
        }
    }
}
