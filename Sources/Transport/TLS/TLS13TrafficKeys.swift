import COpenSSL
import Federation

/// The TLS 1.3 cipher suites (RFC 8446 §B.4) whose records `TLS13RecordLayer` protects itself.
enum TLS13CipherSuite: Sendable {
    case aes128GCMSHA256
    case aes256GCMSHA384
    case chacha20Poly1305SHA256

    /// The suite with this IANA identifier (what `SSL_CIPHER_get_protocol_id` returns), if it is one of the three.
    init?(protocolID: UInt16) {
        switch protocolID {
        case 0x1301: self = .aes128GCMSHA256
        case 0x1302: self = .aes256GCMSHA384
        case 0x1303: self = .chacha20Poly1305SHA256
        default: return nil
        }
    }

    var keyLength: Int {
        switch self {
        case .aes128GCMSHA256: return 16
        case .aes256GCMSHA384, .chacha20Poly1305SHA256: return 32
        }
    }

    var hashLength: Int {
        switch self {
        case .aes128GCMSHA256, .chacha20Poly1305SHA256: return 32
        case .aes256GCMSHA384: return 48
        }
    }

    /// The AEAD, fetched from OpenSSL's provider once per process rather than at each record.
    var cipher: OpaquePointer? {
        switch self {
        case .aes128GCMSHA256: return fetchedAEADs.aes128GCM
        case .aes256GCMSHA384: return fetchedAEADs.aes256GCM
        case .chacha20Poly1305SHA256: return fetchedAEADs.chacha20Poly1305
        }
    }

    fileprivate var digest: OpaquePointer? {
        switch self {
        case .aes128GCMSHA256, .chacha20Poly1305SHA256: return EVP_sha256()
        case .aes256GCMSHA384: return EVP_sha384()
        }
    }
}

/// OpenSSL's cipher objects are immutable once fetched and safe to share between threads.
private struct FetchedAEADs: @unchecked Sendable {
    let aes128GCM = EVP_CIPHER_fetch(nil, "AES-128-GCM", nil)
    let aes256GCM = EVP_CIPHER_fetch(nil, "AES-256-GCM", nil)
    let chacha20Poly1305 = EVP_CIPHER_fetch(nil, "ChaCha20-Poly1305", nil)
}

private let fetchedAEADs = FetchedAEADs()

/// One direction's traffic keys (RFC 8446 §7.3): the traffic secret, the key and IV derived
/// from it, and the sequence number of the next record, which makes each record's nonce.
struct TLS13TrafficKeys {
    let suite: TLS13CipherSuite
    private var secret: [UInt8]
    private(set) var key: [UInt8]
    private var iv: [UInt8]
    /// The sequence number of the next record protected or opened with these keys.
    private(set) var sequenceNumber: UInt64

    init(suite: TLS13CipherSuite, secret: [UInt8], sequenceNumber: UInt64) throws(TLSError) {
        guard secret.count == suite.hashLength else {
            throw .setupFailed(
                operation: "TLS 1.3 traffic keys",
                reason: "a traffic secret of \(secret.count) bytes, where the suite's hash has \(suite.hashLength)")
        }
        self.suite = suite
        self.secret = secret
        self.key = try Self.expandLabel(secret: secret, label: "key", length: suite.keyLength, suite: suite)
        self.iv = try Self.expandLabel(secret: secret, label: "iv", length: 12, suite: suite)
        self.sequenceNumber = sequenceNumber
    }

    /// Forgets the secrets; the value is not used after this.
    mutating func wipe() {
        Federation.wipe(&secret)
        Federation.wipe(&key)
        Federation.wipe(&iv)
    }

    /// The keys after a KeyUpdate (RFC 8446 §7.2): the next generation's secret, its key and IV,
    /// and sequence numbers from 0 again.
    mutating func update() throws(TLSError) {
        var next = try TLS13TrafficKeys(
            suite: suite,
            secret: Self.expandLabel(secret: secret, label: "traffic upd", length: suite.hashLength, suite: suite),
            sequenceNumber: 0)
        swap(&self, &next)
        next.wipe()
    }

    /// The nonce of the next record (the IV with the sequence number XORed into its last eight
    /// bytes, RFC 8446 §5.3), moving the sequence number on.
    mutating func nextNonce() -> [UInt8] {
        var nonce = iv
        for byteIndex in 0..<8 {
            nonce[nonce.count - 1 - byteIndex] ^= UInt8(truncatingIfNeeded: sequenceNumber >> (8 * UInt64(byteIndex)))
        }
        sequenceNumber &+= 1
        return nonce
    }

    /// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context, for lengths up to the hash's,
    /// which HKDF-Expand (RFC 5869 §2.3) makes from one HMAC block.
    static func expandLabel(secret: [UInt8], label: String, length: Int, suite: TLS13CipherSuite) throws(TLSError)
        -> [UInt8]
    {
        precondition(length <= suite.hashLength, "HKDF-Expand-Label here makes at most one hash block")
        let fullLabel = Array("tls13 \(label)".utf8)
        var info: [UInt8] = [UInt8(length >> 8), UInt8(length & 0xFF), UInt8(fullLabel.count)]
        info += fullLabel
        info.append(0)  // the empty context
        info.append(1)  // HKDF-Expand's block counter
        var block = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var blockLength: UInt32 = 0
        let made = secret.withUnsafeBytes { secretBytes in
            info.withUnsafeBytes { infoBytes in
                block.withUnsafeMutableBytes { output in
                    HMAC(
                        suite.digest, secretBytes.baseAddress, Int32(secretBytes.count),
                        infoBytes.baseAddress?.assumingMemoryBound(to: UInt8.self), infoBytes.count,
                        output.baseAddress?.assumingMemoryBound(to: UInt8.self), &blockLength)
                }
            }
        }
        guard made != nil, Int(blockLength) >= length else {
            throw .setupFailed(operation: "HKDF-Expand-Label", reason: OpenSSLErrorQueue.drainedReason(or: "HMAC failed"))
        }
        let expanded = Array(block.prefix(length))
        Federation.wipe(&block)
        return expanded
    }
}
