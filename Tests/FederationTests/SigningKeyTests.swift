import Testing
@testable import Federation

struct SigningKeyTests {
    @Test func derivesSpecPublicKey() throws {
        let key = try SpecVectors.signingKey()
        #expect(key.keyID == SpecVectors.keyID)
        #expect(key.publicKeyBase64 == SpecVectors.publicKeyBase64)
        #expect(hex(key.publicKey) == SpecVectors.publicKeyHex)
        #expect(key.verifyKey.publicKeyBase64 == SpecVectors.publicKeyBase64)
        #expect(key.description == "SigningKey(ed25519:1, public \(SpecVectors.publicKeyBase64))")
    }

    /// Signatures from the spec's JSON-signing, event-signing (v1–v10 and v11 redaction) and key-server
    /// vectors, over their signed bytes.
    @Test(arguments: [
        ("{}", "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"),
        (
            #"{"one":1,"two":"Two"}"#,
            "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
        ),
        (
            #"{"auth_events":[],"content":{},"depth":3,"hashes":{"sha256":"5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},"origin":"domain","origin_server_ts":1000000,"prev_events":[],"room_id":"!x:domain","sender":"@a:domain","type":"X"}"#,
            "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"
        ),
        (
            #"{"content":{},"event_id":"$0:domain","hashes":{"sha256":"onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"},"origin":"domain","origin_server_ts":1000000,"room_id":"!r:domain","sender":"@u:domain","type":"m.room.message"}"#,
            "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA"
        ),
        (
            #"{"auth_events":[],"content":{},"depth":3,"hashes":{"sha256":"5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},"origin_server_ts":1000000,"prev_events":[],"room_id":"!x:domain","sender":"@a:domain","type":"X"}"#,
            "Jxp+1glFcZM+nnHpY0EkedRR7u0VmKsJYGnQqIvqus3UvL5X/p1y6wSkLhGoTBel6MZ9lrMIzUqrjqFquWJKBw"
        ),
        (
            #"{"content":{},"event_id":"$0:domain","hashes":{"sha256":"onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"},"origin_server_ts":1000000,"room_id":"!r:domain","sender":"@u:domain","type":"m.room.message"}"#,
            "4WQB/6LN2OtkUN/+18xUNB/U4RTX1N3EeKBdlCxux08YO8izKDrSRqML1XB8V97IK7AujkNO1xMl7TaBLA4kDw"
        ),
        (
            #"{"old_verify_keys":{},"server_name":"domain","valid_until_ts":1700000000000,"verify_keys":{"ed25519:1":{"key":"XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"}}}"#,
            "ewq/uPhfAzmWSa/3PRlr5Q0W59jG75Wtb6mzxIELuVRAxYMHOeMFue6fNXijZkIwLLembQ0+gl7DIkiUGcoUBg"
        ),
    ])
    func signsDeterministicallyLikeTheSpec(_ signedBytes: String, _ signature: String) throws {
        let key = try SpecVectors.signingKey()
        let produced = key.sign(utf8(signedBytes))
        #expect(produced.count == 64)
        #expect(Base64.encodeUnpadded(produced) == signature)
        #expect(key.sign(utf8(signedBytes)[...]) == produced)
        let verifyKey = try VerifyKey(base64: SpecVectors.publicKeyBase64)
        #expect(verifyKey.verify(signature: produced, message: utf8(signedBytes)))
    }

    @Test func verificationRejectsAlteredInputs() throws {
        let key = try SpecVectors.signingKey()
        let message = utf8(#"{"one":1,"two":"Two"}"#)
        let signature = key.sign(message)
        let verifyKey = key.verifyKey
        #expect(verifyKey.verify(signature: signature, message: message))
        var flipped = signature
        flipped[10] ^= 0x01
        #expect(!verifyKey.verify(signature: flipped, message: message))
        #expect(!verifyKey.verify(signature: signature, message: utf8(#"{"one":1,"two":"two"}"#)))
        #expect(!verifyKey.verify(signature: Array(signature.prefix(63)), message: message))
        #expect(!verifyKey.verify(signature: [], message: message))
        let other = try SigningKey.generate(version: "x")
        #expect(!other.verifyKey.verify(signature: signature, message: message))
    }

    @Test func signsAndVerifiesEmptyMessage() throws {
        let key = try SpecVectors.signingKey()
        let signature = key.sign([UInt8]())
        #expect(key.verifyKey.verify(signature: signature, message: [UInt8]()))
    }

    @Test func rejectsBadSeedAndVersion() {
        #expect(throws: SigningKeyError.seedLength(31)) {
            try SigningKey(seed: [UInt8](repeating: 1, count: 31), version: "1")
        }
        #expect(throws: SigningKeyError.invalidVersion("a-b")) {
            try SigningKey(seed: [UInt8](repeating: 1, count: 32), version: "a-b")
        }
        #expect(throws: SigningKeyError.invalidVersion("")) {
            try SigningKey(seed: [UInt8](repeating: 1, count: 32), version: "")
        }
        #expect(
            SigningKeyError.invalidVersion("a-b").description == #"the key version "a-b" must match [A-Za-z0-9_]+"#)
    }

    @Test func generatesDistinctKeysWithSynapseStyleVersions() throws {
        let first = try SigningKey.generate()
        let second = try SigningKey.generate()
        #expect(first.publicKey != second.publicKey)
        for key in [first, second] {
            #expect(key.keyID.hasPrefix("ed25519:a_"))
            #expect(key.version.utf8.count == 6)
            #expect(SigningKey.isValidVersion(key.version))
            #expect(key.version.dropFirst(2).allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) })
            let message = utf8("hello")
            #expect(key.verifyKey.verify(signature: key.sign(message), message: message))
        }
        let versions = Set((0..<50).map { _ in SigningKey.randomVersion() })
        #expect(versions.count > 40)
    }

    @Test func verifyKeyRejectsMalformedKeys() {
        #expect(throws: VerifyKeyError.publicKeyLength(31)) { try VerifyKey(publicKey: [UInt8](repeating: 0, count: 31)) }
        #expect(throws: VerifyKeyError.invalidBase64("not base64!")) { try VerifyKey(base64: "not base64!") }
        #expect(throws: VerifyKeyError.publicKeyLength(3)) { try VerifyKey(base64: "Zm9v") }
    }

    @Test func signsConcurrently() async throws {
        let key = try SpecVectors.signingKey()
        let expected = "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
        let results = await withTaskGroup(of: String.self) { group in
            for _ in 0..<64 {
                group.addTask { Base64.encodeUnpadded(key.sign(utf8("{}"))) }
            }
            return await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(results.count == 64)
        #expect(results.allSatisfy { $0 == expected })
    }
}
