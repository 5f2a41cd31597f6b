import Federation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An append-only log of records in fixed-size segment files, written so that a small record costs the card
/// little more than its own bytes: each append is one write of whole 512-byte sectors with `O_DIRECT | O_DSYNC`
/// into a segment whose blocks were written (zero-filled) when it was made, so the write needs no block
/// allocation, no journalled size change, and no page of the page cache rewritten whole. A buffered append with
/// `fsync` writes at least the filesystem's 4 KiB block each time (BENCHMARKS.md, "Storage").
///
/// Positions are global byte offsets: segment `n` holds `[n * segmentBytes, (n + 1) * segmentBytes)`. A record
/// starts on a sector boundary, never crosses the end of its segment, and carries its own position and a
/// checksum, so a scan stops at the first place that holds no record of this life of the file: zeros, a torn
/// write, or a record left from before its segment was recycled.
///
/// Not thread-safe: the Outbox's writer thread owns it.
final class SegmentLog {
    /// A record as stored: where it starts and what it carries.
    struct Record: Equatable {
        var position: UInt64
        var payload: [UInt8]
    }

    static let sectorBytes = 512
    /// "SBL1"
    static let magic: UInt32 = 0x314C_4253
    /// Magic, payload length, position, checksum.
    static let headerBytes = 24

    let directory: String
    let segmentBytes: Int
    /// Where the next record goes.
    private(set) var tail: UInt64
    /// Segment files kept for reuse once nothing in them is needed; made again only when there is none.
    private var spareSegments: [String] = []
    /// Segment files in use (not spares).
    private var segmentCount = 0
    /// Whether the next segment would be made by writing its zeros: the last spare went, or there was none.
    /// A release that keeps a spare clears it.
    private(set) var needsSpare = false
    /// Segments below this one were released already: a release below it has nothing to do.
    private var lowestKept: UInt64 = 0
    /// How many spare segments to keep; the others are deleted.
    let maxSpareSegments: Int
    private var writeDescriptor: Int32 = -1
    private var writeSegment: UInt64?
    private var readDescriptors: [UInt64: Int32] = [:]
    /// `O_DIRECT` is refused by some filesystems (tmpfs before Linux 6.6); the log then writes through the
    /// page cache, still with `O_DSYNC`.
    private(set) var usesDirectIO = true
    private var buffer: UnsafeMutableRawPointer
    private var bufferBytes: Int

    /// Opens the log in `directory` (created if missing) and finds its tail by scanning from `scanFrom`, the
    /// position after the last record the caller knows of; `records(from:)` gives what lies between.
    init(directory: String, segmentBytes: Int, maxSpareSegments: Int = 2, scanFrom: UInt64) throws(SegmentLogError) {
        precondition(segmentBytes >= 4 * Self.sectorBytes && segmentBytes % 4_096 == 0,
                     "a segment is a whole number of 4 KiB blocks")
        self.directory = directory
        self.segmentBytes = segmentBytes
        self.maxSpareSegments = maxSpareSegments
        self.tail = scanFrom
        bufferBytes = 64 * 1_024
        buffer = try Self.alignedBuffer(bytes: bufferBytes)
        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            throw .system(operation: "mkdir", path: directory, errno: errno)
        }
        var end = scanFrom
        try scan(from: scanFrom) { record in end = Self.recordEnd(record.position, payloadBytes: record.payload.count) }
        tail = end
        let (segments, spares) = try directoryEntries()
        segmentCount = segments.count
        spareSegments = spares.map { directory + "/" + $0 }
        needsSpare = spareSegments.isEmpty
    }

    deinit {
        if writeDescriptor >= 0 { close(writeDescriptor) }
        for descriptor in readDescriptors.values { close(descriptor) }
        buffer.deallocate()
    }

    /// The records from `position` on, in order, up to the tail.
    func records(from position: UInt64) throws(SegmentLogError) -> [Record] {
        var found: [Record] = []
        let end = tail
        try scan(from: position) { if $0.position < end { found.append($0) } }
        return found
    }

    /// Writes `payload` as one record at the tail and returns its position once it is on the device.
    @discardableResult
    func append(_ payload: [UInt8]) throws(SegmentLogError) -> UInt64 {
        let recordBytes = Self.paddedBytes(Self.headerBytes + payload.count)
        guard recordBytes <= segmentBytes else {
            throw .recordTooLarge(bytes: recordBytes, segmentBytes: segmentBytes)
        }
        var position = tail
        if Int(position % UInt64(segmentBytes)) + recordBytes > segmentBytes {
            position = (position / UInt64(segmentBytes) + 1) * UInt64(segmentBytes)
        }
        try prepareWrite(segment: position / UInt64(segmentBytes))
        if recordBytes > bufferBytes {
            buffer.deallocate()
            bufferBytes = recordBytes
            buffer = try Self.alignedBuffer(bytes: bufferBytes)
        }
        Self.encode(payload, at: position, into: buffer, recordBytes: recordBytes)
        do throws(SegmentLogError) {
            try writeFully(bytes: recordBytes, at: off_t(position % UInt64(segmentBytes)))
        } catch {
            // Some of it may be on the device: clear its first sector so that no scan takes it for a record.
            tail = max(tail, position + UInt64(Self.sectorBytes))
            try? rewind(to: position)
            throw error
        }
        tail = position + UInt64(recordBytes)
        return position
    }

    /// Moves the tail back to `position`, the start of a record that must not count, and clears that record's
    /// first sector, so that no scan finds it again even if the next record goes to the next segment.
    func rewind(to position: UInt64) throws(SegmentLogError) {
        guard position < tail else { return }
        try prepareWrite(segment: position / UInt64(segmentBytes))
        buffer.initializeMemory(as: UInt8.self, repeating: 0, count: Self.sectorBytes)
        try writeFully(bytes: Self.sectorBytes, at: off_t(position % UInt64(segmentBytes)))
        tail = position
    }

    /// Reads `length` bytes at `position`, which a record written by `append` holds.
    func read(at position: UInt64, length: Int) throws(SegmentLogError) -> [UInt8] {
        let segment = position / UInt64(segmentBytes)
        let descriptor = try readDescriptor(segment)
        var bytes = [UInt8](repeating: 0, count: length)
        let offset = off_t(position % UInt64(segmentBytes))
        let read = bytes.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, length, offset) }
        guard read == length else {
            throw .shortRead(path: segmentPath(segment), position: position, length: length)
        }
        return bytes
    }

    /// Gives up every segment wholly below `position` (at most the tail): the caller needs nothing in them any
    /// more. They are kept as spares (up to `maxSpareSegments`) or deleted.
    func release(below position: UInt64) throws(SegmentLogError) {
        let firstKept = position / UInt64(segmentBytes)
        guard firstKept > lowestKept else { return }
        var released = false
        for segment in try segmentNumbers() where segment < firstKept {
            released = true
            if segment == writeSegment {
                // The tail is at this segment's end: the next record starts the next one.
                close(writeDescriptor)
                writeDescriptor = -1
                writeSegment = nil
            }
            if let descriptor = readDescriptors.removeValue(forKey: segment) { close(descriptor) }
            let path = segmentPath(segment)
            segmentCount -= 1
            if spareSegments.count < maxSpareSegments {
                let spare = directory + "/spare-\(segment).seg"
                guard rename(path, spare) == 0 else { throw .system(operation: "rename", path: path, errno: errno) }
                spareSegments.append(spare)
                needsSpare = false
            } else if unlink(path) != 0 {
                throw .system(operation: "unlink", path: path, errno: errno)
            }
        }
        if released { try syncDirectory() }
        lowestKept = firstKept
    }

    /// No spare is left, so the next segment would be made by writing its zeros, and there is a segment before
    /// the one being written that giving back would spare that.
    var wantsSpare: Bool {
        needsSpare && segmentCount >= 2
    }

    /// Bytes of segment files on disk, spares included.
    var bytesOnDisk: Int64 {
        Int64(segmentCount + spareSegments.count) * Int64(segmentBytes)
    }

    // MARK: - Writing

    private func prepareWrite(segment: UInt64) throws(SegmentLogError) {
        if writeSegment == segment { return }
        if writeDescriptor >= 0 {
            close(writeDescriptor)
            writeDescriptor = -1
            writeSegment = nil
        }
        let path = segmentPath(segment)
        if access(path, F_OK) != 0 {
            try makeSegment(at: path)
        }
        var descriptor = open(path, O_WRONLY | O_CLOEXEC | O_DSYNC | (usesDirectIO ? Self.directIOFlag : 0))
        if descriptor < 0 && errno == EINVAL && usesDirectIO {
            usesDirectIO = false
            descriptor = open(path, O_WRONLY | O_CLOEXEC | O_DSYNC)
        }
        guard descriptor >= 0 else { throw .system(operation: "open", path: path, errno: errno) }
        writeDescriptor = descriptor
        writeSegment = segment
    }

    /// A new segment: a spare renamed, or a file of zeros written and synced, so that later writes into it
    /// allocate nothing. Its old records stay until overwritten; their positions are not this segment's.
    private func makeSegment(at path: String) throws(SegmentLogError) {
        if let spare = spareSegments.last {
            guard rename(spare, path) == 0 else { throw .system(operation: "rename", path: spare, errno: errno) }
            spareSegments.removeLast()
            needsSpare = spareSegments.isEmpty
            segmentCount += 1
            try syncDirectory()
            return
        }
        needsSpare = true
        let temporary = path + ".new"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw .system(operation: "open", path: temporary, errno: errno) }
        defer { close(descriptor) }
        let zeros = [UInt8](repeating: 0, count: 64 * 1_024)
        var written = 0
        while written < segmentBytes {
            let count = zeros.withUnsafeBytes { write(descriptor, $0.baseAddress, min($0.count, segmentBytes - written)) }
            if count < 0 {
                if errno == EINTR { continue }
                let code = errno
                unlink(temporary)
                throw .system(operation: "write", path: temporary, errno: code)
            }
            written += count
        }
        guard fsync(descriptor) == 0 else {
            let code = errno
            unlink(temporary)
            throw .system(operation: "fsync", path: temporary, errno: code)
        }
        guard rename(temporary, path) == 0 else { throw .system(operation: "rename", path: temporary, errno: errno) }
        segmentCount += 1
        try syncDirectory()
    }

    private func writeFully(bytes: Int, at offset: off_t) throws(SegmentLogError) {
        var done = 0
        while done < bytes {
            let count = pwrite(writeDescriptor, buffer + done, bytes - done, offset + off_t(done))
            if count < 0 {
                if errno == EINTR { continue }
                if errno == EINVAL && usesDirectIO && done == 0 {
                    // The filesystem takes O_DIRECT at open but not these writes: go through the page cache.
                    usesDirectIO = false
                    let segment = writeSegment!
                    close(writeDescriptor)
                    writeDescriptor = -1
                    writeSegment = nil
                    try prepareWrite(segment: segment)
                    continue
                }
                throw .system(operation: "pwrite", path: segmentPath(writeSegment ?? 0), errno: errno)
            }
            done += count
        }
    }

    private func syncDirectory() throws(SegmentLogError) {
        let descriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw .system(operation: "open", path: directory, errno: errno) }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw .system(operation: "fsync", path: directory, errno: errno) }
    }

    // MARK: - Reading

    private func readDescriptor(_ segment: UInt64) throws(SegmentLogError) -> Int32 {
        if let descriptor = readDescriptors[segment] { return descriptor }
        let path = segmentPath(segment)
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw .system(operation: "open", path: path, errno: errno) }
        readDescriptors[segment] = descriptor
        return descriptor
    }

    /// Calls `body` with each record from `position` on, stopping where no record of this position is. A record
    /// that would not have fitted in its segment's rest was written at the next segment's start.
    private func scan(from position: UInt64, _ body: (Record) -> Void) throws(SegmentLogError) {
        var position = position
        var movedToNextSegment = false
        while true {
            if let record = try record(at: position) {
                body(record)
                position = Self.recordEnd(position, payloadBytes: record.payload.count)
                movedToNextSegment = false
                continue
            }
            let nextSegmentStart = (position / UInt64(segmentBytes) + 1) * UInt64(segmentBytes)
            guard !movedToNextSegment, position % UInt64(segmentBytes) != 0 else { return }
            position = nextSegmentStart
            movedToNextSegment = true
        }
    }

    /// The record at `position`, or nil when none of this life of the file starts there.
    private func record(at position: UInt64) throws(SegmentLogError) -> Record? {
        let segment = position / UInt64(segmentBytes)
        let offset = Int(position % UInt64(segmentBytes))
        guard access(segmentPath(segment), F_OK) == 0, offset + Self.headerBytes <= segmentBytes else { return nil }
        let header = try read(at: position, length: Self.headerBytes)
        guard Self.uint32(header, at: 0) == Self.magic, Self.uint64(header, at: 8) == position else { return nil }
        let payloadBytes = Int(Self.uint32(header, at: 4))
        guard offset + Self.headerBytes + payloadBytes <= segmentBytes else { return nil }
        let payload = try read(at: position + UInt64(Self.headerBytes), length: payloadBytes)
        guard Self.checksum(header: header, payload: payload) == Self.uint64(header, at: 16) else { return nil }
        return Record(position: position, payload: payload)
    }

    // MARK: - Format

    private func segmentPath(_ segment: UInt64) -> String {
        Self.path(ofSegment: segment, in: directory)
    }

    /// Where segment `number` of the log in `directory` is: its number in 16 hex digits.
    static func path(ofSegment number: UInt64, in directory: String) -> String {
        let digits = String(number, radix: 16)
        return directory + "/" + String(repeating: "0", count: max(0, 16 - digits.count)) + digits + ".seg"
    }

    private func segmentNumbers() throws(SegmentLogError) -> [UInt64] {
        try directoryEntries().segments
    }

    /// The numbers of the segment files, in order, and the names of the spare ones.
    private func directoryEntries() throws(SegmentLogError) -> (segments: [UInt64], spares: [String]) {
        guard let names = Self.segmentFileNames(in: directory) else {
            throw .system(operation: "opendir", path: directory, errno: errno)
        }
        var numbers: [UInt64] = []
        var spares: [String] = []
        for name in names {
            if name.hasPrefix("spare-") {
                spares.append(name)
            } else if name.count == 20, let number = UInt64(name.prefix(16), radix: 16) {
                numbers.append(number)
            }
        }
        return (numbers.sorted(), spares.sorted())
    }

    /// The names of the segment files in `directory`, spares included; nil when it cannot be read.
    static func segmentFileNames(in directory: String) -> [String]? {
        guard let stream = opendir(directory) else { return nil }
        defer { closedir(stream) }
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name.hasSuffix(".seg") { names.append(name) }
        }
        return names
    }

    static func paddedBytes(_ bytes: Int) -> Int {
        (bytes + sectorBytes - 1) / sectorBytes * sectorBytes
    }

    static func recordEnd(_ position: UInt64, payloadBytes: Int) -> UInt64 {
        position + UInt64(paddedBytes(headerBytes + payloadBytes))
    }

    private static func encode(_ payload: [UInt8], at position: UInt64, into buffer: UnsafeMutableRawPointer, recordBytes: Int) {
        var header = [UInt8](repeating: 0, count: headerBytes)
        put(magic, into: &header, at: 0)
        put(UInt32(payload.count), into: &header, at: 4)
        put(position, into: &header, at: 8)
        put(checksum(header: header, payload: payload), into: &header, at: 16)
        buffer.initializeMemory(as: UInt8.self, repeating: 0, count: recordBytes)
        header.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: headerBytes) }
        payload.withUnsafeBytes { (buffer + headerBytes).copyMemory(from: $0.baseAddress!, byteCount: payload.count) }
    }

    /// The first 8 bytes of SHA-256 over the header's first 16 bytes and the payload.
    private static func checksum(header: [UInt8], payload: [UInt8]) -> UInt64 {
        let digest = SHA256.hash(header[0..<16] + payload)
        return uint64(digest, at: 0)
    }

    private static func put<T: FixedWidthInteger>(_ value: T, into bytes: inout [UInt8], at offset: Int) {
        withUnsafeBytes(of: value.littleEndian) { for (index, byte) in $0.enumerated() { bytes[offset + index] = byte } }
    }

    private static func uint32(_ bytes: [UInt8], at offset: Int) -> UInt32 {
        (0..<4).reduce(0) { $0 | UInt32(bytes[offset + $1]) << (8 * $1) }
    }

    private static func uint64(_ bytes: [UInt8], at offset: Int) -> UInt64 {
        (0..<8).reduce(0) { $0 | UInt64(bytes[offset + $1]) << (8 * $1) }
    }

    private static func alignedBuffer(bytes: Int) throws(SegmentLogError) -> UnsafeMutableRawPointer {
        var pointer: UnsafeMutableRawPointer?
        let code = posix_memalign(&pointer, 4_096, bytes)
        guard code == 0, let pointer else { throw .system(operation: "posix_memalign", path: "", errno: code) }
        return pointer
    }

    /// Linux's `O_DIRECT`, which Glibc's module does not export; its value depends on the architecture.
    static var directIOFlag: Int32 {
        #if arch(arm64) || arch(arm)
        return 0o200000
        #else
        return 0o40000
        #endif
    }
}

/// Why the log could not be read or written; each case names the file.
enum SegmentLogError: Error, Equatable, CustomStringConvertible {
    case system(operation: String, path: String, errno: Int32)
    case recordTooLarge(bytes: Int, segmentBytes: Int)
    case shortRead(path: String, position: UInt64, length: Int)

    var description: String {
        switch self {
        case let .system(operation, path, code):
            "\(operation) \(path): \(String(cString: strerror(code)))"
        case let .recordTooLarge(bytes, segmentBytes):
            "a record of \(bytes) bytes does not fit a segment of \(segmentBytes)"
        case let .shortRead(path, position, length):
            "\(path): fewer than \(length) bytes at position \(position)"
        }
    }

    var isDiskFull: Bool {
        if case let .system(_, _, code) = self { return code == ENOSPC || code == EDQUOT }
        return false
    }
}
