import COpenSSL
import Glibc

/// A throwaway certificate authority for tests, demos and benchmarks, built with OpenSSL's C API.
///
/// The CA has a fresh EC P-256 key and a self-signed X.509v3 certificate (critical
/// basicConstraints CA:TRUE, keyUsage keyCertSign and cRLSign). It issues P-256 server
/// certificates for DNS names and IP addresses with validity windows relative to now, so a
/// test can ask for one that is already expired or not yet valid. Nothing is written to disk
/// unless asked; the keys live only as long as the process.
public final class TestCertificateAuthority: @unchecked Sendable {
    /// The CA certificate, PEM encoded, for a client's trust store.
    public let caCertificatePEM: String

    // Only read after init (X509_sign and friends do not modify the issuer), which makes sharing safe.
    private let caKey: OpaquePointer
    private let caCertificate: OpaquePointer

    /// Creates a CA whose certificate is valid from an hour ago for ten years.
    public init(commonName: String = "Southbridge Test CA") throws(CertificateGenerationError) {
        let key = try Self.generateKey()
        let certificate: OpaquePointer
        do throws(CertificateGenerationError) {
            certificate = try Self.makeCertificate(
                subjectCommonName: commonName,
                publicKey: key,
                issuer: nil,
                signingKey: key,
                notBefore: .seconds(-3600),
                notAfter: .seconds(10 * 365 * 86_400),
                extensions: [
                    (NID_basic_constraints, "critical,CA:TRUE"),
                    (NID_key_usage, "critical,keyCertSign,cRLSign"),
                    (NID_subject_key_identifier, "hash"),
                ])
            caCertificatePEM = try Self.pem(of: certificate)
        } catch {
            EVP_PKEY_free(key)
            throw error
        }
        caKey = key
        caCertificate = certificate
    }

    deinit {
        X509_free(caCertificate)
        EVP_PKEY_free(caKey)
    }

    /// Issues a server certificate signed by this CA.
    ///
    /// - Parameters:
    ///   - dnsNames: DNS subjectAltNames; the first also becomes the subject common name.
    ///   - ipAddresses: IP subjectAltNames, IPv4 or IPv6 text.
    ///   - notBefore: start of validity, relative to now (negative is in the past).
    ///   - notAfter: end of validity, relative to now; a negative value makes an expired certificate.
    public func issue(
        dnsNames: [String] = [],
        ipAddresses: [String] = [],
        notBefore: Duration = .seconds(-3600),
        notAfter: Duration = .seconds(86_400)
    ) throws(CertificateGenerationError) -> (certificatePEM: String, privateKeyPEM: String) {
        try Self.issueLeaf(
            dnsNames: dnsNames, ipAddresses: ipAddresses, notBefore: notBefore, notAfter: notAfter,
            issuer: (caCertificate, caKey))
    }

    /// Makes a server certificate that signs itself, which no client trusting only real CAs accepts.
    public static func selfSigned(
        dnsNames: [String] = [],
        ipAddresses: [String] = [],
        notBefore: Duration = .seconds(-3600),
        notAfter: Duration = .seconds(86_400)
    ) throws(CertificateGenerationError) -> (certificatePEM: String, privateKeyPEM: String) {
        try issueLeaf(
            dnsNames: dnsNames, ipAddresses: ipAddresses, notBefore: notBefore, notAfter: notAfter, issuer: nil)
    }

    /// Writes `caCertificatePEM` to `path`, replacing any file there.
    public func writeCACertificate(to path: String) throws(CertificateGenerationError) {
        try Self.write(caCertificatePEM, to: path)
    }

    /// Writes `text` to `path` (mode 0600, replacing any file there), for handing PEM files to other programs.
    public static func write(_ text: String, to path: String) throws(CertificateGenerationError) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw .fileWriteFailed(path: path, reason: String(cString: strerror(errno)))
        }
        defer { close(descriptor) }
        var text = text
        let complete = text.withUTF8 { bytes -> Bool in
            var offset = 0
            while offset < bytes.count {
                let written = Glibc.write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                offset += written
            }
            return true
        }
        guard complete else {
            throw .fileWriteFailed(path: path, reason: String(cString: strerror(errno)))
        }
    }

    private static func issueLeaf(
        dnsNames: [String],
        ipAddresses: [String],
        notBefore: Duration,
        notAfter: Duration,
        issuer: (certificate: OpaquePointer, key: OpaquePointer)?
    ) throws(CertificateGenerationError) -> (certificatePEM: String, privateKeyPEM: String) {
        guard !dnsNames.isEmpty || !ipAddresses.isEmpty else {
            throw .invalidRequest(reason: "a server certificate needs at least one DNS name or IP address")
        }
        let alternativeNames = (dnsNames.map { "DNS:" + $0 } + ipAddresses.map { "IP:" + $0 }).joined(separator: ",")
        var extensions: [(Int32, String)] = [
            (NID_basic_constraints, "critical,CA:FALSE"),
            (NID_ext_key_usage, "serverAuth,clientAuth"),
            (NID_subject_alt_name, alternativeNames),
        ]
        if issuer != nil {
            // A self-signed leaf carries no keyUsage, so OpenSSL recognises it as self-signed
            // and reports exactly that instead of a missing issuer.
            extensions.insert((NID_key_usage, "critical,digitalSignature"), at: 1)
            extensions.append((NID_authority_key_identifier, "keyid"))
        }
        let key = try generateKey()
        defer { EVP_PKEY_free(key) }
        let certificate = try makeCertificate(
            subjectCommonName: dnsNames.first ?? ipAddresses[0],
            publicKey: key,
            issuer: issuer?.certificate,
            signingKey: issuer?.key ?? key,
            notBefore: notBefore,
            notAfter: notAfter,
            extensions: extensions)
        defer { X509_free(certificate) }
        return (try pem(of: certificate), try pem(ofPrivateKey: key))
    }

    private static func generateKey() throws(CertificateGenerationError) -> OpaquePointer {
        ERR_clear_error()
        guard let context = EVP_PKEY_CTX_new_from_name(nil, "EC", nil) else {
            throw .openSSL(operation: "EVP_PKEY_CTX_new_from_name(EC)", reason: drainErrors())
        }
        defer { EVP_PKEY_CTX_free(context) }
        var key: OpaquePointer?
        guard EVP_PKEY_keygen_init(context) == 1,
            EVP_PKEY_CTX_set_group_name(context, "P-256") == 1,
            EVP_PKEY_keygen(context, &key) == 1,
            let key
        else {
            throw .openSSL(operation: "EVP_PKEY_keygen(P-256)", reason: drainErrors())
        }
        return key
    }

    /// Builds and signs a certificate; `issuer` nil means self-signed (issuer name = subject name).
    private static func makeCertificate(
        subjectCommonName: String,
        publicKey: OpaquePointer,
        issuer: OpaquePointer?,
        signingKey: OpaquePointer,
        notBefore: Duration,
        notAfter: Duration,
        extensions: [(Int32, String)]
    ) throws(CertificateGenerationError) -> OpaquePointer {
        ERR_clear_error()
        guard let certificate = X509_new() else {
            throw .openSSL(operation: "X509_new", reason: drainErrors())
        }
        do throws(CertificateGenerationError) {
            try check(X509_set_version(certificate, 2), "X509_set_version")
            try setRandomSerial(of: certificate)
            try check(
                X509_gmtime_adj(X509_getm_notBefore(certificate), notBefore.wholeSeconds) != nil ? 1 : 0, "notBefore")
            try check(
                X509_gmtime_adj(X509_getm_notAfter(certificate), notAfter.wholeSeconds) != nil ? 1 : 0, "notAfter")
            try check(X509_set_pubkey(certificate, publicKey), "X509_set_pubkey")

            guard let subject = X509_get_subject_name(certificate) else {
                throw .openSSL(operation: "X509_get_subject_name", reason: drainErrors())
            }
            try check(
                X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, subjectCommonName, -1, -1, 0),
                "X509_NAME_add_entry_by_txt(CN=\(subjectCommonName))")
            try check(
                X509_set_issuer_name(certificate, issuer.map { X509_get_subject_name($0) } ?? subject),
                "X509_set_issuer_name")

            var extensionContext = X509V3_CTX()
            X509V3_set_ctx(&extensionContext, issuer ?? certificate, certificate, nil, nil, 0)
            for (nid, value) in extensions {
                guard let x509Extension = X509V3_EXT_conf_nid(nil, &extensionContext, nid, value) else {
                    throw .openSSL(
                        operation: "extension \(String(cString: OBJ_nid2sn(nid)))=\(value)", reason: drainErrors())
                }
                defer { X509_EXTENSION_free(x509Extension) }
                try check(X509_add_ext(certificate, x509Extension, -1), "X509_add_ext")
            }
            guard X509_sign(certificate, signingKey, EVP_sha256()) > 0 else {
                throw .openSSL(operation: "X509_sign", reason: drainErrors())
            }
        } catch {
            X509_free(certificate)
            throw error
        }
        return certificate
    }

    private static func setRandomSerial(of certificate: OpaquePointer) throws(CertificateGenerationError) {
        guard let serial = BN_new() else {
            throw .openSSL(operation: "BN_new", reason: drainErrors())
        }
        defer { BN_free(serial) }
        // 63 random bits with the top bit clear keep the serial positive, as RFC 5280 requires.
        try check(BN_rand(serial, 63, -1, 0), "BN_rand")
        guard BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(certificate)) != nil else {
            throw .openSSL(operation: "BN_to_ASN1_INTEGER", reason: drainErrors())
        }
    }

    private static func pem(of certificate: OpaquePointer) throws(CertificateGenerationError) -> String {
        try withMemoryBIO { (bio) throws(CertificateGenerationError) in
            try check(PEM_write_bio_X509(bio, certificate), "PEM_write_bio_X509")
        }
    }

    private static func pem(ofPrivateKey key: OpaquePointer) throws(CertificateGenerationError) -> String {
        try withMemoryBIO { (bio) throws(CertificateGenerationError) in
            try check(PEM_write_bio_PrivateKey(bio, key, nil, nil, 0, nil, nil), "PEM_write_bio_PrivateKey")
        }
    }

    /// Runs `body` with an empty memory BIO and returns what it wrote, as text.
    private static func withMemoryBIO(
        _ body: (OpaquePointer) throws(CertificateGenerationError) -> Void
    ) throws(CertificateGenerationError) -> String {
        guard let bio = BIO_new(BIO_s_mem()) else {
            throw .openSSL(operation: "BIO_new", reason: drainErrors())
        }
        defer { BIO_free(bio) }
        try body(bio)
        var data: UnsafeMutablePointer<CChar>?
        let length = southbridge_BIO_get_mem_data(bio, &data)
        guard let data, length > 0 else {
            throw .openSSL(operation: "BIO_get_mem_data", reason: "nothing was written")
        }
        return String(decoding: UnsafeRawBufferPointer(start: data, count: length), as: UTF8.self)
    }

    private static func check(_ result: Int32, _ operation: String) throws(CertificateGenerationError) {
        guard result == 1 else {
            throw .openSSL(operation: operation, reason: drainErrors())
        }
    }

    private static func drainErrors() -> String {
        var messages: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            messages.append(
                withUnsafeTemporaryAllocation(of: CChar.self, capacity: 256) { buffer in
                    ERR_error_string_n(code, buffer.baseAddress, buffer.count)
                    return String(cString: buffer.baseAddress!)
                })
        }
        return messages.isEmpty ? "no detail from OpenSSL" : messages.joined(separator: "; ")
    }
}

/// Why `TestCertificateAuthority` could not make or write a certificate.
public enum CertificateGenerationError: Error, Sendable, Hashable, CustomStringConvertible {
    case openSSL(operation: String, reason: String)
    case invalidRequest(reason: String)
    case fileWriteFailed(path: String, reason: String)

    public var description: String {
        switch self {
        case .openSSL(let operation, let reason):
            return "certificate generation failed in \(operation): \(reason)"
        case .invalidRequest(let reason):
            return "certificate request refused: \(reason)"
        case .fileWriteFailed(let path, let reason):
            return "could not write \"\(path)\": \(reason)"
        }
    }
}

extension Duration {
    fileprivate var wholeSeconds: Int {
        Int(components.seconds)
    }
}
