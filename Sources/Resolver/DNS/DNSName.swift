/// Domain names as the DNS code handles them: lower case, no trailing dot, checked against
/// the limits of RFC 1035 (labels of 1-63 bytes, 255 bytes on the wire).
enum DNSName {
    static let maximumWireLength = 255
    static let maximumLabelLength = 63

    /// The canonical form of a host or service name given by a caller: ASCII lower case,
    /// without the trailing dot. Letters, digits, `-` and `_` (for `_matrix-fed._tcp`) only.
    static func normalized(_ text: String) throws(DNSError) -> String {
        var name = Array(text.utf8)
        if name.last == UInt8(ascii: ".") { name.removeLast() }
        guard !name.isEmpty else { throw .invalidName(name: text, reason: "the name is empty") }
        guard name.allSatisfy({ $0 < 0x80 }) else {
            throw .invalidName(name: text, reason: "IDN names must be given in their ASCII (xn--) form")
        }
        var labelLength = 0
        for index in name.indices {
            let byte = name[index]
            switch byte {
            case UInt8(ascii: "."):
                guard labelLength > 0 else { throw .invalidName(name: text, reason: "it has an empty label") }
                labelLength = 0
                continue
            case UInt8(ascii: "A")...UInt8(ascii: "Z"):
                name[index] = byte + 32
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"):
                break
            default:
                throw .invalidName(name: text, reason: "\"\(Character(Unicode.Scalar(byte)))\" is not allowed in a host name")
            }
            labelLength += 1
            guard labelLength <= maximumLabelLength else {
                throw .invalidName(name: text, reason: "a label is longer than \(maximumLabelLength) bytes")
            }
        }
        guard labelLength > 0 else { throw .invalidName(name: text, reason: "it has an empty label") }
        // Each label costs its length byte; the root label adds one more.
        guard name.count + 2 <= maximumWireLength else {
            throw .invalidName(name: text, reason: "it is longer than \(maximumWireLength) bytes on the wire")
        }
        return String(decoding: name, as: UTF8.self)
    }

    /// The wire form of a name produced by `normalized(_:)`.
    static func wireFormat(_ normalizedName: String) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(normalizedName.utf8.count + 2)
        for label in normalizedName.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false) {
            bytes.append(UInt8(label.count))
            bytes.append(contentsOf: label)
        }
        bytes.append(0)
        return bytes
    }

    /// Appends one label of a received name in presentation form: ASCII lower case, with
    /// `.`, `\` and unprintable bytes escaped (RFC 4343), so it can never be mistaken for a
    /// different name with more labels.
    static func appendPresentation(of label: ArraySlice<UInt8>, to text: inout [UInt8]) {
        for byte in label {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"):
                text.append(byte + 32)
            case UInt8(ascii: "."), UInt8(ascii: "\\"):
                text.append(UInt8(ascii: "\\"))
                text.append(byte)
            case 0x21...0x7E:
                text.append(byte)
            default:
                text.append(UInt8(ascii: "\\"))
                text.append(contentsOf: [byte / 100, byte / 10 % 10, byte % 10].map { $0 + UInt8(ascii: "0") })
            }
        }
    }
}
