/// A failure to set up or run a TLS session; each case names the input or peer involved and what went wrong.
///
/// Reasons that come from OpenSSL are its own error strings (`ERR_error_string_n`,
/// `X509_verify_cert_error_string`), so a log line says exactly which check refused the peer.
public enum TLSError: Error, Sendable, Hashable, CustomStringConvertible {
    /// OpenSSL could not create or configure a context or connection object.
    case setupFailed(operation: String, reason: String)
    /// The CA file given for peer verification could not be loaded.
    case unreadableCAFile(path: String, reason: String)
    /// The PEM certificate chain given to a server context is empty or malformed.
    case invalidCertificateChain(reason: String)
    /// The PEM private key given to a server context is malformed or does not match the certificate.
    case invalidPrivateKey(reason: String)
    /// The peer identity cannot be checked as given (for example an IP address that does not parse).
    case invalidPeer(peer: String, reason: String)
    /// The peer's certificate chain did not verify against the trusted roots or the expected name.
    case certificateVerificationFailed(peer: String, reason: String)
    /// The handshake failed for a reason other than certificate verification.
    case handshakeFailed(peer: String, reason: String)
    /// The established session broke: a record failed to decrypt or the peer sent a fatal alert.
    case protocolFailure(peer: String, reason: String)
    /// The peer closed the TCP connection without sending close_notify, so the data read may be truncated.
    case uncleanShutdown(peer: String)

    public var description: String {
        switch self {
        case .setupFailed(let operation, let reason):
            return "TLS setup failed in \(operation): \(reason)"
        case .unreadableCAFile(let path, let reason):
            return "CA file \"\(path)\" could not be loaded: \(reason)"
        case .invalidCertificateChain(let reason):
            return "certificate chain PEM is not usable: \(reason)"
        case .invalidPrivateKey(let reason):
            return "private key PEM is not usable: \(reason)"
        case .invalidPeer(let peer, let reason):
            return "TLS peer \"\(peer)\" cannot be verified: \(reason)"
        case .certificateVerificationFailed(let peer, let reason):
            return "certificate verification failed for \"\(peer)\": \(reason)"
        case .handshakeFailed(let peer, let reason):
            return "TLS handshake with \"\(peer)\" failed: \(reason)"
        case .protocolFailure(let peer, let reason):
            return "TLS session with \"\(peer)\" failed: \(reason)"
        case .uncleanShutdown(let peer):
            return "TLS peer \"\(peer)\" closed the connection without close_notify"
        }
    }
}
