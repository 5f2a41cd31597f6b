@testable import Resolver
import Testing

@Suite("DNS wire format: query encoding, strict response decoding, what an answer means")
struct DNSWireFormatTests {
    @Test("a query has the ID, RD, one question and an EDNS0 OPT offering 1232 bytes")
    func queryEncoding() throws {
        let query = try DNSQuery(id: 0x1234, name: "Example.ORG.", type: .aaaa)
        #expect(query.name == "example.org")
        #expect(query.message == hexBytes(
            "123401000001000000000001" + "076578616d706c65036f726700" + "001c0001" + "0000290" + "4d0000000000000"))
        let plain = try DNSQuery(id: 0xBEEF, name: "a.b", type: .srv, usesEDNS: false)
        #expect(plain.message == hexBytes("beef01000001000000000000" + "0161016200" + "00210001"))
    }

    @Test("query IDs come from the system random number generator")
    func randomIDs() throws {
        let ids = try Set((0..<32).map { _ in try DNSQuery(name: "example.org", type: .a).id })
        #expect(ids.count > 16)
    }

    @Test("names that cannot be queried are refused with the rule they break", arguments: [
        ("", "empty"),
        (".", "empty"),
        ("a..b", "empty label"),
        (".a.b", "empty label"),
        ("exa mple.org", "\" \" is not allowed"),
        ("bücher.example", "ASCII (xn--) form"),
        (String(repeating: "a", count: 64) + ".org", "longer than 63"),
        (Array(repeating: String(repeating: "a", count: 63), count: 4).joined(separator: "."), "longer than 255"),
    ])
    func invalidNames(name: String, reason: String) {
        #expect {
            _ = try DNSQuery(name: name, type: .a)
        } throws: { error in
            guard case .invalidName(let named, let why) = error as? DNSError else { return false }
            return named == name && why.contains(reason) && (error as! DNSError).description.contains("\"\(name)\"")
        }
    }

    @Test("dnsmasq's answer with a compressed name decodes to the A record")
    func capturedAnswer() throws {
        let query = try DNSQuery(id: 0xE07A, name: "a.example.test", type: .a)
        let response = try DNSResponse(decoding: hexBytes(
            "e07a850000010001000100010161076578616d706c6504746573740000010001c00c000100010000012c0004c0000201"
                + "076578616d706c65047465737400000200010000012c0011026e73076578616d706c6504746573740000002904d0000000000000"),
            for: query)
        #expect(response.responseCode == .noError)
        #expect(!response.isTruncated)
        #expect(response.answers == [DNSResourceRecord(name: "a.example.test", ttl: 300, data: .a([192, 0, 2, 1]))])
        #expect(response.learnedAnswers(for: "a.example.test", type: .a)
            == [DNSLearnedAnswer(name: "a.example.test", answer: .records([.a([192, 0, 2, 1])]), ttl: 300)])
    }

    @Test("dnsmasq's NXDOMAIN carries an SOA whose TTL and MINIMUM bound the negative TTL")
    func capturedNameError() throws {
        let query = try DNSQuery(id: 0x379A, name: "nx.example.test", type: .a)
        let response = try DNSResponse(decoding: hexBytes(
            "379a85030001000000010001026e78076578616d706c6504746573740000010001076578616d706c65047465737400000600"
                + "010000012c003e026e73076578616d706c650474657374000a686f73746d6173746572076578616d706c6504746573740000"
                + "000001000004b00000007800093a800000012c00002904d0000000000000"),
            for: query)
        #expect(response.responseCode == .nameError)
        #expect(response.authority == [DNSResourceRecord(name: "example.test", ttl: 300, data: .soa(DNSStartOfAuthority(
            primaryNameServer: "ns.example.test", responsibleMailbox: "hostmaster.example.test",
            serial: 1, refresh: 1200, retry: 120, expire: 604_800, minimum: 300)))])
        #expect(response.learnedAnswers(for: "nx.example.test", type: .a)
            == [DNSLearnedAnswer(name: "nx.example.test", answer: .noSuchName, ttl: 300)])
    }

    @Test("dnsmasq's SRV answer decodes priority, weight, port and target")
    func capturedServiceRecords() throws {
        let query = try DNSQuery(id: 0x757A, name: "_matrix-fed._tcp.example.test", type: .srv)
        let response = try DNSResponse(decoding: hexBytes(
            "757a850000010002000100010b5f6d61747269782d666564045f746370076578616d706c6504746573740000210001c00c002100"
                + "010000012c0017001400052100027432076578616d706c65047465737400c00c002100010000012c0017000a00052100027431"
                + "076578616d706c65047465737400076578616d706c65047465737400000200010000012c0011026e73076578616d706c650474"
                + "6573740000002904d0000000000000"),
            for: query)
        #expect(response.answers.map(\.data) == [
            .srv(SRVRecord(priority: 20, weight: 5, port: 8448, target: "t2.example.test")),
            .srv(SRVRecord(priority: 10, weight: 5, port: 8448, target: "t1.example.test")),
        ])
    }

    @Test("the question may come back in another case (dnsmasq echoes it, 0x20 servers mix it)")
    func questionCaseInsensitive() throws {
        let query = try DNSQuery(id: 7, name: "a.example.test", type: .a)
        var message = DNSMessageBuilder()
        message.header(id: 7, answers: 1)
        message.question("A.EXAMPLE.Test", type: .a)
        message.record(owner: 12, type: .a, ttl: 60, data: [192, 0, 2, 1])
        let response = try DNSResponse(decoding: message.bytes, for: query)
        #expect(response.answers.first?.name == "a.example.test")
    }

    @Test("answers to another ID or question, and queries, are told apart from malformed messages")
    func mismatches() throws {
        let query = try DNSQuery(id: 0x1111, name: "a.example.test", type: .a)
        var otherID = DNSMessageBuilder()
        otherID.header(id: 0x2222)
        otherID.question("a.example.test", type: .a)
        var otherName = DNSMessageBuilder()
        otherName.header(id: 0x1111)
        otherName.question("b.example.test", type: .a)
        var otherType = DNSMessageBuilder()
        otherType.header(id: 0x1111)
        otherType.question("a.example.test", type: .aaaa)
        var notResponse = DNSMessageBuilder()
        notResponse.header(id: 0x1111, flags: 0x0100)
        notResponse.question("a.example.test", type: .a)

        #expect(throws: DNSWireError.idMismatch(expected: 0x1111, received: 0x2222)) {
            try DNSResponse(decoding: otherID.bytes, for: query)
        }
        #expect(throws: DNSWireError.questionMismatch(expected: "a.example.test IN A", received: "b.example.test CLASS1 A")) {
            try DNSResponse(decoding: otherName.bytes, for: query)
        }
        #expect(throws: DNSWireError.questionMismatch(expected: "a.example.test IN A", received: "a.example.test CLASS1 AAAA")) {
            try DNSResponse(decoding: otherType.bytes, for: query)
        }
        #expect(throws: DNSWireError.notAResponse) { try DNSResponse(decoding: notResponse.bytes, for: query) }
        #expect(DNSWireError.idMismatch(expected: 1, received: 2).isMismatch)
        #expect(!DNSWireError.malformed(offset: 0, reason: "").isMismatch)
    }

    @Test("an error response without its question is accepted on the ID alone")
    func errorWithoutQuestion() throws {
        let query = try DNSQuery(id: 9, name: "a.example.test", type: .a)
        var message = DNSMessageBuilder()
        message.header(id: 9, flags: 0x8182, questions: 0)
        let response = try DNSResponse(decoding: message.bytes, for: query)
        #expect(response.responseCode == .serverFailure)
        #expect(!response.responseCode.isAnswer)
    }

    @Test("a truncated answer is flagged and its partial records are not read")
    func truncated() throws {
        let query = try DNSQuery(id: 3, name: "big.example.test", type: .a)
        var message = DNSMessageBuilder()
        message.header(id: 3, flags: 0x8380, answers: 40)
        message.question("big.example.test", type: .a)
        message.record(owner: 12, type: .a, ttl: 60, data: [10, 0, 0, 1])
        let response = try DNSResponse(decoding: message.bytes, for: query)
        #expect(response.isTruncated)
        #expect(response.answers.isEmpty)
    }

    @Test("TTLs with the top bit set count as 0; other classes and unknown types are skipped")
    func recordQuirks() throws {
        let query = try DNSQuery(id: 4, name: "a.example.test", type: .a)
        var message = DNSMessageBuilder()
        message.header(id: 4, answers: 3)
        message.question("a.example.test", type: .a)
        message.record(owner: 12, type: DNSRecordType(rawValue: 16), ttl: 60, data: [3, 0x61, 0x62, 0x63])
        message.pointer(12)
        message.u16(DNSRecordType.a.rawValue)
        message.u16(3)  // class CH
        message.u32(60)
        message.u16(4)
        message.bytes += [1, 2, 3, 4]
        message.record(owner: 12, type: .a, ttl: 0x8000_0001, data: [192, 0, 2, 1])
        let response = try DNSResponse(decoding: message.bytes, for: query)
        #expect(response.answers == [DNSResourceRecord(name: "a.example.test", ttl: 0, data: .a([192, 0, 2, 1]))])
    }

    @Test("labels with dots or unprintable bytes are escaped, never split into more labels")
    func escapedLabels() throws {
        let query = try DNSQuery(id: 5, name: "a.example.test", type: .cname)
        var message = DNSMessageBuilder()
        message.header(id: 5, answers: 1)
        message.question("a.example.test", type: .cname)
        message.record(owner: 12, type: .cname, ttl: 60, data: [4, 0x62, 0x2E, 0x00, 0x5C, 4, 0x54, 0x45, 0x53, 0x54, 0])
        let response = try DNSResponse(decoding: message.bytes, for: query)
        #expect(response.answers.first?.data == .cname("b\\.\\000\\\\.test"))
    }

    static let malformedMessages: [(String, [UInt8], String)] = {
        func message(_ build: (inout DNSMessageBuilder) -> Void) -> [UInt8] {
            var builder = DNSMessageBuilder()
            build(&builder)
            return builder.bytes
        }
        return [
            ("a short header", [0x00, 0x01, 0x81], "shorter than the 12-byte header"),
            ("two questions", message {
                $0.header(id: 1, questions: 2)
                $0.question("a.example.test", type: .a)
            }, "one question"),
            ("a label past the end", message {
                $0.header(id: 1)
                $0.bytes += [9, 0x61]
            }, "runs past the end"),
            ("a name without its end", message {
                $0.header(id: 1)
                $0.bytes += [1, 0x61]
            }, "runs past the end"),
            ("a forward pointer", message {
                $0.header(id: 1)
                $0.pointer(14)
                $0.bytes += [0, 0]
            }, "does not point backwards"),
            ("a pointer to itself", message {
                $0.header(id: 1)
                $0.pointer(12)
            }, "does not point backwards"),
            ("a pointer loop through an earlier label", message {
                $0.header(id: 1)
                $0.bytes += [1, 0x61]
                $0.pointer(12)
            }, "does not point backwards"),
            ("an extended label type", message {
                $0.header(id: 1)
                $0.bytes += [0x41, 0]
            }, "label type 0x40"),
            ("a name over 255 bytes", message {
                $0.header(id: 1)
                for _ in 0..<5 { $0.bytes += [63] + Array(repeating: 0x61, count: 63) }
                $0.bytes += [0, 0, 1, 0, 1]
            }, "longer than 255"),
            ("an A record of 5 bytes", message {
                $0.header(id: 1, answers: 1)
                $0.question("a.example.test", type: .a)
                $0.record(owner: 12, type: .a, ttl: 1, data: [1, 2, 3, 4, 5])
            }, "not 4"),
            ("record data past the end", message {
                $0.header(id: 1, answers: 1)
                $0.question("a.example.test", type: .a)
                $0.record(owner: 12, type: .a, ttl: 1, data: [1, 2, 3, 4])
                $0.bytes.removeLast()
            }, "runs past the end"),
            ("an SRV whose target overruns its length", message {
                $0.header(id: 1, answers: 1)
                $0.question("a.example.test", type: .a)
                $0.record(owner: 12, type: .srv, ttl: 1, data: [0, 1, 0, 1, 0x21, 0x00, 1, 0x74])
                $0.bytes += [0]
            }, "fields take"),
            ("more answers than the message holds", message {
                $0.header(id: 1, answers: 2)
                $0.question("a.example.test", type: .a)
                $0.record(owner: 12, type: .a, ttl: 1, data: [1, 2, 3, 4])
            }, "runs past the end"),
        ]
    }()

    @Test("malformed messages are errors that say where and why", arguments: malformedMessages)
    func malformed(label: String, message: [UInt8], reason: String) throws {
        let query = try DNSQuery(id: 1, name: "a.example.test", type: .a)
        #expect(label.isEmpty == false)
        #expect {
            _ = try DNSResponse(decoding: message, for: query)
        } throws: { error in
            guard case .malformed(_, let why) = error as? DNSWireError else { return false }
            return why.contains(reason)
        }
    }

    @Test("every truncation and every single-byte corruption of a real answer decodes or throws, never traps")
    func corruption() throws {
        let query = try DNSQuery(id: 0x757A, name: "_matrix-fed._tcp.example.test", type: .srv)
        let original = hexBytes(
            "757a850000010002000100010b5f6d61747269782d666564045f746370076578616d706c6504746573740000210001c00c002100"
                + "010000012c0017001400052100027432076578616d706c65047465737400c00c002100010000012c0017000a00052100027431"
                + "076578616d706c65047465737400076578616d706c65047465737400000200010000012c0011026e73076578616d706c650474"
                + "6573740000002904d0000000000000")
        for length in 0..<original.count {
            _ = try? DNSResponse(decoding: Array(original[..<length]), for: query)
        }
        for index in original.indices {
            for value: UInt8 in [0x00, 0x3F, 0xC0, 0xFF, original[index] ^ 0x01] {
                var corrupted = original
                corrupted[index] = value
                _ = try? DNSResponse(decoding: corrupted, for: query)
            }
        }
    }

    private func response(_ code: DNSResponseCode, answers: [DNSResourceRecord],
                          authority: [DNSResourceRecord] = []) throws -> DNSResponse {
        var message = DNSMessageBuilder()
        message.header(id: 1, flags: 0x8180 | code.rawValue)
        message.question("www.example.test", type: .a)
        var decoded = try DNSResponse(decoding: message.bytes, for: try DNSQuery(id: 1, name: "www.example.test", type: .a))
        decoded.answers = answers
        decoded.authority = authority
        return decoded
    }

    private let soa = DNSResourceRecord(name: "example.test", ttl: 3600, data: .soa(DNSStartOfAuthority(
        primaryNameServer: "ns.example.test", responsibleMailbox: "hostmaster.example.test",
        serial: 1, refresh: 1, retry: 1, expire: 1, minimum: 45)))

    @Test("a CNAME chain inside the answer is learned link by link, each with its own TTL")
    func chainInAnswer() throws {
        let answer = try response(.noError, answers: [
            DNSResourceRecord(name: "www.example.test", ttl: 100, data: .cname("web.example.test")),
            DNSResourceRecord(name: "web.example.test", ttl: 50, data: .cname("host.example.test")),
            DNSResourceRecord(name: "host.example.test", ttl: 70, data: .a([192, 0, 2, 1])),
            DNSResourceRecord(name: "host.example.test", ttl: 20, data: .a([192, 0, 2, 2])),
            DNSResourceRecord(name: "elsewhere.example.test", ttl: 5, data: .a([192, 0, 2, 3])),
        ])
        #expect(answer.learnedAnswers(for: "www.example.test", type: .a) == [
            DNSLearnedAnswer(name: "www.example.test", answer: .alias("web.example.test"), ttl: 100),
            DNSLearnedAnswer(name: "web.example.test", answer: .alias("host.example.test"), ttl: 50),
            DNSLearnedAnswer(name: "host.example.test", answer: .records([.a([192, 0, 2, 1]), .a([192, 0, 2, 2])]), ttl: 20),
        ])
    }

    @Test("an alias without its target's records is only an alias, unless an SOA says NODATA or the code is NXDOMAIN")
    func partialChains() throws {
        let alias = DNSResourceRecord(name: "www.example.test", ttl: 100, data: .cname("other.test"))
        #expect(try response(.noError, answers: [alias]).learnedAnswers(for: "www.example.test", type: .a)
            == [DNSLearnedAnswer(name: "www.example.test", answer: .alias("other.test"), ttl: 100)])
        #expect(try response(.noError, answers: [alias], authority: [soa]).learnedAnswers(for: "www.example.test", type: .a) == [
            DNSLearnedAnswer(name: "www.example.test", answer: .alias("other.test"), ttl: 100),
            DNSLearnedAnswer(name: "other.test", answer: .noData, ttl: 45),
        ])
        #expect(try response(.nameError, answers: [alias]).learnedAnswers(for: "www.example.test", type: .a) == [
            DNSLearnedAnswer(name: "www.example.test", answer: .alias("other.test"), ttl: 100),
            DNSLearnedAnswer(name: "other.test", answer: .noSuchName, ttl: nil),
        ])
    }

    @Test("a CNAME loop stops at the first repeated name")
    func aliasLoop() throws {
        let looping = try response(.noError, answers: [
            DNSResourceRecord(name: "www.example.test", ttl: 10, data: .cname("loop.example.test")),
            DNSResourceRecord(name: "loop.example.test", ttl: 10, data: .cname("www.example.test")),
        ])
        #expect(looping.learnedAnswers(for: "www.example.test", type: .a) == [
            DNSLearnedAnswer(name: "www.example.test", answer: .alias("loop.example.test"), ttl: 10),
            DNSLearnedAnswer(name: "loop.example.test", answer: .alias("www.example.test"), ttl: 10),
        ])
    }

    @Test("negative TTL is min(SOA TTL, SOA MINIMUM); without an SOA it is left to the default")
    func negativeTTL() throws {
        #expect(try response(.noError, answers: [], authority: [soa]).learnedAnswers(for: "www.example.test", type: .a)
            == [DNSLearnedAnswer(name: "www.example.test", answer: .noData, ttl: 45)])
        var shortSOA = soa
        shortSOA.ttl = 10
        #expect(try response(.nameError, answers: [], authority: [shortSOA]).learnedAnswers(for: "www.example.test", type: .a)
            == [DNSLearnedAnswer(name: "www.example.test", answer: .noSuchName, ttl: 10)])
        #expect(try response(.noError, answers: []).learnedAnswers(for: "www.example.test", type: .a)
            == [DNSLearnedAnswer(name: "www.example.test", answer: .noData, ttl: nil)])
    }

    @Test("types and response codes read like dig", arguments: [
        (DNSRecordType.a.description, "A"), (DNSRecordType.aaaa.description, "AAAA"),
        (DNSRecordType.srv.description, "SRV"), (DNSRecordType(rawValue: 99).description, "TYPE99"),
        (DNSResponseCode.nameError.description, "NXDOMAIN"), (DNSResponseCode.serverFailure.description, "SERVFAIL"),
        (DNSResponseCode.refused.description, "REFUSED"), (DNSResponseCode(rawValue: 9).description, "RCODE9"),
    ])
    func mnemonics(text: String, expected: String) {
        #expect(text == expected)
    }
}
