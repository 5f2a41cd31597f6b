import FuzzSupport
import NIOCore
import Testing

@testable import Transport

/// Responses a remote server could send, mutated: every input either parses or fails with a
/// `Failure`, never traps, never counts more bytes than it was given, and comes out the same
/// whether it arrives in one read or in many.
struct HTTPResponseParserFuzzTests {
    /// What the parser made of one input; equal for the same bytes however they are split.
    struct Outcome: Equatable, CustomStringConvertible {
        var heads: [String] = []
        var body: [UInt8] = []
        var ended = false
        var failure: HTTPResponseParser.Failure?
        /// What the parser counted against the limit, when it did not fail.
        var responseBytes = 0

        var description: String {
            "heads \(heads), \(body.count) body bytes, ended \(ended), failure \(String(describing: failure))"
        }
    }

    static let tokens: [[UInt8]] = [
        "\r\n", "\r\n\r\n", "\n", "HTTP/1.1 ", "HTTP/1.0 ", "200 OK", "100 Continue\r\n\r\n", "101 ", "204 ", "304 ",
        "Content-Length: ", "Transfer-Encoding: chunked", "Transfer-Encoding: gzip", "Connection: close",
        "Connection: keep-alive", ": ", ",", " ", "\t", "0\r\n\r\n", ";ext=1", "fffffffffffffff\r\n", "\r\n0\r\n",
        "Trailer: x\r\n",
    ].map { Array($0.utf8) }

    static let mutator = Mutator(
        corpus: HTTPResponseParserTests.valid.map { Array($0.wire.utf8) }, tokens: tokens, seed: 0x4854_5450)

    @Test("4,000 mutated responses parse or fail cleanly, the same whole and split at random points")
    func mutatedResponses() {
        var generator = SplitMix64(seed: 0x5350_4C49)
        for input in Self.mutator.cases(4000) {
            let requestIsHEAD = input.index % 7 == 3
            // Some run against a tight limit, so the limit checks see mutants too.
            let limit = input.index % 5 == 0 ? 64 + input.index % 200 : 64 * 1024
            let whole = Self.parse(input.bytes, cuts: [], requestIsHEAD: requestIsHEAD, limit: limit)
            let cuts = Self.randomCuts(count: input.bytes.count, using: &generator)
            let split = Self.parse(input.bytes, cuts: cuts, requestIsHEAD: requestIsHEAD, limit: limit)
            #expect(whole == split, "\(input), cut at \(cuts)")
            #expect(whole.responseBytes <= input.bytes.count, "\(input)")
            #expect(whole.body.count <= input.bytes.count, "\(input)")
            // The exchange handler checks body bytes against the limit; everything else is the parser's.
            #expect(whole.responseBytes - whole.body.count <= limit, "\(input): \(whole)")
            if case .malformed(let reason) = whole.failure {
                // Reasons reach the logs: one short line, whatever the peer sent.
                #expect(reason.utf8.count <= 300 && !reason.contains(where: \.isNewline), "\(input): \(reason)")
            }
        }
    }

    @Test("every truncation of every valid response is incomplete or complete, never an error")
    func truncatedResponses() {
        for bytes in Self.mutator.truncations() {
            let outcome = Self.parse(bytes, cuts: [], requestIsHEAD: false, limit: 64 * 1024)
            #expect(outcome.failure == nil, "\(Mutator.Case(index: 0, bytes: bytes)): \(outcome)")
        }
    }

    @Test("oversized status lines, header sections, chunk lines and lengths end in a short failure")
    func oversizedFields() {
        let limit = 16 * 1024
        let huge = String(repeating: "a", count: 64 * 1024)
        let inputs: [String] = [
            "HTTP/1.1 200 \(huge)",
            "HTTP/1.1 200 OK\r\nX: \(huge)\r\n\r\n",
            "HTTP/1.1 200 OK\r\n" + String(repeating: "X-Many: 1\r\n", count: 10_000) + "\r\n",
            "HTTP/1.1 100 Continue\r\n\r\n" + String(repeating: "HTTP/1.1 103 Early\r\n\r\n", count: 2000),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;\(huge)\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + String(repeating: "0", count: 64 * 1024) + "1\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + String(repeating: "T: x\r\n", count: 10_000),
        ]
        let name = String(repeating: "N", count: 10_000)
        let inputs2: [String] = [
            "HTTP/1.1 200 OK\r\n\(name) x: 1\r\n\r\n",
            "HTTP/1.1 200 OK\r\n\(name): \u{1}\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\(name)\r\n\r\n",
        ]
        for input in inputs + inputs2 {
            let outcome = Self.parse(Array(input.utf8), cuts: [], requestIsHEAD: false, limit: limit)
            #expect(outcome.failure != nil, "\(input.prefix(80))…: \(outcome)")
            if case .malformed(let reason) = outcome.failure {
                #expect(reason.utf8.count <= 300, "\(input.prefix(80))…: \(reason.prefix(300))")
            }
        }
        let lengths = ["999999999999999999", "9999999999999999999", "18446744073709551616", "-1", "0x10", "1 2"]
        for length in lengths {
            let outcome = Self.parse(Array("HTTP/1.1 200 OK\r\nContent-Length: \(length)\r\n\r\nabc".utf8), cuts: [],
                                     requestIsHEAD: false, limit: limit)
            let declaredTooLong = outcome.heads.first?.contains("length 999999999999999999") == true
            #expect(outcome.failure != nil || declaredTooLong, "Content-Length \(length): \(outcome)")
        }
    }

    /// Ascending offsets in 1..<count where the bytes are split into separate reads.
    private static func randomCuts(count: Int, using generator: inout SplitMix64) -> [Int] {
        guard count > 1 else { return [] }
        let pieces = Int(generator.next() % 6)
        return Set((0..<pieces).map { _ in 1 + Int(generator.next() % UInt64(count - 1)) }).sorted()
    }

    /// Feeds `bytes` in reads cut at `cuts`, keeping what the parser left unread in front of the
    /// next read as the exchange handler does, and closes the connection at the end.
    private static func parse(_ bytes: [UInt8], cuts: [Int], requestIsHEAD: Bool, limit: Int) -> Outcome {
        var parser = HTTPResponseParser()
        parser.expectResponse(requestIsHEAD: requestIsHEAD, limit: limit)
        var outcome = Outcome()
        var unread = ByteBuffer()
        var start = 0
        for end in cuts + [bytes.count] {
            unread.writeBytes(bytes[start..<end])
            start = end
            do {
                while let part = try parser.next(&unread) {
                    record(part, into: &outcome)
                }
            } catch {
                // What was counted before the failure depends on where the reads were cut.
                outcome.failure = error
                return outcome
            }
            unread.discardReadBytes()
        }
        if let part = parser.connectionClosed() {
            record(part, into: &outcome)
        }
        outcome.responseBytes = parser.responseBytes
        return outcome
    }

    private static func record(_ part: HTTPResponseParser.Part, into outcome: inout Outcome) {
        switch part {
        case .head(let head):
            outcome.heads.append(
                "\(head.statusCode) keep-alive \(head.keepAlive) length \(head.contentLength.map(String.init) ?? "none") "
                    + head.headers.map { "\($0.name)=\($0.value)" }.joined(separator: "|"))
        case .body(let chunk):
            outcome.body += chunk.readableBytesView
        case .end:
            outcome.ended = true
        }
    }
}
