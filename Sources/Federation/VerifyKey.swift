import COpenSSL

/// A remote (or our own) Ed25519 public key, as published in `verify_keys`; checks signatures.
///
/// Always holds exactly 32 bytes. Verification never throws: anything malformed is simply "not valid".
public struct VerifyKey: Sendable, Hashable, CustomStringConvertible {
    /// The 32-byte Ed25519 public key.
    public let publicKey: [UInt8]

    /// Wraps a raw 32-byte public key.
    public init(publicKey: [UInt8]) throws(VerifyKeyError) {
        guard publicKey.count == 32 else { throw .publicKeyLength(publicKey.count) }
        self.publicKey = publicKey
    }

    /// Decodes a public key written in (unpadded) standard base64, as in `verify_keys`.
    public init(base64: String) throws(VerifyKeyError) {
        guard let bytes = Base64.decode(base64) else { throw .invalidBase64(base64) }
        try self.init(publicKey: bytes)
    }

    init(validatedPublicKey: [UInt8]) {
        publicKey = validatedPublicKey
    }

    /// The public key in unpadded standard base64.
    public var publicKeyBase64: String { Base64.encodeUnpadded(publicKey) }

    public var description: String { "VerifyKey(\(publicKeyBase64))" }

    /// True when `signature` is a valid Ed25519 signature of `message` by this key.
    public func verify(signature: [UInt8], message: some Collection<UInt8>) -> Bool {
        guard signature.count == 64 else { return false }
        guard let pkey = publicKey.withUnsafeBufferPointer({
            EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nil, $0.baseAddress, $0.count)
        }) else {
            ERR_clear_error()
            return false
        }
        defer { EVP_PKEY_free(pkey) }
        guard let context = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestVerifyInit(context, nil, nil, nil, pkey) == 1 else {
            ERR_clear_error()
            return false
        }
        let status = message.withNonNullBytes { input, count in
            signature.withUnsafeBufferPointer { signature in
                EVP_DigestVerify(context, signature.baseAddress, signature.count, input, count)
            }
        }
        if status != 1 { ERR_clear_error() }
        return status == 1
    }
}

/// Why bytes or text are not an Ed25519 public key.
public enum VerifyKeyError: Error, Sendable, Equatable, CustomStringConvertible {
    case publicKeyLength(Int)
    case invalidBase64(String)

    public var description: String {
        switch self {
        case .publicKeyLength(let count):
            "an Ed25519 public key must be 32 bytes, got \(count)"
        case .invalidBase64(let text):
            "\(text.quotedExcerpt()) is not base64"
        }
    }
}
