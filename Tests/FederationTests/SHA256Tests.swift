import Testing
@testable import Federation

struct SHA256Tests {
    @Test(arguments: [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        (
            "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        ),
    ])
    func matchesFIPSVector(_ input: String, _ digest: String) {
        #expect(hex(SHA256.hash(utf8(input))) == digest)
    }

    /// Content hashes of the spec's event-signing vectors, from their hash inputs.
    @Test(arguments: [
        (
            #"{"auth_events":[],"content":{},"depth":3,"origin":"domain","origin_server_ts":1000000,"prev_events":[],"room_id":"!x:domain","sender":"@a:domain","type":"X"}"#,
            "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"
        ),
        (
            #"{"content":{"body":"Here is the message content"},"event_id":"$0:domain","origin":"domain","origin_server_ts":1000000,"room_id":"!r:domain","sender":"@u:domain","type":"m.room.message"}"#,
            "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"
        ),
    ])
    func reproducesSpecContentHash(_ hashInput: String, _ expected: String) {
        #expect(Base64.encodeUnpadded(SHA256.hash(utf8(hashInput))) == expected)
    }

    @Test func contentHashFromTheUnsignedEvent() throws {
        let event = try parseJSON(
            #"{"room_id":"!x:domain","sender":"@a:domain","origin":"domain","origin_server_ts":1000000,"signatures":{},"hashes":{},"type":"X","content":{},"prev_events":[],"auth_events":[],"depth":3,"unsigned":{"age_ts":1000000}}"#
        )
        var members = try #require(event.objectValue)
        for key in ["unsigned", "signatures", "hashes"] { members.removeValue(forKey: key) }
        let hash = SHA256.hash(CanonicalJSON.encode(.object(members)))
        #expect(Base64.encodeUnpadded(hash) == "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos")
    }

    /// Reference hashes (event IDs) of the signed minimal event; the v11 one needs the URL-safe alphabet.
    @Test(arguments: [
        (
            #"{"auth_events":[],"content":{},"depth":3,"hashes":{"sha256":"5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},"origin":"domain","origin_server_ts":1000000,"prev_events":[],"room_id":"!x:domain","sender":"@a:domain","type":"X"}"#,
            "$8yif6p8EqgoSten2BLje9ntKm720NyFLWQv9tn8memc"
        ),
        (
            #"{"auth_events":[],"content":{},"depth":3,"hashes":{"sha256":"5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},"origin_server_ts":1000000,"prev_events":[],"room_id":"!x:domain","sender":"@a:domain","type":"X"}"#,
            "$70O_oKlXzFbkfu0KE88USi98DjSWrOELrPj-8tisl8I"
        ),
    ])
    func reproducesSpecReferenceHash(_ redacted: String, _ eventID: String) {
        #expect("$" + Base64.encodeURLSafeUnpadded(SHA256.hash(utf8(redacted))) == eventID)
    }

    @Test func hashesAnyByteCollection() {
        let bytes = utf8("abc")
        #expect(SHA256.hash(bytes[...]) == SHA256.hash(bytes))
        #expect(SHA256.hash(bytes.lazy.map { $0 }) == SHA256.hash(bytes))
    }
}
