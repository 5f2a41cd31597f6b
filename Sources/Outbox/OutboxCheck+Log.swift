#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension OutboxCheck {
    /// Every row whose body is in the PDU log points at a body that starts a JSON object inside one segment file,
    /// and every other row holds its body.
    static func checkLog(_ database: SQLiteDatabase, directory: String, into report: inout Report) throws(SQLiteError) {
        report.problems += try database.statement("""
            SELECT stream_ordering FROM pdus WHERE log_position IS NULL AND length(canonical_json) = 0
            """).rows { "pdus: \($0.int64(at: 0)) has its body neither in its row nor in the log" }
        let rows = try database.statement("""
            SELECT stream_ordering, log_position, log_length FROM pdus WHERE log_position IS NOT NULL
            ORDER BY stream_ordering
            """).rows { (streamOrdering: $0.int64(at: 0), position: $0.int64(at: 1), length: $0.int64(at: 2)) }
        let segmentBytes = Int64(segmentFileBytes(in: directory) ?? 0)
        var descriptors: [Int64: Int32] = [:]
        defer { for descriptor in descriptors.values where descriptor >= 0 { close(descriptor) } }
        var bodies = 0
        for row in rows {
            guard segmentBytes > 0 else {
                report.problems.append("pdus: \(row.streamOrdering)'s body is in the log, and \(directory) holds no segment")
                continue
            }
            let number = row.position / segmentBytes
            let descriptor = descriptors[number] ?? open(SegmentLog.path(ofSegment: UInt64(number), in: directory), O_RDONLY | O_CLOEXEC)
            descriptors[number] = descriptor
            var firstByte: UInt8 = 0
            let offset = row.position % segmentBytes
            guard descriptor >= 0, row.length > 0, offset + row.length <= segmentBytes,
                  pread(descriptor, &firstByte, 1, off_t(offset)) == 1, firstByte == UInt8(ascii: "{") else {
                report.problems.append("pdus: \(row.streamOrdering)'s body at log position \(row.position) is not in the log")
                continue
            }
            bodies += 1
        }
        report.contents.append("pdu log: \(bodies) bodies, \(segmentBytes)-byte segments in \(directory)")
    }

    /// The size of the log's segment files (all are made the same size), or nil when there is none.
    private static func segmentFileBytes(in directory: String) -> Int? {
        for name in SegmentLog.segmentFileNames(in: directory) ?? [] {
            var info = stat()
            if stat(directory + "/" + name, &info) == 0 { return Int(info.st_size) }
        }
        return nil
    }
}
