/// A cursor over a received DNS message that checks every read against the message's end.
struct DNSWireReader {
    /// A name of 255 bytes has at most 127 labels, each of which a pointer may lead to, and
    /// one more pointer may lead to the root label.
    static let maximumPointers = 128

    let message: [UInt8]
    var offset: Int

    init(_ message: [UInt8], offset: Int = 0) {
        self.message = message
        self.offset = offset
    }

    mutating func readUInt8() throws(DNSWireError) -> UInt8 {
        try require(1, for: "a byte")
        defer { offset += 1 }
        return message[offset]
    }

    mutating func readUInt16() throws(DNSWireError) -> UInt16 {
        try require(2, for: "a 16-bit field")
        defer { offset += 2 }
        return UInt16(message[offset]) << 8 | UInt16(message[offset + 1])
    }

    mutating func readUInt32() throws(DNSWireError) -> UInt32 {
        try require(4, for: "a 32-bit field")
        defer { offset += 4 }
        return message[offset..<offset + 4].reduce(0) { $0 << 8 | UInt32($1) }
    }

    mutating func readBytes(_ count: Int) throws(DNSWireError) -> [UInt8] {
        try require(count, for: "\(count) bytes")
        defer { offset += count }
        return Array(message[offset..<offset + count])
    }

    /// Reads a possibly compressed name (RFC 1035 §4.1.4) in presentation form, lower case,
    /// without the trailing dot; the root name is ".".
    ///
    /// A compression pointer must point strictly before the labels it continues, so a loop
    /// of pointers cannot exist; the whole name must fit in 255 bytes. A name follows at most
    /// `maximumPointers` pointers: without that bound, a 64 KiB message of chained pointers
    /// makes every record's name cost thousands of steps.
    mutating func readName() throws(DNSWireError) -> String {
        var text: [UInt8] = []
        var position = offset
        var segmentStart = offset
        var pointersFollowed = 0
        var wireLength = 1
        while true {
            guard position < message.count else {
                throw .malformed(offset: position, reason: "name runs past the end of the message")
            }
            let length = Int(message[position])
            switch length & 0xC0 {
            case 0xC0:
                guard position + 1 < message.count else {
                    throw .malformed(offset: position, reason: "compression pointer runs past the end of the message")
                }
                let target = (length & 0x3F) << 8 | Int(message[position + 1])
                guard target < segmentStart else {
                    throw .malformed(offset: position, reason: "compression pointer to byte \(target) does not point backwards")
                }
                if pointersFollowed == 0 {
                    offset = position + 2
                }
                pointersFollowed += 1
                guard pointersFollowed <= Self.maximumPointers else {
                    throw .malformed(offset: position, reason: "name follows more than \(Self.maximumPointers) compression pointers")
                }
                position = target
                segmentStart = target
            case 0x00:
                if length == 0 {
                    if pointersFollowed == 0 { offset = position + 1 }
                    return text.isEmpty ? "." : String(decoding: text, as: UTF8.self)
                }
                guard position + 1 + length <= message.count else {
                    throw .malformed(offset: position, reason: "label of \(length) bytes runs past the end of the message")
                }
                wireLength += 1 + length
                guard wireLength <= DNSName.maximumWireLength else {
                    throw .malformed(offset: position, reason: "name is longer than \(DNSName.maximumWireLength) bytes")
                }
                if !text.isEmpty { text.append(UInt8(ascii: ".")) }
                DNSName.appendPresentation(of: message[(position + 1)..<(position + 1 + length)], to: &text)
                position += 1 + length
            default:
                throw .malformed(offset: position, reason: "label type 0x\(String(length & 0xC0, radix: 16)) is not supported")
            }
        }
    }

    private func require(_ count: Int, for what: String) throws(DNSWireError) {
        guard count <= message.count - offset else {
            throw .malformed(offset: offset, reason: "message ends before \(what)")
        }
    }
}
