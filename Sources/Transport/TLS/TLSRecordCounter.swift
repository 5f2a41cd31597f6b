/// Counts the TLS records in a byte stream, read in pieces of any size, from its header lengths
/// alone: how `OpenSSLHandler` knows the sequence number of the next record in each direction
/// when it hands a connection from OpenSSL to `TLS13RecordLayer`.
struct TLSRecordCounter {
    /// Records seen whole.
    private(set) var completeRecords: UInt64 = 0
    /// Bytes at the start of the stream that are not counted (records before the traffic keys in use).
    private var bytesToSkip: Int
    /// Header bytes of the current record seen so far (0 between records).
    private var headerBytesSeen = 0
    private var bodyLength = 0
    /// Body bytes of the current record still to come.
    private var bodyRemaining = 0

    init(skippingFirst bytesToSkip: Int = 0) {
        self.bytesToSkip = bytesToSkip
    }

    /// Whether the bytes seen so far end exactly at the end of a record.
    var isAtRecordBoundary: Bool {
        bytesToSkip == 0 && headerBytesSeen == 0
    }

    mutating func consume(_ bytes: UnsafeRawBufferPointer) {
        var index = min(bytesToSkip, bytes.count)
        bytesToSkip -= index
        while index < bytes.count {
            if headerBytesSeen < TLS13RecordLayer.headerLength {
                // Bytes 3 and 4 of a header are the body's length.
                if headerBytesSeen == 3 {
                    bodyLength = Int(bytes[index]) << 8
                } else if headerBytesSeen == 4 {
                    bodyLength |= Int(bytes[index])
                    bodyRemaining = bodyLength
                }
                headerBytesSeen += 1
                index += 1
            } else {
                let taken = min(bodyRemaining, bytes.count - index)
                bodyRemaining -= taken
                index += taken
            }
            if headerBytesSeen == TLS13RecordLayer.headerLength, bodyRemaining == 0 {
                completeRecords += 1
                headerBytesSeen = 0
            }
        }
    }
}
