import Testing
@testable import Federation

struct SignedJSONTests {
    /// The spec's JSON-signing vectors: input, and the whole expected output.
    @Test(arguments: [
        (
            "{}",
            #"{"signatures":{"domain":{"ed25519:1":"K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"}}}"#
        ),
        (
            #"{"one": 1, "two": "Two"}"#,
            #"{"one":1,"signatures":{"domain":{"ed25519:1":"KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"}},"two":"Two"}"#
        ),
    ])
    func matchesSpecVector(_ input: String, _ output: String) throws {
        let key = try SpecVectors.signingKey()
        let signed = SignedJSON.sign(try parseJSON(input), entity: SpecVectors.serverName, key: key)
        #expect(CanonicalJSON.encode(signed) == utf8(output))
        let published = try parseJSON(output)
        #expect(
            SignedJSON.verify(
                published, entity: SpecVectors.serverName, keyID: SpecVectors.keyID,
                key: try VerifyKey(base64: SpecVectors.publicKeyBase64)))
    }

    @Test func signsServerKeysResponse() throws {
        let key = try SpecVectors.signingKey()
        let response: JSONValue = [
            "server_name": "domain",
            "verify_keys": ["ed25519:1": ["key": .string(key.publicKeyBase64)]],
            "old_verify_keys": [:],
            "valid_until_ts": 1_700_000_000_000,
        ]
        let signed = SignedJSON.sign(response, entity: "domain", key: key)
        #expect(
            signed["signatures"]?["domain"]?["ed25519:1"]?.stringValue
                == "ewq/uPhfAzmWSa/3PRlr5Q0W59jG75Wtb6mzxIELuVRAxYMHOeMFue6fNXijZkIwLLembQ0+gl7DIkiUGcoUBg")
    }

    @Test func mergesSignaturesAndKeepsUnsigned() throws {
        let key = try SpecVectors.signingKey()
        let input: JSONValue = [
            "one": 1, "two": "Two",
            "signatures": ["other.example": ["ed25519:x": "c2ln"], "domain": ["ed25519:old": "b2xk"]],
            "unsigned": ["age_ts": 5],
        ]
        let signed = SignedJSON.sign(input, entity: "domain", key: key)
        #expect(signed["unsigned"] == ["age_ts": 5])
        #expect(signed["signatures"]?["other.example"] == ["ed25519:x": "c2ln"])
        #expect(signed["signatures"]?["domain"]?["ed25519:old"] == "b2xk")
        // Neither signatures nor unsigned are covered, so this is the `{"one":1,"two":"Two"}` vector.
        #expect(
            signed["signatures"]?["domain"]?["ed25519:1"]?.stringValue
                == "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw")
    }

    @Test func replacesMalformedSignatures() throws {
        let key = try SpecVectors.signingKey()
        let signed = SignedJSON.sign(["signatures": 7], entity: "domain", key: key)
        #expect(signed["signatures"]?["domain"]?["ed25519:1"]?.stringValue?.hasPrefix("K8280/U9") == true)
    }

    @Test func verificationFailsForEveryBrokenPart() throws {
        let key = try SpecVectors.signingKey()
        let verifyKey = key.verifyKey
        let signed = SignedJSON.sign(["one": 1, "unsigned": ["a": 1]], entity: "domain", key: key)
        #expect(SignedJSON.verify(signed, entity: "domain", keyID: "ed25519:1", key: verifyKey))

        guard case .object(var members) = signed else { Issue.record("not an object"); return }
        members["unsigned"] = ["changed": true]
        #expect(SignedJSON.verify(.object(members), entity: "domain", keyID: "ed25519:1", key: verifyKey))
        members["one"] = 2
        #expect(!SignedJSON.verify(.object(members), entity: "domain", keyID: "ed25519:1", key: verifyKey))

        #expect(!SignedJSON.verify(signed, entity: "other", keyID: "ed25519:1", key: verifyKey))
        #expect(!SignedJSON.verify(signed, entity: "domain", keyID: "ed25519:2", key: verifyKey))
        #expect(!SignedJSON.verify(.array([signed]), entity: "domain", keyID: "ed25519:1", key: verifyKey))
        #expect(!SignedJSON.verify(["signatures": ["domain": ["ed25519:1": "***"]]], entity: "domain", keyID: "ed25519:1", key: verifyKey))
        #expect(!SignedJSON.verify(["signatures": ["domain": ["ed25519:1": 5]]], entity: "domain", keyID: "ed25519:1", key: verifyKey))
        let otherAlgorithm: JSONValue = ["signatures": ["domain": ["curve25519:1": signed["signatures"]!["domain"]!["ed25519:1"]!]]]
        #expect(!SignedJSON.verify(otherAlgorithm, entity: "domain", keyID: "curve25519:1", key: verifyKey))
        let stranger = try SigningKey.generate(version: "s")
        #expect(!SignedJSON.verify(signed, entity: "domain", keyID: "ed25519:1", key: stranger.verifyKey))
    }
}
