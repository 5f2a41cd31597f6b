import Ingest
import Logging
import Outbox
import SouthbridgeSwarm
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A tmpfs of `bytes` mounted on a fresh directory for one test, unmounted and removed afterwards.
/// Mounting needs root, which CI has; elsewhere the tests using it are skipped.
private struct SmallFilesystem {
    static var canMount: Bool { geteuid() == 0 }

    let directory: TemporaryDirectory

    init(bytes: Int) throws {
        directory = try TemporaryDirectory(prefix: "southbridge-small-fs")
        guard mount("tmpfs", directory.path, "tmpfs", 0, "size=\(bytes)") == 0 else {
            let error = errno
            directory.remove()
            throw SmallFilesystemError(description: "mount tmpfs on \(directory.path) failed with errno \(error)")
        }
    }

    var path: String { directory.path }

    /// Writes a file of zeros until the filesystem is full.
    func fill(_ name: String) throws {
        let descriptor = open("\(path)/\(name)", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard descriptor >= 0 else { throw SmallFilesystemError(description: "open \(name) failed with errno \(errno)") }
        defer { close(descriptor) }
        let block = [UInt8](repeating: 0, count: 4_096)
        while block.withUnsafeBytes({ write(descriptor, $0.baseAddress, $0.count) }) > 0 {}
        guard errno == ENOSPC else { throw SmallFilesystemError(description: "filling \(name) stopped with errno \(errno)") }
    }

    func removeFile(_ name: String) {
        unlink("\(path)/\(name)")
    }

    func unmount() {
        umount2(path, Int32(MNT_DETACH))
        directory.remove()
    }
}

private struct SmallFilesystemError: Error, CustomStringConvertible {
    let description: String
}

@Suite("ingest on a full disk")
struct IngestDiskFullTests {
    private func send(_ api: IngestAPI, txn: String, body: String) async -> IngestResponse {
        await api.handle(IngestRequest(method: "PUT", path: "/_southbridge/v1/send/\(txn)",
                                       authorization: "Bearer secret", body: Array(body.utf8)))
    }

    /// A body of `count` PDUs for a.example, each carrying `padding` bytes, so that storing it must grow the files.
    private func body(pdus count: Int, padding: Int, room: String) -> String {
        let filler = String(repeating: "x", count: padding)
        let pdus = (0..<count).map { _ in
            #"{"pdu":{"room_id":"\#(room)","content":{"body":"\#(filler)"}},"destinations":["a.example"]}"#
        }
        return #"{"pdus":["# + pdus.joined(separator: ",") + "]}"
    }

    @Test func anOutboxAtStorageMaxBytesRefusesWith507NamingTheSetting() async throws {
        let directory = try TemporaryDirectory(prefix: "southbridge-max-bytes")
        defer { directory.remove() }
        let outbox = try Outbox(path: directory.path + "/outbox.sqlite3", logger: Logger(label: "test"),
                                limits: OutboxLimits(maxBytes: 64 << 10))
        defer { outbox.close() }
        let api = IngestAPI(outbox: outbox, bearerToken: "secret", ownServerName: "self.example",
                            logger: Logger(label: "test"), metricsText: { "" })
        var accepted = 0
        var refused: IngestResponse?
        while refused == nil, accepted < 100 {
            let response = await send(api, txn: "t\(accepted)", body: body(pdus: 4, padding: 4_000, room: "!r:x"))
            if response.status == 200 { accepted += 1 } else { refused = response }
        }
        let answer = try #require(refused, "64 KiB never reached")
        #expect(answer.status == 507)
        let text = String(decoding: answer.body, as: UTF8.self)
        #expect(text.contains("M_RESOURCE_LIMIT_EXCEEDED") && text.contains("storage.max_bytes"), "\(text)")
        #expect(try await outbox.pendingPDUs(for: "a.example", after: 0, limit: .max).count == 4 * accepted)
    }

    @Test(.enabled(if: SmallFilesystem.canMount, "mounting a tmpfs needs root"))
    func aFullDiskRefusesWith507KeepsWhatWasAcceptedAndRecoversWhenSpaceReturns() async throws {
        let filesystem = try SmallFilesystem(bytes: 2 << 20)
        defer { filesystem.unmount() }
        let outbox = try Outbox(path: filesystem.path + "/outbox.sqlite3", logger: Logger(label: "test"))
        defer { outbox.close() }
        let api = IngestAPI(outbox: outbox, bearerToken: "secret", ownServerName: "self.example",
                            logger: Logger(label: "test"), metricsText: { "" })

        let first = await send(api, txn: "before", body: body(pdus: 2, padding: 100, room: "!before:x"))
        #expect(first.status == 200)
        try filesystem.fill("filler")

        let large = body(pdus: 8, padding: 60_000, room: "!during:x")
        for attempt in 0..<3 {
            let refused = await send(api, txn: "during", body: large)
            #expect(refused.status == 507, "attempt \(attempt)")
            let text = String(decoding: refused.body, as: UTF8.self)
            #expect(text.contains("M_RESOURCE_LIMIT_EXCEEDED") && text.contains("disk full"), "\(text)")
        }
        // What was acknowledged is intact and still served; a repeat of it gets its first answer.
        #expect(try await outbox.pendingPDUs(for: "a.example", after: 0, limit: 50).map(\.roomID) == ["!before:x", "!before:x"])
        #expect(await send(api, txn: "before", body: body(pdus: 2, padding: 100, room: "!before:x")).body == first.body)

        filesystem.removeFile("filler")
        let after = await send(api, txn: "during", body: large)
        #expect(after.status == 200, "\(String(decoding: after.body, as: UTF8.self))")
        let stored = try await outbox.pendingPDUs(for: "a.example", after: 0, limit: 50)
        #expect(stored.map(\.roomID) == ["!before:x", "!before:x"] + Array(repeating: "!during:x", count: 8))
    }
}
