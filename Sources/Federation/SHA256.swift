import COpenSSL

/// SHA-256 through OpenSSL, for event content hashes and reference hashes.
public enum SHA256 {
    /// The digest size in bytes.
    public static let digestCount = 32

    /// The 32-byte SHA-256 digest of `bytes`.
    public static func hash(_ bytes: some Collection<UInt8>) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: digestCount)
        let status = bytes.withNonNullBytes { input, count in
            digest.withUnsafeMutableBufferPointer { output in
                var length: UInt32 = 0
                return EVP_Digest(input, count, output.baseAddress, &length, EVP_sha256(), nil)
            }
        }
        // EVP_Digest with a built-in digest fails only when memory allocation fails.
        precondition(status == 1, "SHA-256 failed: \(lastOpenSSLErrorMessage())")
        return digest
    }
}
