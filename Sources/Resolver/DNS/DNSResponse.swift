/// A decoded DNS response that has been checked to answer a given `DNSQuery`.
///
/// Decoding is strict and total: a message that breaks the format throws `DNSWireError`
/// instead of trapping, and a message whose ID or question differ from the query's is
/// rejected as a mismatch (the guard against off-path spoofing). The additional section is
/// not read. A truncated response (TC) carries no records: ask again over TCP.
public struct DNSResponse: Sendable, Hashable {
    public var id: UInt16
    public var responseCode: DNSResponseCode
    /// The TC bit: the answer did not fit in the datagram.
    public var isTruncated: Bool
    /// The answer section's records of the types in `DNSRecordData`.
    public var answers: [DNSResourceRecord]
    /// The authority section's records of the types in `DNSRecordData` (SOA for negative answers).
    public var authority: [DNSResourceRecord]

    public init(decoding message: [UInt8], for query: DNSQuery) throws(DNSWireError) {
        var reader = DNSWireReader(message)
        guard message.count >= 12 else {
            throw .malformed(offset: message.count, reason: "message of \(message.count) bytes is shorter than the 12-byte header")
        }
        id = try reader.readUInt16()
        guard id == query.id else { throw .idMismatch(expected: query.id, received: id) }
        let flags = try reader.readUInt16()
        guard flags & 0x8000 != 0 else { throw .notAResponse }
        let opcode = (flags >> 11) & 0xF
        guard opcode == 0 else { throw .malformed(offset: 2, reason: "opcode \(opcode) is not a standard query") }
        isTruncated = flags & 0x0200 != 0
        responseCode = DNSResponseCode(rawValue: flags & 0x000F)
        let questionCount = try reader.readUInt16()
        let answerCount = try reader.readUInt16()
        let authorityCount = try reader.readUInt16()
        _ = try reader.readUInt16()
        answers = []
        authority = []

        // Servers may drop the question from an error response; its ID still has to match.
        if questionCount == 0 && !responseCode.isAnswer { return }
        guard questionCount == 1 else {
            throw .malformed(offset: 4, reason: "a response must repeat the one question, it has \(questionCount)")
        }
        let questionName = try reader.readName()
        let questionType = DNSRecordType(rawValue: try reader.readUInt16())
        let questionClass = try reader.readUInt16()
        guard questionName == query.name, questionType == query.type, questionClass == 1 else {
            throw .questionMismatch(expected: "\(query.name) IN \(query.type)",
                                    received: "\(questionName) CLASS\(questionClass) \(questionType)")
        }
        guard !isTruncated else { return }
        answers = try Self.readRecords(answerCount, from: &reader)
        authority = try Self.readRecords(authorityCount, from: &reader)
    }

    private static func readRecords(_ count: UInt16, from reader: inout DNSWireReader) throws(DNSWireError) -> [DNSResourceRecord] {
        var records: [DNSResourceRecord] = []
        for _ in 0..<count {
            if let record = try readRecord(from: &reader) { records.append(record) }
        }
        return records
    }

    private static func readRecord(from reader: inout DNSWireReader) throws(DNSWireError) -> DNSResourceRecord? {
        let name = try reader.readName()
        let type = DNSRecordType(rawValue: try reader.readUInt16())
        let recordClass = try reader.readUInt16()
        let rawTTL = try reader.readUInt32()
        let length = Int(try reader.readUInt16())
        let start = reader.offset
        let end = start + length
        guard end <= reader.message.count else {
            throw .malformed(offset: start, reason: "\(type) record data of \(length) bytes runs past the end of the message")
        }
        guard recordClass == 1 else {
            reader.offset = end
            return nil
        }
        let data: DNSRecordData
        switch type {
        case .a:
            guard length == 4 else { throw .malformed(offset: start, reason: "A record data is \(length) bytes, not 4") }
            data = .a(try reader.readBytes(4))
        case .aaaa:
            guard length == 16 else { throw .malformed(offset: start, reason: "AAAA record data is \(length) bytes, not 16") }
            data = .aaaa(try reader.readBytes(16))
        case .cname:
            data = .cname(try reader.readName())
        case .srv:
            let priority = try reader.readUInt16()
            let weight = try reader.readUInt16()
            let port = try reader.readUInt16()
            data = .srv(SRVRecord(priority: priority, weight: weight, port: port, target: try reader.readName()))
        case .soa:
            data = .soa(DNSStartOfAuthority(
                primaryNameServer: try reader.readName(), responsibleMailbox: try reader.readName(),
                serial: try reader.readUInt32(), refresh: try reader.readUInt32(), retry: try reader.readUInt32(),
                expire: try reader.readUInt32(), minimum: try reader.readUInt32()))
        default:
            reader.offset = end
            return nil
        }
        guard reader.offset == end else {
            throw .malformed(offset: start, reason: "\(type) record data is \(length) bytes but its fields take \(reader.offset - start)")
        }
        return DNSResourceRecord(name: name, ttl: rawTTL & 0x8000_0000 == 0 ? rawTTL : 0, data: data)
    }
}
