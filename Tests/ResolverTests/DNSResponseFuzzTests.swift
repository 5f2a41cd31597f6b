import FuzzSupport
import Testing

@testable import Resolver

/// DNS responses a nameserver (or anyone who can reach the UDP port) could send, mutated:
/// every message decodes or throws `DNSWireError`, and what decodes stays within the limits
/// the rest of the resolver relies on.
struct DNSResponseFuzzTests {
    /// Valid answers: three captured from dnsmasq (A, NXDOMAIN with SOA, SRV) and built ones for
    /// AAAA, a CNAME chain, a CNAME loop and a truncated answer.
    static let corpus: [[UInt8]] = {
        var entries = [
            hexBytes("e07a850000010001000100010161076578616d706c6504746573740000010001c00c000100010000012c0004c0000201"
                + "076578616d706c65047465737400000200010000012c0011026e73076578616d706c6504746573740000002904d0000000000000"),
            hexBytes("379a85030001000000010001026e78076578616d706c6504746573740000010001076578616d706c65047465737400000600"
                + "010000012c003e026e73076578616d706c650474657374000a686f73746d6173746572076578616d706c6504746573740000"
                + "000001000004b00000007800093a800000012c00002904d0000000000000"),
            hexBytes("757a850000010002000100010b5f6d61747269782d666564045f746370076578616d706c6504746573740000210001c00c002100"
                + "010000012c0017001400052100027432076578616d706c65047465737400c00c002100010000012c0017000a00052100027431"
                + "076578616d706c65047465737400076578616d706c65047465737400000200010000012c0011026e73076578616d706c650474"
                + "6573740000002904d0000000000000"),
        ]
        var aaaa = DNSMessageBuilder()
        aaaa.header(id: 0x0A0A, answers: 1)
        aaaa.question("v6.example.test", type: .aaaa)
        aaaa.record(owner: 12, type: .aaaa, ttl: 60, data: [0x20, 0x01, 0x0D, 0xB8] + Array(repeating: 0, count: 11) + [1])
        entries.append(aaaa.bytes)

        var chain = DNSMessageBuilder()
        chain.header(id: 0x0C0C, answers: 3)
        chain.question("www.example.test", type: .a)
        let alias = chain.bytes.count + 12
        chain.record(owner: 12, type: .cname, ttl: 300, data: [4] + Array("edge".utf8) + [0xC0, 16])
        chain.record(owner: alias, type: .cname, ttl: 200, data: [2] + Array("cd".utf8) + [0xC0, 16])
        chain.record(owner: chain.bytes.count - 5, type: .a, ttl: 100, data: [192, 0, 2, 7])
        entries.append(chain.bytes)

        var loop = DNSMessageBuilder()
        loop.header(id: 0x1010, answers: 2)
        loop.question("a.example.test", type: .a)
        let target = loop.bytes.count + 12
        loop.record(owner: 12, type: .cname, ttl: 60, data: [1] + Array("b".utf8) + [0xC0, 14])
        loop.record(owner: target, type: .cname, ttl: 60, data: [0xC0, 12])
        entries.append(loop.bytes)

        var truncated = DNSMessageBuilder()
        truncated.header(id: 3, flags: 0x8380, answers: 5)
        truncated.question("big.example.test", type: .a)
        entries.append(truncated.bytes)
        return entries
    }()

    static let mutator = Mutator(
        corpus: corpus,
        tokens: [[0xC0, 0x0C], [0xC0, 0x00], [0xC0, 0xFF], [0xFF, 0xFF], [0x3F], [0x40], [0x80], [0x00], [0x00, 0x05],
                 [0x00, 0x21], [0x00, 0x06], [0x00, 0x1C], [0x00, 0x29]],
        seed: 0x444E_5357, maxLength: 1232)

    @Test("5,000 mutated responses decode or throw DNSWireError, and what decodes is bounded")
    func mutatedResponses() {
        for input in Self.mutator.cases(5000) {
            let query = Self.query(answeredBy: input.bytes)
            do {
                let response = try DNSResponse(decoding: input.bytes, for: query)
                Self.checkBounds(response, of: input, for: query)
            } catch {
                #expect(!error.description.isEmpty)
            }
        }
    }

    @Test("every truncation of every valid response decodes within the bounds or throws")
    func truncatedResponses() {
        for bytes in Self.mutator.truncations() {
            let query = Self.query(answeredBy: bytes)
            // A cut that falls in the EDNS OPT record of the additional section is not read at all.
            if let response = try? DNSResponse(decoding: bytes, for: query) {
                Self.checkBounds(response, of: Mutator.Case(index: 0, bytes: bytes), for: query)
            }
        }
    }

    @Test("compression pointers that loop, point forwards or past the end are refused", arguments: [
        ([0xC0, 0x0C], "does not point backwards"),
        ([0xC0, 0x20], "does not point backwards"),
        ([0xFF, 0xFF], "does not point backwards"),
        ([0xC0], "runs past the end"),
        ([0x05, 0x61, 0x62], "runs past the end"),
        ([0x40, 0x00], "label type 0x40"),
        ([0x80, 0x00], "label type 0x80"),
    ] as [([UInt8], String)])
    func hostileQuestionNames(_ name: [UInt8], _ reason: String) {
        var message = DNSMessageBuilder()
        message.header(id: 1, answers: 1)
        message.bytes += name
        #expect {
            _ = try DNSResponse(decoding: message.bytes, for: try DNSQuery(id: 1, name: "a.example", type: .a))
        } throws: { error in
            guard case .malformed(_, let why) = error as? DNSWireError else { return false }
            return why.contains(reason)
        }
    }

    @Test("a pointer loop through two names and a 300-byte name built from pointers are refused")
    func pointerLoopsAndOverlongNames() throws {
        let query = try DNSQuery(id: 2, name: "a.example", type: .a)
        var loop = DNSMessageBuilder()
        loop.header(id: 2, answers: 1)
        loop.question("a.example", type: .a)
        // The answer's owner points at its own type field, which points back at the owner.
        let owner = loop.bytes.count
        loop.bytes += [0xC0, UInt8(owner + 2), 0xC0, UInt8(owner)]
        #expect(throws: DNSWireError.self) { try DNSResponse(decoding: loop.bytes, for: query) }

        // Ten 30-byte labels, each continued by a pointer to the one before, hidden in the data
        // of a record of an unknown type; a second record is owned by the last of them.
        var long = DNSMessageBuilder()
        long.header(id: 2, answers: 2)
        long.question("a.example", type: .a)
        var labels: [UInt8] = []
        var previous = 12
        let dataStart = long.bytes.count + 12
        for _ in 0..<10 {
            let start = dataStart + labels.count
            labels += [30] + Array(repeating: UInt8(ascii: "x"), count: 30) + [UInt8(0xC0 | previous >> 8), UInt8(previous & 0xFF)]
            previous = start
        }
        long.record(owner: 12, type: DNSRecordType(rawValue: 99), ttl: 1, data: labels)
        long.bytes += [UInt8(0xC0 | previous >> 8), UInt8(previous & 0xFF)]
        long.u16(DNSRecordType.a.rawValue)
        long.u16(1)
        long.u32(1)
        long.u16(4)
        long.bytes += [1, 2, 3, 4]
        #expect {
            try DNSResponse(decoding: long.bytes, for: query)
        } throws: { error in
            (error as? DNSWireError)?.description.contains("longer than 255 bytes") == true
        }
    }

    @Test("counts, record lengths and TTLs at their maximum are refused or clamped, not trusted")
    func maximumCountsAndLengths() throws {
        let query = try DNSQuery(id: 4, name: "a.example", type: .a)
        var counts = DNSMessageBuilder()
        counts.header(id: 4, answers: 0xFFFF, authority: 0xFFFF, additional: 0xFFFF)
        counts.question("a.example", type: .a)
        counts.record(owner: 12, type: .a, ttl: 1, data: [1, 2, 3, 4])
        #expect(throws: DNSWireError.self) { try DNSResponse(decoding: counts.bytes, for: query) }

        var length = DNSMessageBuilder()
        length.header(id: 4, answers: 1)
        length.question("a.example", type: .a)
        length.pointer(12)
        length.u16(DNSRecordType.a.rawValue)
        length.u16(1)
        length.u32(0xFFFF_FFFF)
        length.u16(0xFFFF)
        length.bytes += [1, 2, 3, 4]
        #expect(throws: DNSWireError.self) { try DNSResponse(decoding: length.bytes, for: query) }

        var ttl = DNSMessageBuilder()
        ttl.header(id: 4, answers: 1)
        ttl.question("a.example", type: .a)
        ttl.record(owner: 12, type: .a, ttl: 0xFFFF_FFFF, data: [1, 2, 3, 4])
        #expect(try DNSResponse(decoding: ttl.bytes, for: query).answers.first?.ttl == 0)
    }

    /// A 64 KiB response (the most TCP carries) of 2,000 records whose owner names each lead
    /// through the same chain of 16,000 compression pointers: each name cost 16,000 steps.
    @Test("a name that follows more compression pointers than a name has labels is refused")
    func longPointerChain() throws {
        let query = try DNSQuery(id: 5, name: "a.example", type: .a)
        var message = DNSMessageBuilder()
        message.header(id: 5)
        message.question("a.example", type: .a)
        let chainStart = message.bytes.count + 12
        var chain: [UInt8] = []
        var previous = 12
        for _ in 0..<16_000 {
            let start = chainStart + chain.count
            chain += [UInt8(0xC0 | previous >> 8), UInt8(previous & 0xFF)]
            previous = start
        }
        message.record(owner: 12, type: DNSRecordType(rawValue: 99), ttl: 1, data: chain)
        var records = 1
        while message.bytes.count + 16 <= 65535 {
            message.record(owner: previous, type: .a, ttl: 1, data: [192, 0, 2, 1])
            records += 1
        }
        message.bytes[6] = UInt8(records >> 8)
        message.bytes[7] = UInt8(records & 0xFF)
        #expect {
            try DNSResponse(decoding: message.bytes, for: query)
        } throws: { error in
            (error as? DNSWireError)?.description.contains("more than 128 compression pointers") == true
        }

        // At the limit, a chain still decodes.
        var short = DNSMessageBuilder()
        short.header(id: 5, answers: 2)
        short.question("a.example", type: .a)
        let shortStart = short.bytes.count + 12
        chain = []
        previous = 12
        for _ in 0..<127 {
            let start = shortStart + chain.count
            chain += [UInt8(0xC0 | previous >> 8), UInt8(previous & 0xFF)]
            previous = start
        }
        short.record(owner: 12, type: DNSRecordType(rawValue: 99), ttl: 1, data: chain)
        short.record(owner: previous, type: .a, ttl: 1, data: [192, 0, 2, 1])
        #expect(try DNSResponse(decoding: short.bytes, for: query).answers.last?.name == "a.example")
    }

    /// A 64 KiB answer that is one CNAME chain of almost 3,000 links: following all of them
    /// took a scan of the answers per link, and filled the cache with names never asked for.
    @Test("a CNAME chain is learned only as far as the resolver follows aliases")
    func longAliasChain() throws {
        let query = try DNSQuery(id: 6, name: "a.example", type: .a)
        var message = DNSMessageBuilder()
        message.header(id: 6)
        message.question("a.example", type: .a)
        // Link n is "xyz.a.example", three letters counting n, the question's name after them.
        func link(_ n: Int) -> [UInt8] {
            [3] + [n % 26, n / 26 % 26, n / 676 % 26].map { UInt8(ascii: "a") + UInt8($0) } + [0xC0, 12]
        }
        message.record(owner: 12, type: .cname, ttl: 60, data: link(0))
        var links = 1
        while message.bytes.count + 22 <= 65535 {
            message.bytes += link(links - 1)
            message.u16(DNSRecordType.cname.rawValue)
            message.u16(1)
            message.u32(60)
            message.u16(6)
            message.bytes += link(links)
            links += 1
        }
        message.bytes[6] = UInt8(links >> 8)
        message.bytes[7] = UInt8(links & 0xFF)
        let response = try DNSResponse(decoding: message.bytes, for: query)
        #expect(response.answers.count == links)
        let learned = response.learnedAnswers(for: "a.example", type: .a)
        #expect(learned.count == DNSResolver.maximumAliases + 1)
        #expect(learned.allSatisfy { if case .alias = $0.answer { true } else { false } })
        #expect(learned.first?.name == "a.example")
    }

    /// The query this message would answer, when its question can be read, so mutants get past
    /// the question check and exercise the records; else a query it does not answer.
    private static func query(answeredBy message: [UInt8]) -> DNSQuery {
        let fallback = try! DNSQuery(id: 0, name: "unrelated.example", type: .a)
        guard message.count >= 12 else { return fallback }
        var reader = DNSWireReader(message, offset: 12)
        guard let name = try? reader.readName(), let type = try? reader.readUInt16(),
              let query = try? DNSQuery(id: UInt16(message[0]) << 8 | UInt16(message[1]), name: name,
                                        type: DNSRecordType(rawValue: type))
        else { return fallback }
        return query
    }

    private static func checkBounds(_ response: DNSResponse, of input: Mutator.Case, for query: DNSQuery) {
        let records = response.answers + response.authority
        // Every record takes at least 11 bytes of the message (a pointer or root name, and the fixed fields).
        #expect(records.count <= input.bytes.count / 11, "\(input)")
        for record in records {
            // Presentation form escapes a byte as at most 4 characters; the wire form is at most 255 bytes.
            #expect(record.name.utf8.count <= 4 * 255, "\(input)")
            #expect(record.ttl <= 0x7FFF_FFFF, "\(input)")
        }
        for type in [query.type, .a, .aaaa, .cname, .srv] {
            let learned = response.learnedAnswers(for: query.name, type: type)
            // At most one step per alias followed, plus the final answer.
            #expect(learned.count <= response.answers.count + 1, "\(input)")
        }
    }
}
