import Testing
@testable import Federation

struct Base64Tests {
    /// The spec's unpadded base64 vectors.
    @Test(arguments: [
        ("", ""), ("f", "Zg"), ("fo", "Zm8"), ("foo", "Zm9v"), ("foob", "Zm9vYg"), ("fooba", "Zm9vYmE"),
        ("foobar", "Zm9vYmFy"),
    ])
    func encodesAndDecodesSpecVector(_ plain: String, _ encoded: String) {
        #expect(Base64.encodeUnpadded(utf8(plain)) == encoded)
        #expect(Base64.encodeURLSafeUnpadded(utf8(plain)) == encoded)
        #expect(Base64.decode(encoded) == utf8(plain))
        #expect(Base64.decodeURLSafe(encoded) == utf8(plain))
    }

    @Test(arguments: [("Zg==", "f"), ("Zm8=", "fo"), ("Zm9v", "foo"), ("Zm9vYg==", "foob"), ("Zm9vYmE=", "fooba")])
    func decodesPaddedInput(_ encoded: String, _ plain: String) {
        #expect(Base64.decode(encoded) == utf8(plain))
    }

    @Test(arguments: ["Z", "Zg=", "Zm9v=", "Zg===", "Zg==Zg==", "Z===", "Zg*", "Zm 9v", "Zm9v\n", "-_8", "====", "Zm9vY"])
    func rejectsInvalidInput(_ encoded: String) {
        #expect(Base64.decode(encoded) == nil)
    }

    @Test func distinguishesAlphabets() {
        let bytes: [UInt8] = [0xFB, 0xFF, 0xBF]
        #expect(Base64.encodeUnpadded(bytes) == "+/+/")
        #expect(Base64.encodeURLSafeUnpadded(bytes) == "-_-_")
        #expect(Base64.decode("+/+/") == bytes)
        #expect(Base64.decodeURLSafe("-_-_") == bytes)
        #expect(Base64.decode("-_-_") == nil)
        #expect(Base64.decodeURLSafe("+/+/") == nil)
    }

    @Test func acceptsNonZeroUnusedBitsLikeTheSpecSeed() {
        // The last character '1' of the spec's seed carries two non-zero unused bits.
        #expect(Base64.decode(SpecVectors.seedBase64).map(hex) == SpecVectors.seedHex)
        #expect(Base64.decode("Zh") == utf8("f"))
    }

    @Test func roundTripsEveryLength() {
        for length in 0..<70 {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            #expect(Base64.decode(Base64.encodeUnpadded(bytes)) == bytes)
            #expect(Base64.decodeURLSafe(Base64.encodeURLSafeUnpadded(bytes)) == bytes)
        }
    }
}
