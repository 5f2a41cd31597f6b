import Testing
@testable import Outbox

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

@Suite struct SegmentLogTests {
    private static let segmentBytes = 8 * 1_024

    private func payload(_ serial: Int, bytes: Int = 300) -> [UInt8] {
        (0..<bytes).map { UInt8(truncatingIfNeeded: serial &* 31 &+ $0) }
    }

    @Test("records come back in order after a reopen, and the tail follows the last one")
    func appendAndReopen() async throws {
        try await withTemporaryDirectory { directory in
            var positions: [UInt64] = []
            do {
                let log = try SegmentLog(directory: directory, segmentBytes: Self.segmentBytes, scanFrom: 0)
                for serial in 0..<5 { positions.append(try log.append(payload(serial))) }
                // Each record starts on a sector: 24 bytes of header and 300 of payload take one.
                #expect(positions == [0, 512, 1_024, 1_536, 2_048])
                #expect(try log.read(at: positions[3] + UInt64(SegmentLog.headerBytes), length: 300) == payload(3))
            }
            let reopened = try SegmentLog(directory: directory, segmentBytes: Self.segmentBytes, scanFrom: 0)
            #expect(reopened.tail == 2_560)
            #expect(try reopened.records(from: 0) == (0..<5).map { SegmentLog.Record(position: positions[$0], payload: payload($0)) })
            #expect(try reopened.records(from: positions[2]).map(\.payload) == (2..<5).map { payload($0) })
        }
    }

    @Test("a torn last record ends the log before it, and the next append takes its place")
    func tornTail() async throws {
        try await withTemporaryDirectory { directory in
            do {
                let log = try SegmentLog(directory: directory, segmentBytes: Self.segmentBytes, scanFrom: 0)
                for serial in 0..<3 { try log.append(payload(serial)) }
            }
            // Half of the third record's payload never reached the disk.
            let file = open(directory + "/0000000000000000.seg", O_WRONLY)
            #expect(file >= 0)
            let garbage = [UInt8](repeating: 0, count: 150)
            #expect(garbage.withUnsafeBytes { pwrite(file, $0.baseAddress, $0.count, 1_024 + 200) } == 150)
            close(file)
            let log = try SegmentLog(directory: directory, segmentBytes: Self.segmentBytes, scanFrom: 0)
            #expect(log.tail == 1_024)
            #expect(try log.records(from: 0).map(\.payload) == [payload(0), payload(1)])
            #expect(try log.append(payload(9)) == 1_024)
            #expect(try log.records(from: 0).map(\.payload) == [payload(0), payload(1), payload(9)])
        }
    }

    @Test("a record that does not fit the rest of its segment starts the next one, and a scan follows it there")
    func recordsCrossIntoTheNextSegment() async throws {
        try await withTemporaryDirectory { directory in
            let log = try SegmentLog(directory: directory, segmentBytes: Self.segmentBytes, scanFrom: 0)
            // 3,000 bytes take 3,072 with the header and padding: two fit in 8 KiB, the third does not.
            let positions = try (0..<4).map { try log.append(payload($0, bytes: 3_000)) }
            #expect(positions == [0, 3_072, 8_192, 11_264])
            let reopened = try SegmentLog(directory: directory, segmentBytes: Self.segmentBytes, scanFrom: 0)
            #expect(reopened.tail == 14_336)
            #expect(try reopened.records(from: 0).map(\.position) == positions)
        }
    }

    @Test("released segments are reused for new ones, and what they held before is never read as new")
    func releasedSegmentsAreRecycled() async throws {
        try await withTemporaryDirectory { directory in
            let log = try SegmentLog(directory: directory, segmentBytes: Self.segmentBytes, maxSpareSegments: 1, scanFrom: 0)
            for serial in 0..<10 { try log.append(payload(serial, bytes: 3_000)) }
            // Ten records of 3 KiB, two per segment: segments 0 to 4.
            #expect(log.bytesOnDisk == Int64(5 * Self.segmentBytes))
            try log.release(below: 4 * UInt64(Self.segmentBytes))
            // One spare kept, three deleted, the written segment kept.
            #expect(log.bytesOnDisk == Int64(2 * Self.segmentBytes))
            let next = try log.append(payload(10, bytes: 3_000))
            #expect(next == 5 * UInt64(Self.segmentBytes))
            #expect(log.bytesOnDisk == Int64(2 * Self.segmentBytes))
            // The spare still holds a record from its first life, at the same offset as the next one will be.
            let reopened = try SegmentLog(directory: directory, segmentBytes: Self.segmentBytes, scanFrom: 4 * UInt64(Self.segmentBytes))
            #expect(try reopened.records(from: 4 * UInt64(Self.segmentBytes)).map(\.payload)
                    == [payload(8, bytes: 3_000), payload(9, bytes: 3_000), payload(10, bytes: 3_000)])
            #expect(reopened.tail == next + 3_072)
        }
    }
}
