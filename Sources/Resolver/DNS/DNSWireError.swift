/// Why a DNS message was rejected: it is malformed, or it does not answer the query sent.
///
/// Decoding never traps on hostile input; every bounds violation ends up here, with the byte
/// offset where the rule was broken.
public enum DNSWireError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The bytes break the DNS message format at `offset`.
    case malformed(offset: Int, reason: String)
    /// The message is a query (QR bit clear), not a response.
    case notAResponse
    /// The response's ID is not the query's: a stray or spoofed datagram.
    case idMismatch(expected: UInt16, received: UInt16)
    /// The response's question is not the query's: a stray or spoofed datagram.
    case questionMismatch(expected: String, received: String)

    /// True when the message may simply belong to someone else (wrong ID or question), so a
    /// UDP client should keep waiting for the real answer instead of giving up.
    public var isMismatch: Bool {
        switch self {
        case .idMismatch, .questionMismatch, .notAResponse: true
        case .malformed: false
        }
    }

    public var description: String {
        switch self {
        case .malformed(let offset, let reason):
            "malformed DNS message at byte \(offset): \(reason)"
        case .notAResponse:
            "DNS message is not a response (QR bit clear)"
        case .idMismatch(let expected, let received):
            "DNS response has ID \(received), the query had \(expected)"
        case .questionMismatch(let expected, let received):
            "DNS response answers \"\(received)\", the query asked \"\(expected)\""
        }
    }
}
