import Logging
import Synchronization
@testable import Outbox

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A fresh directory under /tmp for one test's database files, removed with everything in it afterwards.
func withTemporaryDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
    var template = Array("/tmp/southbridge-outbox-XXXXXX".utf8CString)
    let created = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    guard created != nil else {
        throw TestSetupError(description: "mkdtemp failed with errno \(errno)")
    }
    let directory = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    defer { removeDirectory(directory) }
    return try await body(directory)
}

struct TestSetupError: Error, CustomStringConvertible {
    let description: String
}

private func removeDirectory(_ path: String) {
    if let stream = opendir(path) {
        while let entry = readdir(stream) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." && unlink("\(path)/\(name)") != 0 && errno == EISDIR {
                removeDirectory("\(path)/\(name)")
            }
        }
        closedir(stream)
    }
    rmdir(path)
}

let silentLogger = Logger(label: "southbridge.outbox.tests") { _ in SwiftLogNoOpLogHandler() }

/// A clock the test moves by hand.
final class TestClock: Sendable {
    private let milliseconds: Atomic<Int64>

    init(_ start: Int64) {
        milliseconds = Atomic(start)
    }

    func now() -> Int64 {
        milliseconds.load(ordering: .relaxed)
    }

    func set(_ value: Int64) {
        milliseconds.store(value, ordering: .relaxed)
    }
}

extension OutboxLimits {
    /// Limits under which a destination set no PDU refers to goes at the next prune, for tests of what pruning
    /// deletes; the default keeps it for an hour after its last use.
    static func setsGoWhenUnused(pruneStepRows: Int = 1_000) -> OutboxLimits {
        var limits = OutboxLimits(pruneStepRows: pruneStepRows)
        limits.unusedDestinationSetGraceMS = 0
        return limits
    }
}

func openOutbox(in directory: String, limits: OutboxLimits = OutboxLimits(), clock: TestClock = TestClock(1_000))
    throws -> Outbox
{
    try Outbox(path: "\(directory)/outbox.db", logger: silentLogger, limits: limits, now: { clock.now() })
}

/// A small canonical-JSON event, unique per (room, serial).
func pdu(room: String, serial: Int, destinations: [String]) -> IncomingPDU {
    let eventID = "$\(serial):\(room.dropFirst())"
    let json = #"{"content":{"body":"message \#(serial)"},"event_id":"\#(eventID)","room_id":"\#(room)"}"#
    return IncomingPDU(roomID: room, eventID: eventID, canonicalJSON: Array(json.utf8), destinations: destinations)
}

/// A small canonical-JSON to-device EDU (or one of `type`), unique per serial.
func edu(type: String = "m.direct_to_device", serial: Int, destinations: [String]) -> IncomingEDU {
    let content = #"{"message_id":"m\#(serial)","messages":{},"sender":"@alice:hs.example","type":"m.dummy"}"#
    let json = #"{"content":\#(content),"edu_type":"\#(type)"}"#
    return IncomingEDU(eduType: type, canonicalJSON: Array(json.utf8), destinations: destinations)
}

/// The size of the file at `path` in bytes.
func fileSize(_ path: String) throws -> Int64 {
    var info = stat()
    guard stat(path, &info) == 0 else {
        throw TestSetupError(description: "stat \(path) failed with errno \(errno)")
    }
    return Int64(info.st_size)
}
