import FuzzSupport
import Glibc
import Replication
import SouthbridgeSwarm
import SouthbridgeTestSupport
import Testing

@Suite("replication endpoint, fuzzed with random and mutated lines")
struct ReplicationFuzzTests {
    static let corpus: [String] = [
        "NAME synapse.app.federation_sender", "PING 1733540000000", "AUTH secret", "REPLICATE federation 0",
        "REPLICATE destinations NOW", "REPLICATE ALL 3", "REMOTE_SERVER_UP example.org", "ERROR something broke",
        "RDATA federation 1 {\"kind\":\"pdu\"}", "POSITION federation 1", "SERVER example.org", "",
    ]
    static let tokens: [String] = [
        "NAME ", "PING ", "AUTH ", "REPLICATE ", "REMOTE_SERVER_UP ", "ERROR ", "federation", "destinations", "ALL",
        "NOW", " ", "\r", "\n", "9223372036854775807", "-1", "batch", "\u{00e9}", "\u{1F600}",
    ]

    @Test("3,000 fuzzed lines neither crash nor hang the daemon, nor disturb another follower")
    func fuzzedLines() async throws {
        let fixture = try await replicationFixture(destinations: 1)
        try await fixture.withTearDown {
            try await fixture.start()
            let observer = try await fixture.replicationClient()
            _ = try await observer.greeting()
            try await observer.send("REPLICATE federation NOW")
            #expect(try await observer.rows(through: "federation") == ["POSITION federation 0"])

            let mutator = Mutator(corpus: Self.corpus.map { Array($0.utf8) }, tokens: Self.tokens.map { Array($0.utf8) },
                                  seed: 0x5EED_15, maxLength: 2048)
            let cases = mutator.cases(3_000)
            let ingest = try await fixture.client()
            var fuzzer = try await fixture.replicationClient()
            var reconnects = 0
            for (chunkIndex, chunk) in stride(from: 0, to: cases.count, by: 200).map({ cases[$0..<min($0 + 200, cases.count)] }).enumerated() {
                let probe: [UInt8] = Array("\nREPLICATE destinations NOW\n".utf8)
                let bytes: [UInt8] = chunk.flatMap { $0.bytes + [0x0A] } + probe
                do {
                    try await fuzzer.send(bytes: bytes)
                    // The server still answers: it reaches the probe after every line of the chunk.
                    let answered = try await fuzzer.lines(through: { $0.hasPrefix("POSITION destinations") })
                    if answered.last == "<closed>" {
                        reconnects += 1
                        fuzzer = try await fixture.replicationClient()
                    } else {
                        #expect(answered.last?.hasPrefix("POSITION destinations") == true, "chunk \(chunkIndex): \(chunk.first!)")
                    }
                } catch {
                    Issue.record("chunk \(chunkIndex) from \(chunk.first!): \(error)")
                    reconnects += 1
                    fuzzer = try await fixture.replicationClient()
                }
                // The other follower keeps receiving every row while the fuzzer is refused.
                let body = DaemonProcess.ingestBody(chunkIndex..<chunkIndex + 1, destinations: fixture.swarm.serverNames)
                #expect(try await ingest.send(txnID: "fuzz-\(chunkIndex)", body: body).status == 200)
                // (It hears of the fuzzer's valid REMOTE_SERVER_UP lines too.)
                let heard = try await observer.lines(through: { $0.hasPrefix("RDATA") })
                #expect(heard.filter { !$0.hasPrefix("REMOTE_SERVER_UP ") && !$0.hasPrefix("PING ") } == [pduRow(chunkIndex + 1, destinations: 1)])
            }
            #expect(await fixture.process?.waitForExit(timeout: .zero) == nil, "southbridge exited:\n\(fixture.process?.output() ?? "")")
            let fresh = try await fixture.replicationClient()
            #expect(try await fresh.greeting() == ["SERVER origin.southbridge.localhost", "PING <ms>"])
            #expect(reconnects <= 2, "the fuzzer was cut off \(reconnects) times")
            for client in [observer, fuzzer, fresh] { await client.close() }
            await ingest.close()
        }
    }
}
