/// What one group commit writes to the log: the PDUs of the batches it accepted, with everything their rows hold,
/// so that an open finding the record after `indexed_log_position` can index them again.
///
/// Layout (little-endian): a version byte, a flags byte, the batch count (UInt32); per batch its txn id (UInt16
/// length, bytes), received time (Int64) and PDU count (UInt32); per PDU its stream ordering and destination set
/// (Int64 each), room id (UInt16 length, bytes), event id (UInt16 length, bytes, or 0xFFFF for none) and canonical
/// JSON (UInt32 length, bytes).
///
/// A batch with an empty txn id holds bodies moved from the log's start (`relocateSparseLogStart`), not an ingest
/// request; its record is always flagged `needsIndexCommit`, so no open indexes it.
struct IngestLogRecord: Equatable {
    struct PDU: Equatable {
        var streamOrdering: Int64
        var destinationSet: Int64
        var roomID: String
        var eventID: String?
        var canonicalJSON: [UInt8]
    }

    struct Batch: Equatable {
        var txnID: String
        var receivedTS: Int64
        var pdus: [PDU]
    }

    static let version: UInt8 = 1
    /// What a PDU takes in a record besides its room id, event id and canonical JSON: stream ordering and set
    /// (8 bytes each), the two ids' lengths (2 each) and the JSON's length (4).
    static let pduFieldBytes = 24

    /// The round also stored what the record does not carry (persistent EDUs, new destination sets or
    /// destinations), so it was acknowledged only after an SQLite commit. An open that finds such a record after
    /// the indexed position knows that commit never happened and the round was never acknowledged.
    var needsIndexCommit: Bool
    var batches: [Batch]

    var isEmpty: Bool { batches.allSatisfy { $0.pdus.isEmpty } }

    /// The payload, and where each PDU's canonical JSON starts in it, in order.
    func encoded() -> (bytes: [UInt8], bodyOffsets: [Int]) {
        var bytes: [UInt8] = [Self.version, needsIndexCommit ? 1 : 0]
        var offsets: [Int] = []
        Self.append(UInt32(batches.count), to: &bytes)
        for batch in batches {
            Self.append(text: batch.txnID, to: &bytes)
            Self.append(UInt64(bitPattern: batch.receivedTS), to: &bytes)
            Self.append(UInt32(batch.pdus.count), to: &bytes)
            for pdu in batch.pdus {
                Self.append(UInt64(bitPattern: pdu.streamOrdering), to: &bytes)
                Self.append(UInt64(bitPattern: pdu.destinationSet), to: &bytes)
                Self.append(text: pdu.roomID, to: &bytes)
                if let eventID = pdu.eventID {
                    Self.append(text: eventID, to: &bytes)
                } else {
                    Self.append(UInt16.max, to: &bytes)
                }
                Self.append(UInt32(pdu.canonicalJSON.count), to: &bytes)
                offsets.append(bytes.count)
                bytes += pdu.canonicalJSON
            }
        }
        return (bytes, offsets)
    }

    /// The record in `bytes` and where each PDU's canonical JSON starts in them, in order; nil when they are not
    /// a record this version wrote.
    static func decoded(from bytes: [UInt8]) -> (record: IngestLogRecord, bodyOffsets: [Int])? {
        var reader = Reader(bytes: bytes)
        guard let version = reader.byte(), version == Self.version, let flags = reader.byte(),
              let batchCount = reader.integer(UInt32.self) else { return nil }
        var record = IngestLogRecord(needsIndexCommit: flags & 1 != 0)
        var offsets: [Int] = []
        for _ in 0..<batchCount {
            guard let txnID = reader.text(), let receivedTS = reader.integer(UInt64.self),
                  let pduCount = reader.integer(UInt32.self) else { return nil }
            var pdus: [PDU] = []
            for _ in 0..<pduCount {
                guard let streamOrdering = reader.integer(UInt64.self), let destinationSet = reader.integer(UInt64.self),
                      let roomID = reader.text(), let eventID = reader.optionalText(),
                      let length = reader.integer(UInt32.self) else { return nil }
                offsets.append(reader.offset)
                guard let json = reader.bytes(Int(length)) else { return nil }
                pdus.append(PDU(streamOrdering: Int64(bitPattern: streamOrdering), destinationSet: Int64(bitPattern: destinationSet),
                                roomID: roomID, eventID: eventID, canonicalJSON: json))
            }
            record.batches.append(Batch(txnID: txnID, receivedTS: Int64(bitPattern: receivedTS), pdus: pdus))
        }
        guard reader.isAtEnd else { return nil }
        return (record, offsets)
    }

    init(needsIndexCommit: Bool = false, batches: [Batch] = []) {
        self.needsIndexCommit = needsIndexCommit
        self.batches = batches
    }

    private static func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
    }

    private static func append(text: String, to bytes: inout [UInt8]) {
        append(UInt16(text.utf8.count), to: &bytes)
        bytes += text.utf8
    }

    private struct Reader {
        let bytes: [UInt8]
        var offset = 0

        var isAtEnd: Bool { offset == bytes.count }

        mutating func byte() -> UInt8? {
            guard offset < bytes.count else { return nil }
            defer { offset += 1 }
            return bytes[offset]
        }

        mutating func integer<T: FixedWidthInteger>(_: T.Type) -> T? {
            let size = MemoryLayout<T>.size
            guard offset + size <= bytes.count else { return nil }
            defer { offset += size }
            return (0..<size).reduce(T.zero) { $0 | T(bytes[offset + $1]) << (8 * $1) }
        }

        mutating func bytes(_ count: Int) -> [UInt8]? {
            guard count >= 0, offset + count <= bytes.count else { return nil }
            defer { offset += count }
            return Array(bytes[offset..<(offset + count)])
        }

        mutating func text() -> String? {
            guard let length = integer(UInt16.self), let utf8 = bytes(Int(length)) else { return nil }
            return String(decoding: utf8, as: UTF8.self)
        }

        /// Text, or `.some(nil)` for the none marker; nil when the bytes end.
        mutating func optionalText() -> String?? {
            guard let length = integer(UInt16.self) else { return nil }
            if length == UInt16.max { return .some(nil) }
            guard let utf8 = bytes(Int(length)) else { return nil }
            return .some(String(decoding: utf8, as: UTF8.self))
        }
    }
}
