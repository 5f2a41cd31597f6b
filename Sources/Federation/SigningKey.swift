import COpenSSL

/// This server's Ed25519 signing key: signs request headers, transactions' `X-Matrix` authorisation and
/// JSON objects.
///
/// Signatures are deterministic RFC 8032 Ed25519 (OpenSSL), so they match the spec's test vectors byte for
/// byte. The OpenSSL key object is created once and only read afterwards, which OpenSSL allows from many
/// threads at once; each `sign` call uses its own signing context. The description never shows the seed.
public final class SigningKey: @unchecked Sendable, CustomStringConvertible {
    /// The algorithm part of every key ID this type produces.
    public static let algorithm = "ed25519"
    /// Length of an Ed25519 seed (the RFC 8032 secret key).
    public static let seedCount = 32

    /// The key version, the part of the key ID after `ed25519:`.
    public let version: String
    /// The 32-byte Ed25519 public key.
    public let publicKey: [UInt8]
    private let pkey: OpaquePointer

    /// Builds a key from a 32-byte RFC 8032 seed. `version` must match `[A-Za-z0-9_]+`.
    public init(seed: [UInt8], version: String) throws(SigningKeyError) {
        guard seed.count == SigningKey.seedCount else { throw .seedLength(seed.count) }
        guard SigningKey.isValidVersion(version) else { throw .invalidVersion(version) }
        guard let pkey = seed.withUnsafeBufferPointer({
            EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nil, $0.baseAddress, $0.count)
        }) else {
            throw .openSSL(lastOpenSSLErrorMessage())
        }
        var publicKey = [UInt8](repeating: 0, count: 32)
        var length = publicKey.count
        guard EVP_PKEY_get_raw_public_key(pkey, &publicKey, &length) == 1, length == 32 else {
            EVP_PKEY_free(pkey)
            throw .openSSL(lastOpenSSLErrorMessage())
        }
        self.pkey = pkey
        self.publicKey = publicKey
        self.version = version
    }

    deinit {
        EVP_PKEY_free(pkey)
    }

    /// A new key with a seed from OpenSSL's CSPRNG.
    public static func generate(version: String = SigningKey.randomVersion()) throws(SigningKeyError) -> SigningKey {
        var seed = [UInt8](repeating: 0, count: seedCount)
        defer { wipe(&seed) }
        let status = seed.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32($0.count)) }
        guard status == 1 else { throw .openSSL(lastOpenSSLErrorMessage()) }
        return try SigningKey(seed: seed, version: version)
    }

    /// A version in Synapse's classic style, `a_` followed by four random characters from `[A-Za-z0-9]`.
    public static func randomVersion() -> String {
        let characters = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
        var generator = SystemRandomNumberGenerator()
        return "a_" + String((0..<4).map { _ in characters.randomElement(using: &generator)! })
    }

    /// True when `version` matches `[A-Za-z0-9_]+`, the spec's rule for key versions.
    public static func isValidVersion(_ version: String) -> Bool {
        !version.isEmpty && version.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"):
                true
            default:
                false
            }
        }
    }

    /// The key ID, `ed25519:<version>`.
    public var keyID: String { "\(SigningKey.algorithm):\(version)" }

    /// The public key in unpadded standard base64, as published in `verify_keys`.
    public var publicKeyBase64: String { Base64.encodeUnpadded(publicKey) }

    /// The public half, for checking this key's own signatures.
    public var verifyKey: VerifyKey { VerifyKey(validatedPublicKey: publicKey) }

    public var description: String { "SigningKey(\(keyID), public \(publicKeyBase64))" }

    /// The 64-byte deterministic Ed25519 signature of `message`.
    public func sign(_ message: some Collection<UInt8>) -> [UInt8] {
        var signature = [UInt8](repeating: 0, count: 64)
        let status: Int32 = message.withNonNullBytes { input, count in
            guard let context = EVP_MD_CTX_new() else { return 0 }
            defer { EVP_MD_CTX_free(context) }
            guard EVP_DigestSignInit(context, nil, nil, nil, pkey) == 1 else { return 0 }
            var length = signature.count
            return signature.withUnsafeMutableBufferPointer { output in
                EVP_DigestSign(context, output.baseAddress, &length, input, count)
            }
        }
        // With a valid Ed25519 key, signing fails only when memory allocation fails.
        precondition(status == 1, "Ed25519 signing failed: \(lastOpenSSLErrorMessage())")
        return signature
    }

    /// Gives `body` the 32-byte seed, for writing the key file; the copy is wiped afterwards.
    func withSeed<Result>(_ body: ([UInt8]) -> Result) -> Result {
        var seed = [UInt8](repeating: 0, count: SigningKey.seedCount)
        defer { wipe(&seed) }
        var length = seed.count
        let status = EVP_PKEY_get_raw_private_key(pkey, &seed, &length)
        precondition(status == 1 && length == SigningKey.seedCount, "cannot read back the Ed25519 seed")
        return body(seed)
    }
}

/// Why a signing key could not be made.
public enum SigningKeyError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The seed was not 32 bytes long.
    case seedLength(Int)
    /// The version does not match `[A-Za-z0-9_]+`.
    case invalidVersion(String)
    /// OpenSSL refused; the text is its error message.
    case openSSL(String)

    public var description: String {
        switch self {
        case .seedLength(let count):
            "an Ed25519 seed must be 32 bytes, got \(count)"
        case .invalidVersion(let version):
            "the key version \(String(reflecting: version)) must match [A-Za-z0-9_]+"
        case .openSSL(let message):
            "OpenSSL could not create the Ed25519 key: \(message)"
        }
    }
}
