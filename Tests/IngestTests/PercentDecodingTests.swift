import FuzzSupport
import Ingest
import Testing

/// Query strings and path segments as the homeserver sends them: `%XX` is a byte, anything else
/// is kept as it is.
struct PercentDecodingTests {
    @Test func escapesAreTwoHexDigitsAndNothingElse() {
        let query = IngestRequest.parseQuery("a=%41&b=%+5&c=%-0&d=%4&e=%zz&f=%e2%82%AC&g=100%&h=%%41&i=a+b")
        #expect(query == ["a": "A", "b": "%+5", "c": "%-0", "d": "%4", "e": "%zz", "f": "€", "g": "100%", "h": "%A",
                          "i": "a+b"])
    }

    @Test("2,000 random strings survive being percent-encoded byte by byte")
    func roundTrip() {
        var generator = SplitMix64(seed: 0x5045_5243)
        let alphabet = Array("aZ09-._~%+&=?/#é€😀\u{0}\u{7F}".unicodeScalars)
        for _ in 0..<2000 {
            let length = Int(generator.next() % 24)
            var text = ""
            for _ in 0..<length {
                text.unicodeScalars.append(alphabet[Int(generator.next() % UInt64(alphabet.count))])
            }
            let encoded = text.utf8.map { "%" + String($0, radix: 16, uppercase: generator.next() % 2 == 0) }
                .map { $0.count == 2 ? "%0" + $0.dropFirst() : $0 }.joined()
            #expect(IngestRequest.parseQuery(Substring("k=" + encoded))["k"] == text, "\(encoded)")
        }
    }
}
