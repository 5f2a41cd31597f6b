import Glibc
@testable import SouthbridgeDaemon
import SouthbridgeTestSupport
import Testing

@Suite("southbridge binary, malloc arenas")
struct MallocArenaTests {
    /// glibc's arenas besides the main one, from `/proc/PID/maps`: each is a 64 MiB reservation
    /// at a 64 MiB-aligned address, its used part readable and writable and the rest `---p`,
    /// so a run of adjacent anonymous mappings from such an address with a boundary exactly
    /// 64 MiB further on.
    static func secondaryArenas(pid: pid_t) throws -> Int {
        let heapMaxSize: UInt64 = 64 << 20
        let maps = try FileContents.bytes(at: "/proc/\(pid)/maps", limit: 16 << 20)
        var anonymous: [(start: UInt64, end: UInt64)] = []
        for line in String(decoding: maps, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            let bounds = fields.first?.split(separator: "-") ?? []
            // Named mappings (files, [heap], [stack]) have a sixth field.
            guard fields.count == 5, bounds.count == 2, let start = UInt64(bounds[0], radix: 16),
                  let end = UInt64(bounds[1], radix: 16) else { continue }
            anonymous.append((start, end))
        }
        var arenas = 0
        for (index, mapping) in anonymous.enumerated() where mapping.start % heapMaxSize == 0 {
            var end = mapping.end
            var next = index + 1
            while end < mapping.start + heapMaxSize, next < anonymous.count, anonymous[next].start == end {
                end = anonymous[next].end
                next += 1
            }
            if end == mapping.start + heapMaxSize { arenas += 1 }
        }
        return arenas
    }

    @Test("the daemon allocates from glibc's main arena only, unless MALLOC_ARENA_MAX says otherwise")
    func oneArena() async throws {
        for (environment, expectOne) in [([String: String](), true), (["MALLOC_ARENA_MAX": "8"], false)] {
            let fixture = try await DaemonProcess(destinations: 3)
            try await fixture.withTearDown {
                try await fixture.start(environment: environment, cpus: [0])
                let client = try await fixture.client()
                // Ingest, the sender, TLS and the outbox writer all allocate, on their own threads.
                let response = try await client.send(txnID: "arenas", body: DaemonProcess.ingestBody(
                    0..<20, destinations: fixture.swarm.serverNames))
                #expect(response.status == 200)
                await client.close()
                #expect(await DaemonProcess.eventually(timeout: .seconds(30)) {
                    fixture.swarm.servers.allSatisfy { $0.receivedPDUCount == 20 }
                })
                let pid = try #require(fixture.process?.pid)
                let arenas = try Self.secondaryArenas(pid: pid)
                if expectOne {
                    #expect(arenas == 0, "MALLOC_ARENA_MAX unset: \(arenas) arenas besides the main one")
                } else {
                    #expect(arenas > 0, "MALLOC_ARENA_MAX=8: the check finds the arenas glibc makes for threads")
                }
            }
        }
    }
}
