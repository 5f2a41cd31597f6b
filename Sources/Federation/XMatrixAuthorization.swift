/// The `Authorization: X-Matrix …` credentials of a federation request: building and signing them on the
/// sending side, parsing and checking them on the receiving side.
///
/// The signed bytes are assembled from canonical pieces,
/// `{"content":<body>,"destination":"…","method":"…","origin":"…","uri":"…"}`, where the body bytes are
/// used as given, so a large transaction body is never parsed again to sign it. The header is written the
/// way the spec asks senders to write it: one space after the scheme, lower-case names, quoted values, no
/// whitespace around commas, and always with `destination`.
public struct XMatrixAuthorization: Sendable, Equatable {
    /// The sending server's name, before any delegation.
    public var origin: String
    /// The receiving server's name, before any delegation; nil only in headers from old senders.
    public var destination: String?
    /// The signing key's ID, such as `ed25519:a_AbCd`.
    public var keyID: String
    /// The unpadded standard base64 signature, as carried in `sig`.
    public var signature: String

    public init(origin: String, destination: String?, keyID: String, signature: String) {
        self.origin = origin
        self.destination = destination
        self.keyID = keyID
        self.signature = signature
    }

    /// The exact bytes a request signature covers. `content` must be the canonical JSON of the request
    /// body, or nil when the request has no body; `destination` is nil only to check an old sender's header.
    public static func signedBytes(
        method: String, uri: String, origin: String, destination: String?, content: [UInt8]?
    ) -> [UInt8] {
        var buffer: [UInt8] = []
        let contentCount: Int = content?.count ?? 0
        let destinationCount: Int = destination?.utf8.count ?? 0
        let fieldsCount: Int = method.utf8.count + uri.utf8.count + origin.utf8.count
        buffer.reserveCapacity(contentCount + destinationCount + fieldsCount + 72)
        buffer.append(UInt8(ascii: "{"))
        if let content {
            buffer.append(contentsOf: #""content":"#.utf8)
            buffer.append(contentsOf: content)
            buffer.append(UInt8(ascii: ","))
        }
        if let destination {
            buffer.append(contentsOf: #""destination":"#.utf8)
            CanonicalJSON.appendString(destination, to: &buffer)
            buffer.append(UInt8(ascii: ","))
        }
        buffer.append(contentsOf: #""method":"#.utf8)
        CanonicalJSON.appendString(method, to: &buffer)
        buffer.append(contentsOf: #","origin":"#.utf8)
        CanonicalJSON.appendString(origin, to: &buffer)
        buffer.append(contentsOf: #","uri":"#.utf8)
        CanonicalJSON.appendString(uri, to: &buffer)
        buffer.append(UInt8(ascii: "}"))
        return buffer
    }

    /// Signs a request and returns its credentials.
    ///
    /// `uri` is the request target exactly as it goes on the request line (path and query, already
    /// percent-encoded); `content` is the canonical JSON body, or nil when there is no body.
    public static func sign(
        method: String, uri: String, origin: String, destination: String, content: [UInt8]?, key: SigningKey
    ) -> XMatrixAuthorization {
        let bytes = signedBytes(method: method, uri: uri, origin: origin, destination: destination, content: content)
        return XMatrixAuthorization(
            origin: origin, destination: destination, keyID: key.keyID,
            signature: Base64.encodeUnpadded(key.sign(bytes)))
    }

    /// The `Authorization` header value for a request; see `sign` for the parameters.
    public static func header(
        method: String, uri: String, origin: String, destination: String, content: [UInt8]?, key: SigningKey
    ) -> String {
        sign(method: method, uri: uri, origin: origin, destination: destination, content: content, key: key)
            .headerValue
    }

    /// The `Authorization` header value for a request between two parsed server names.
    public static func header(
        method: String, uri: String, origin: ServerName, destination: ServerName, content: [UInt8]?,
        key: SigningKey
    ) -> String {
        header(
            method: method, uri: uri, origin: origin.description, destination: destination.description,
            content: content, key: key)
    }

    /// The credentials as a header value: `X-Matrix origin="…",destination="…",key="…",sig="…"`.
    public var headerValue: String {
        var text = "X-Matrix origin=" + Self.quoted(origin)
        if let destination {
            text += ",destination=" + Self.quoted(destination)
        }
        text += ",key=" + Self.quoted(keyID) + ",sig=" + Self.quoted(signature)
        return text
    }

    private static func quoted(_ value: String) -> String {
        guard value.utf8.contains(where: { $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) else {
            return "\"\(value)\""
        }
        var escaped = "\""
        for character in value.unicodeScalars {
            if character == "\"" || character == "\\" { escaped.unicodeScalars.append("\\") }
            escaped.unicodeScalars.append(character)
        }
        return escaped + "\""
    }

    /// True when these credentials are a valid signature by `key` over the request. `destination` is the
    /// receiver's own server name: a header naming another destination fails, and a header without one
    /// (old senders) is checked against it.
    public func verify(method: String, uri: String, content: [UInt8]?, destination: String, key: VerifyKey) -> Bool {
        if let claimed = self.destination, !claimed.utf8.elementsEqual(destination.utf8) { return false }
        guard keyID.utf8.starts(with: "\(SigningKey.algorithm):".utf8),
            let signature = Base64.decode(signature)
        else { return false }
        let bytes = Self.signedBytes(
            method: method, uri: uri, origin: origin, destination: destination, content: content)
        return key.verify(signature: signature, message: bytes)
    }

    /// Parses `header` and checks it as `verify` does; false also when the header does not parse.
    public static func verify(
        method: String, uri: String, content: [UInt8]?, destination: String, header: String, key: VerifyKey
    ) -> Bool {
        guard let credentials = try? parse(header) else { return false }
        return credentials.verify(method: method, uri: uri, content: content, destination: destination, key: key)
    }
}
