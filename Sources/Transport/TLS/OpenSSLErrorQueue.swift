import COpenSSL

/// Reads OpenSSL's per-thread error queue into text for `TLSError` reasons.
enum OpenSSLErrorQueue {
    /// Empties the calling thread's error queue and returns its entries, oldest first, joined by "; ".
    static func drain() -> String? {
        var messages: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            messages.append(describe(code))
        }
        return messages.isEmpty ? nil : messages.joined(separator: "; ")
    }

    /// Like `drain()`, with `fallback` when OpenSSL queued nothing.
    static func drainedReason(or fallback: String) -> String {
        drain() ?? fallback
    }

    private static func describe(_ code: UInt) -> String {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 256) { buffer in
            ERR_error_string_n(code, buffer.baseAddress, buffer.count)
            return String(cString: buffer.baseAddress!)
        }
    }
}

/// Copies `text` into a fresh memory BIO, hands it to `body`, and frees it afterwards.
func withMemoryBIO<Result>(
    containing text: String,
    _ body: (OpaquePointer) throws(TLSError) -> Result
) throws(TLSError) -> Result {
    guard let bio = BIO_new(BIO_s_mem()) else {
        throw .setupFailed(operation: "BIO_new", reason: OpenSSLErrorQueue.drainedReason(or: "out of memory"))
    }
    defer { BIO_free(bio) }
    var text = text
    let written = text.withUTF8 { bytes in
        BIO_write(bio, bytes.baseAddress, Int32(clamping: bytes.count))
    }
    guard written == text.utf8.count || text.isEmpty else {
        throw .setupFailed(operation: "BIO_write", reason: OpenSSLErrorQueue.drainedReason(or: "short write"))
    }
    return try body(bio)
}
