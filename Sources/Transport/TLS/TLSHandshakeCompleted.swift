/// The user inbound event `OpenSSLHandler` fires once the handshake has succeeded and the peer was verified.
public struct TLSHandshakeCompleted: Sendable, Hashable {
    /// The ALPN protocol both sides agreed on, or nil when the peer did not negotiate one.
    public var negotiatedProtocol: String?
    /// Whether an earlier session was resumed, which skips the certificate exchange and its CPU cost.
    public var sessionReused: Bool
    /// The protocol version in use, as OpenSSL names it ("TLSv1.3").
    public var protocolVersion: String

    public init(negotiatedProtocol: String?, sessionReused: Bool, protocolVersion: String) {
        self.negotiatedProtocol = negotiatedProtocol
        self.sessionReused = sessionReused
        self.protocolVersion = protocolVersion
    }
}
