/// The spec's "Signing JSON" algorithm: sign and check signatures on JSON objects such as server key
/// responses and events.
///
/// The signed bytes are the canonical JSON of the object without its `signatures` and `unsigned` members,
/// so intermediaries may add to either without breaking a signature.
public enum SignedJSON {
    /// The bytes a signature on `object` covers: its canonical JSON without `signatures` and `unsigned`.
    public static func signedBytes(of object: [String: JSONValue]) -> [UInt8] {
        var stripped = object
        stripped.removeValue(forKey: "signatures")
        stripped.removeValue(forKey: "unsigned")
        return CanonicalJSON.encode(.object(stripped))
    }

    /// Returns `object` with `key`'s signature added at `signatures[entity][key.keyID]`, keeping every other
    /// signature and `unsigned`.
    ///
    /// `object` must be a JSON object; signing anything else is a programming error and traps. A
    /// `signatures` member (or its `entity` entry) that is not an object is replaced.
    public static func sign(_ object: JSONValue, entity: String, key: SigningKey) -> JSONValue {
        guard case .object(var members) = object else {
            preconditionFailure("SignedJSON.sign needs a JSON object, got \(object)")
        }
        let signature = Base64.encodeUnpadded(key.sign(signedBytes(of: members)))
        var signatures = members["signatures"]?.objectValue ?? [:]
        var entitySignatures = signatures[entity]?.objectValue ?? [:]
        entitySignatures[key.keyID] = .string(signature)
        signatures[entity] = .object(entitySignatures)
        members["signatures"] = .object(signatures)
        return .object(members)
    }

    /// True when `object` carries a valid signature by `key` at `signatures[entity][keyID]`.
    ///
    /// Fails for a non-object, a missing or non-string signature, bad base64, a key ID whose algorithm is
    /// not `ed25519`, or a signature that does not match.
    public static func verify(_ object: JSONValue, entity: String, keyID: String, key: VerifyKey) -> Bool {
        guard case .object(let members) = object,
            keyID.utf8.starts(with: "\(SigningKey.algorithm):".utf8),
            let encoded = members["signatures"]?[entity]?[keyID]?.stringValue,
            let signature = Base64.decode(encoded)
        else { return false }
        return key.verify(signature: signature, message: signedBytes(of: members))
    }
}
