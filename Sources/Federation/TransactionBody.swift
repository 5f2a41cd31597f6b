/// Builds the canonical JSON body of `PUT /_matrix/federation/v1/send/{txnId}` from PDUs and EDUs that are
/// already canonical JSON, by concatenation, so no PDU is parsed or re-encoded on the send path.
///
/// The result is exactly `CanonicalJSON.encode` of the same transaction: keys in order `edus`, `origin`,
/// `origin_server_ts`, `pdus`, with `edus` left out when there are none. The bytes can be signed directly
/// as the `content` of the `X-Matrix` request.
public enum TransactionBody {
    /// The most PDUs one transaction may carry (spec; Synapse answers 400 above it).
    public static let maximumPDUCount = 50
    /// The most EDUs one transaction may carry (spec; Synapse answers 400 above it).
    public static let maximumEDUCount = 100

    /// The canonical transaction body. Every element of `pdus` and `edus` must be canonical JSON.
    public static func encode(origin: String, originServerTS: Int64, pdus: [[UInt8]], edus: [[UInt8]]) -> [UInt8] {
        var capacity = 64 + origin.utf8.count + pdus.count + edus.count
        for pdu in pdus { capacity += pdu.count }
        for edu in edus { capacity += edu.count }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(capacity)
        buffer.append(UInt8(ascii: "{"))
        if !edus.isEmpty {
            buffer.append(contentsOf: #""edus":"#.utf8)
            appendArray(edus, to: &buffer)
            buffer.append(UInt8(ascii: ","))
        }
        buffer.append(contentsOf: #""origin":"#.utf8)
        CanonicalJSON.appendString(origin, to: &buffer)
        buffer.append(contentsOf: #","origin_server_ts":"#.utf8)
        CanonicalJSON.appendInteger(originServerTS, to: &buffer)
        buffer.append(contentsOf: #","pdus":"#.utf8)
        appendArray(pdus, to: &buffer)
        buffer.append(UInt8(ascii: "}"))
        return buffer
    }

    private static func appendArray(_ elements: [[UInt8]], to buffer: inout [UInt8]) {
        buffer.append(UInt8(ascii: "["))
        for (position, element) in elements.enumerated() {
            if position > 0 { buffer.append(UInt8(ascii: ",")) }
            buffer.append(contentsOf: element)
        }
        buffer.append(UInt8(ascii: "]"))
    }
}
