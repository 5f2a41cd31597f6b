import Testing
@testable import Federation

struct XMatrixAuthorizationTests {
    static let origin = "origin.hs.example.com"
    static let destination = "destination.hs.example.com"

    struct Vector: Sendable, CustomTestStringConvertible {
        let method: String
        let uri: String
        let body: String?
        let signedBytes: String
        let header: String
        var testDescription: String { "\(method) \(uri)" }
    }

    /// The worked request-signing vectors of the reference (§3).
    static let vectors: [Vector] = [
        Vector(
            method: "GET",
            uri: "/_matrix/federation/v1/query/profile?user_id=%40alice%3Adestination.hs.example.com&field=displayname",
            body: nil,
            signedBytes: #"{"destination":"destination.hs.example.com","method":"GET","origin":"origin.hs.example.com","uri":"/_matrix/federation/v1/query/profile?user_id=%40alice%3Adestination.hs.example.com&field=displayname"}"#,
            header: #"X-Matrix origin="origin.hs.example.com",destination="destination.hs.example.com",key="ed25519:1",sig="PdMi2vq3dKj+Rig+IWEyhuDfuJkQmTR6Cguya3vy9oeEQS/jFo0+QgkX3g33wh0gNvTk+31P96BTkTb1WJToAw""#
        ),
        Vector(
            method: "PUT",
            uri: "/_matrix/federation/v1/send/1700000000000",
            body: #"{"edus":[{"content":{"room_id":"!room:origin.hs.example.com","typing":true,"user_id":"@alice:origin.hs.example.com"},"edu_type":"m.typing"}],"origin":"origin.hs.example.com","origin_server_ts":1700000000000,"pdus":[]}"#,
            signedBytes: #"{"content":{"edus":[{"content":{"room_id":"!room:origin.hs.example.com","typing":true,"user_id":"@alice:origin.hs.example.com"},"edu_type":"m.typing"}],"origin":"origin.hs.example.com","origin_server_ts":1700000000000,"pdus":[]},"destination":"destination.hs.example.com","method":"PUT","origin":"origin.hs.example.com","uri":"/_matrix/federation/v1/send/1700000000000"}"#,
            header: #"X-Matrix origin="origin.hs.example.com",destination="destination.hs.example.com",key="ed25519:1",sig="Y3EIQCuadwXE+CCF+e0zw+884TQV6rFcDxNal5P/By0SUeJxmiSIxbE46oXzclqx++/PgEWNZKxhFg7gV+Q2Ag""#
        ),
        Vector(
            method: "POST",
            uri: "/_matrix/federation/v1/user/keys/query",
            body: #"{"device_keys":{"@bob:destination.hs.example.com":[]}}"#,
            signedBytes: #"{"content":{"device_keys":{"@bob:destination.hs.example.com":[]}},"destination":"destination.hs.example.com","method":"POST","origin":"origin.hs.example.com","uri":"/_matrix/federation/v1/user/keys/query"}"#,
            header: #"X-Matrix origin="origin.hs.example.com",destination="destination.hs.example.com",key="ed25519:1",sig="UpQRbGipCL/sTc+I0uzSTxtb4fcHmAuxEkMlmQinQqq4c50LqSaGoYIidTm+Z9hjIYXOXD8PjjMS2tmzZFhOBA""#
        ),
    ]

    @Test(arguments: vectors)
    func matchesWorkedVector(_ vector: Vector) throws {
        let key = try SpecVectors.signingKey()
        let content = try vector.body.map { CanonicalJSON.encode(try parseJSON($0)) }
        let signedBytes = XMatrixAuthorization.signedBytes(
            method: vector.method, uri: vector.uri, origin: Self.origin, destination: Self.destination, content: content)
        #expect(signedBytes == utf8(vector.signedBytes))
        // The concatenated bytes are exactly the canonical JSON of the object they describe.
        #expect(CanonicalJSON.encode(try JSONValue.parse(signedBytes)) == signedBytes)

        let header = XMatrixAuthorization.header(
            method: vector.method, uri: vector.uri, origin: Self.origin, destination: Self.destination,
            content: content, key: key)
        #expect(header == vector.header)
        let headerFromNames = XMatrixAuthorization.header(
            method: vector.method, uri: vector.uri, origin: try ServerName(Self.origin),
            destination: try ServerName(Self.destination), content: content, key: key)
        #expect(headerFromNames == vector.header)

        let verifyKey = try VerifyKey(base64: SpecVectors.publicKeyBase64)
        #expect(
            XMatrixAuthorization.verify(
                method: vector.method, uri: vector.uri, content: content, destination: Self.destination,
                header: vector.header, key: verifyKey))
        #expect(
            !XMatrixAuthorization.verify(
                method: vector.method, uri: vector.uri + "x", content: content, destination: Self.destination,
                header: vector.header, key: verifyKey))
        #expect(
            !XMatrixAuthorization.verify(
                method: vector.method, uri: vector.uri, content: content, destination: "elsewhere.example",
                header: vector.header, key: verifyKey))
        #expect(
            !XMatrixAuthorization.verify(
                method: vector.method, uri: vector.uri, content: content.map { $0 + [0x20] } ?? utf8("{}"),
                destination: Self.destination, header: vector.header, key: verifyKey))
    }

    @Test func transactionVectorBodyComesFromTransactionBody() {
        let edu = utf8(
            #"{"content":{"room_id":"!room:origin.hs.example.com","typing":true,"user_id":"@alice:origin.hs.example.com"},"edu_type":"m.typing"}"#
        )
        let body = TransactionBody.encode(origin: Self.origin, originServerTS: 1_700_000_000_000, pdus: [], edus: [edu])
        #expect(body == utf8(Self.vectors[1].body!))
    }

    @Test func verifiesHeaderWithoutDestinationFromOldSenders() throws {
        let key = try SpecVectors.signingKey()
        let signed = XMatrixAuthorization.sign(
            method: "GET", uri: "/_matrix/federation/v1/version2", origin: Self.origin,
            destination: Self.destination, content: nil, key: key)
        var old = signed
        old.destination = nil
        let header = old.headerValue
        #expect(header.hasPrefix(#"X-Matrix origin="origin.hs.example.com",key="ed25519:1",sig=""#))
        #expect(
            XMatrixAuthorization.verify(
                method: "GET", uri: "/_matrix/federation/v1/version2", content: nil, destination: Self.destination,
                header: header, key: key.verifyKey))
    }

    @Test func rejectsUnknownAlgorithmAndBadSignatureText() throws {
        let key = try SpecVectors.signingKey()
        var credentials = XMatrixAuthorization.sign(
            method: "GET", uri: "/x", origin: Self.origin, destination: Self.destination, content: nil, key: key)
        #expect(credentials.verify(method: "GET", uri: "/x", content: nil, destination: Self.destination, key: key.verifyKey))
        credentials.keyID = "curve25519:1"
        #expect(!credentials.verify(method: "GET", uri: "/x", content: nil, destination: Self.destination, key: key.verifyKey))
        credentials.keyID = "ed25519:1"
        credentials.signature = "!!"
        #expect(!credentials.verify(method: "GET", uri: "/x", content: nil, destination: Self.destination, key: key.verifyKey))
        #expect(
            !XMatrixAuthorization.verify(
                method: "GET", uri: "/x", content: nil, destination: Self.destination, header: "Bearer x",
                key: key.verifyKey))
    }

    @Test func escapesStringsInSignedBytes() {
        let bytes = XMatrixAuthorization.signedBytes(
            method: "GET", uri: "/a\"b\\c\u{1}日", origin: "o", destination: "d", content: nil)
        #expect(bytes == utf8(#"{"destination":"d","method":"GET","origin":"o","uri":"/a\"b\\c\u0001日"}"#))
    }

    struct Parsed: Sendable, CustomTestStringConvertible {
        let header: String
        let expected: XMatrixAuthorization
        var testDescription: String { header }
    }

    static let parsed: [Parsed] = [
        Parsed(
            header: vectors[0].header,
            expected: XMatrixAuthorization(
                origin: origin, destination: destination, keyID: "ed25519:1",
                signature: "PdMi2vq3dKj+Rig+IWEyhuDfuJkQmTR6Cguya3vy9oeEQS/jFo0+QgkX3g33wh0gNvTk+31P96BTkTb1WJToAw")),
        Parsed(
            header: #"x-matrix   origin=origin.example , destination="dest.example",key=ed25519:a_1,  sig=ab/+cd=="#,
            expected: XMatrixAuthorization(
                origin: "origin.example", destination: "dest.example", keyID: "ed25519:a_1", signature: "ab/+cd==")),
        Parsed(
            header: #"X-MATRIX ORIGIN="o.example",Key="ed25519:1",SIG="s""#,
            expected: XMatrixAuthorization(origin: "o.example", destination: nil, keyID: "ed25519:1", signature: "s")),
        Parsed(
            header: "  X-Matrix\tsig=\"s\"\t,\tkey = \"k:1\" ,origin=\"[::1]:8448\"  ",
            expected: XMatrixAuthorization(origin: "[::1]:8448", destination: nil, keyID: "k:1", signature: "s")),
        Parsed(
            header: #"X-Matrix origin="or\"ig\\in",key="\e\d25519:1",sig="s""#,
            expected: XMatrixAuthorization(origin: #"or"ig\in"#, destination: nil, keyID: "ed25519:1", signature: "s")),
        Parsed(
            header: #"X-Matrix foo=bar,foo="baz, qux",origin="o",,key="k", ,sig="s",extra=1"#,
            expected: XMatrixAuthorization(origin: "o", destination: nil, keyID: "k", signature: "s")),
    ]

    @Test(arguments: parsed)
    func parsesHeader(_ example: Parsed) throws {
        #expect(try XMatrixAuthorization.parse(example.header) == example.expected)
    }

    @Test(arguments: [
        ("Bearer abc", XMatrixAuthorizationError.Reason.notXMatrix(scheme: "Bearer")),
        ("", .notXMatrix(scheme: "")),
        ("X-Matrix", .missingParameter("origin")),
        ("X-Matrix,origin=\"o\"", .unexpectedCharacter(offset: 8)),
        (#"X-Matrix origin="o",key="k""#, .missingParameter("sig")),
        (#"X-Matrix key="k",sig="s""#, .missingParameter("origin")),
        (#"X-Matrix origin="o"#, .unterminatedQuotedString(parameter: "origin")),
        (#"X-Matrix origin="o\"#, .unterminatedQuotedString(parameter: "origin")),
        ("X-Matrix origin", .expectedEquals(parameter: "origin")),
        ("X-Matrix origin=,key=k,sig=s", .missingValue(parameter: "origin")),
        (#"X-Matrix origin="",key=k,sig=s"#, .missingValue(parameter: "origin")),
        (#"X-Matrix origin=o,destination="",key=k,sig=s"#, .missingValue(parameter: "destination")),
        (#"X-Matrix origin="a",ORIGIN="b",key="k",sig="s""#, .duplicateParameter("origin")),
        (#"X-Matrix origin="a" key="k",sig="s""#, .unexpectedCharacter(offset: 20)),
        ("X-Matrix =a", .expectedParameterName(offset: 9)),
        ("X-Matrix origin=\"a\u{1}\",key=k,sig=s", .unexpectedCharacter(offset: 18)),
    ])
    func rejectsMalformedHeader(_ header: String, _ reason: XMatrixAuthorizationError.Reason) {
        #expect(throws: XMatrixAuthorizationError(header: header, reason: reason)) {
            try XMatrixAuthorization.parse(header)
        }
    }

    @Test func errorDescriptionQuotesHeader() {
        let error = XMatrixAuthorizationError(header: "Bearer abc", reason: .notXMatrix(scheme: "Bearer"))
        #expect(error.description == #"Authorization header "Bearer abc": the scheme "Bearer" is not X-Matrix"#)
    }

    @Test func headerValueRoundTripsThroughParser() throws {
        let credentials = XMatrixAuthorization(
            origin: #"we"ird\name"#, destination: "d.example:8448", keyID: "ed25519:a_Zz9", signature: "abc+/")
        #expect(credentials.headerValue == #"X-Matrix origin="we\"ird\\name",destination="d.example:8448",key="ed25519:a_Zz9",sig="abc+/""#)
        #expect(try XMatrixAuthorization.parse(credentials.headerValue) == credentials)
    }
}
