import COpenSSL
import NIOCore

/// TLS 1.3's record layer for an established client connection (RFC 8446 §5), with the traffic
/// keys OpenSSL's handshake made, so that an idle keep-alive connection holds a few hundred
/// bytes of TLS state instead of OpenSSL's whole connection object (see `OpenSSLHandler`).
///
/// It protects application data and close_notify, opens the server's records, answers a
/// KeyUpdate (RFC 8446 §4.6.3), updates its own keys every `recordsPerKey` records, and skips
/// session tickets: those a server sends with its first answer were taken by OpenSSL before the
/// handover, and a server that sends its tickets only later is not resumed. Each call sets up
/// its AEAD contexts and frees them before it returns: between calls nothing but the keys and
/// sequence numbers is kept.
final class TLS13RecordLayer {
    /// Why the session cannot go on, with the alert (RFC 8446 §6.2) that tells the peer.
    struct Failure: Error {
        /// The alert to send; nil when the peer's own alert ended the session.
        var alert: UInt8?
        var reason: String

        static func unexpectedMessage(_ reason: String) -> Failure { Failure(alert: 10, reason: reason) }
        static func badRecordMAC(_ reason: String) -> Failure { Failure(alert: 20, reason: reason) }
        static func recordOverflow(_ reason: String) -> Failure { Failure(alert: 22, reason: reason) }
        static func illegalParameter(_ reason: String) -> Failure { Failure(alert: 47, reason: reason) }
        static func decodeError(_ reason: String) -> Failure { Failure(alert: 50, reason: reason) }
        static func internalError(_ reason: String) -> Failure { Failure(alert: 80, reason: reason) }
    }

    /// What one batch of ciphertext from the peer carried.
    struct Received {
        /// The application data, in order; nil when there was none.
        var applicationData: ByteBuffer?
        /// Whether the peer sent close_notify (nothing after it is read).
        var closeNotify = false
        /// Why the session ends, if a record failed: what came before it is still in `applicationData`.
        var failure: Failure?
    }

    enum ContentType {
        static let alert: UInt8 = 21
        static let handshake: UInt8 = 22
        static let applicationData: UInt8 = 23
    }

    private enum HandshakeType {
        static let newSessionTicket: UInt8 = 4
        static let keyUpdate: UInt8 = 24
    }

    static let headerLength = 5
    static let tagLength = 16
    /// The most plaintext one record carries (RFC 8446 §5.1).
    static let maximumPlaintextLength = 1 << 14
    /// The longest record body a peer may send (RFC 8446 §5.2).
    static let maximumCiphertextLength = maximumPlaintextLength + 256
    /// The longest post-handshake message taken; OpenSSL's own limit for a session ticket is 131,338 bytes.
    private static let maximumHandshakeMessageLength = 1 << 18

    private var readKeys: TLS13TrafficKeys
    private var writeKeys: TLS13TrafficKeys
    /// Ciphertext of a record not yet complete; nil between records, so an idle connection holds no buffer.
    private var partialRecord: ByteBuffer?
    /// A post-handshake message split across records.
    private var partialHandshakeMessage: [UInt8] = []
    /// Whether the peer asked for a KeyUpdate that has not been answered yet: the answer goes
    /// before the next application data, once however many requests came meanwhile (RFC 8446 §4.6.3).
    private var keyUpdateOwed = false
    /// How many records this side seals under one key before it updates its keys and asks the
    /// peer to update theirs: RFC 8446 §5.5 allows AES-GCM about 2^24.5 full-size records a key.
    let recordsPerKey: UInt64

    init(readKeys: TLS13TrafficKeys, writeKeys: TLS13TrafficKeys, recordsPerKey: UInt64 = 1 << 24) {
        precondition(recordsPerKey > 0, "a key must protect at least one record")
        self.readKeys = readKeys
        self.writeKeys = writeKeys
        self.recordsPerKey = recordsPerKey
    }

    deinit {
        readKeys.wipe()
        writeKeys.wipe()
    }

    /// Appends `data` to `records` as application-data records of at most 16 KiB each, after
    /// the KeyUpdate the peer asked for, if one is owed.
    func sealApplicationData(_ data: ByteBuffer, into records: inout ByteBuffer) throws(Failure) {
        guard data.readableBytes > 0 else { return }
        if keyUpdateOwed {
            try sealKeyUpdate(requestingOne: false, into: &records)
        }
        var context = try AEADContext(keys: writeKeys, encrypting: true)
        var remaining = data
        while remaining.readableBytes > 0 {
            if writeKeys.sequenceNumber >= recordsPerKey {
                try sealKeyUpdate(requestingOne: true, into: &records)
                context = try AEADContext(keys: writeKeys, encrypting: true)
            }
            let chunk = remaining.readSlice(length: min(remaining.readableBytes, Self.maximumPlaintextLength))!
            try chunk.withUnsafeReadableBytes { bytes in
                Result { () throws(Failure) in
                    try seal(bytes, contentType: ContentType.applicationData, with: context, into: &records)
                }
            }.get()
        }
    }

    /// Appends a KeyUpdate under the current write keys and moves them on: an answer to the
    /// peer's request, or a request of this side's own, which the peer answers in kind.
    private func sealKeyUpdate(requestingOne: Bool, into records: inout ByteBuffer) throws(Failure) {
        try seal(
            [HandshakeType.keyUpdate, 0, 0, 1, requestingOne ? 1 : 0], contentType: ContentType.handshake, into: &records)
        keyUpdateOwed = false
        try updateKeys(&writeKeys)
    }

    /// Appends an alert record: close_notify (0) at warning level, any other description as fatal.
    func sealAlert(_ description: UInt8, into records: inout ByteBuffer) throws(Failure) {
        try seal([description == 0 ? 1 : 2, description], contentType: ContentType.alert, into: &records)
    }

    /// Opens every complete record in `ciphertext`, keeping a trailing partial one for the next
    /// call; stops at the first record that fails, or at close_notify.
    func receive(_ ciphertext: ByteBuffer, allocator: ByteBufferAllocator) -> Received {
        var input: ByteBuffer
        if var partial = partialRecord.take() {
            var more = ciphertext
            partial.writeBuffer(&more)
            input = partial
        } else {
            input = ciphertext
        }
        var received = Received()
        do throws(Failure) {
            received.closeNotify = try openRecords(from: &input, into: &received.applicationData, allocator: allocator)
        } catch {
            received.failure = error
            return received
        }
        if input.readableBytes > 0, !received.closeNotify {
            // Only the partial record's own bytes are kept, not the buffer the read came in.
            var partial = allocator.buffer(capacity: input.readableBytes)
            partial.writeBuffer(&input)
            partialRecord = partial
        }
        return received
    }

    /// Opens the complete records at the front of `input`, appending application data to
    /// `applicationData`; returns whether close_notify came.
    private func openRecords(
        from input: inout ByteBuffer, into applicationData: inout ByteBuffer?, allocator: ByteBufferAllocator
    ) throws(Failure) -> Bool {
        var context: AEADContext?
        while let header = input.getBytes(at: input.readerIndex, length: Self.headerLength) {
            let length = Int(header[3]) << 8 | Int(header[4])
            guard header[0] == ContentType.applicationData else {
                throw .unexpectedMessage("a record of content type \(header[0]) after the handshake")
            }
            guard length <= Self.maximumCiphertextLength else {
                throw .recordOverflow("a record of \(length) bytes, more than TLS 1.3 allows")
            }
            guard input.readableBytes >= Self.headerLength + length else { return false }
            guard length >= Self.tagLength + 1 else {
                throw .decodeError("a protected record of \(length) bytes, too short for its tag")
            }
            if context == nil {
                context = try AEADContext(keys: readKeys, encrypting: false)
            }
            input.moveReaderIndex(forwardBy: Self.headerLength)
            // Taken out of the optional so that appending to it does not copy what it holds.
            var plaintext = applicationData.take() ?? allocator.buffer(capacity: length)
            let delivered = plaintext.writerIndex
            let opened = input.withUnsafeReadableBytes { body in
                open(
                    UnsafeRawBufferPointer(rebasing: body[0..<length]), header: header, with: context!,
                    appendingTo: &plaintext)
            }
            input.moveReaderIndex(forwardBy: length)
            // Anything but application data is taken off the end of the plaintext; so is this
            // record's application data if it may not be delivered.
            var content: [UInt8] = []
            let contentType: (type: UInt8, length: Int)
            switch opened {
            case .success(let opened) where opened.type == ContentType.applicationData
                && partialHandshakeMessage.isEmpty:
                contentType = opened
            case .success(let opened):
                contentType = opened
                content = plaintext.getBytes(at: plaintext.writerIndex - opened.length, length: opened.length)!
                plaintext.moveWriterIndex(to: delivered)
            case .failure:
                plaintext.moveWriterIndex(to: delivered)
                contentType = (0, 0)
            }
            // What came before this record stays, even when this one fails.
            if plaintext.readableBytes > 0 {
                applicationData = plaintext
            }
            if case .failure(let failure) = opened {
                throw failure
            }
            switch contentType.type {
            case ContentType.applicationData:
                guard partialHandshakeMessage.isEmpty else {
                    throw .unexpectedMessage("application data inside a split handshake message")
                }
            case ContentType.handshake:
                guard !content.isEmpty else { throw .unexpectedMessage("an empty handshake record") }
                if try takeHandshakeMessages(content) {
                    // The read keys changed; the next record needs a context for them.
                    context = nil
                }
            case ContentType.alert:
                guard partialHandshakeMessage.isEmpty else {
                    throw .unexpectedMessage("an alert inside a split handshake message")
                }
                guard content.count == 2 else { throw .decodeError("an alert of \(content.count) bytes") }
                if content[1] == 0 {
                    return true
                }
                // user_canceled is a warning that a close_notify follows.
                if content[1] == 90, content[0] == 1 { continue }
                throw Failure(alert: nil, reason: "the peer sent alert \(content[1])\(Self.alertName(content[1]))")
            default:
                throw .unexpectedMessage("a protected record of content type \(contentType.type)")
            }
        }
        return false
    }

    /// Handles complete post-handshake messages; returns whether the read keys changed.
    private func takeHandshakeMessages(_ content: [UInt8]) throws(Failure) -> Bool {
        partialHandshakeMessage += content
        var readKeysChanged = false
        while partialHandshakeMessage.count >= 4 {
            let bytes = partialHandshakeMessage
            let length = Int(bytes[1]) << 16 | Int(bytes[2]) << 8 | Int(bytes[3])
            guard length <= Self.maximumHandshakeMessageLength else {
                throw .decodeError("a post-handshake message of \(length) bytes")
            }
            guard bytes.count >= 4 + length else { return readKeysChanged }
            switch bytes[0] {
            case HandshakeType.newSessionTicket:
                break
            case HandshakeType.keyUpdate:
                guard length == 1 else { throw .decodeError("a KeyUpdate of \(length) bytes") }
                guard bytes[4] <= 1 else { throw .illegalParameter("a KeyUpdate with request_update \(bytes[4])") }
                // A key change ends its record (RFC 8446 §5.1).
                guard bytes.count == 5 else { throw .unexpectedMessage("data after a KeyUpdate in its record") }
                if bytes[4] == 1 {
                    keyUpdateOwed = true
                }
                try updateKeys(&readKeys)
                readKeysChanged = true
            default:
                throw .unexpectedMessage("handshake message \(bytes[0]) after the handshake")
            }
            partialHandshakeMessage.removeFirst(4 + length)
        }
        return readKeysChanged
    }

    private func updateKeys(_ keys: inout TLS13TrafficKeys) throws(Failure) {
        do {
            try keys.update()
        } catch {
            throw .internalError("the next traffic keys: \(error)")
        }
    }

    /// Appends one protected record of a short `content` with a context of its own.
    private func seal(_ content: [UInt8], contentType: UInt8, into records: inout ByteBuffer) throws(Failure) {
        let context = try AEADContext(keys: writeKeys, encrypting: true)
        try content.withUnsafeBytes { bytes in
            Result { () throws(Failure) in try seal(bytes, contentType: contentType, with: context, into: &records) }
        }.get()
    }

    /// Appends one protected record of `content`.
    private func seal(
        _ content: UnsafeRawBufferPointer, contentType: UInt8, with context: AEADContext, into records: inout ByteBuffer
    ) throws(Failure) {
        guard writeKeys.sequenceNumber < UInt64.max else {
            throw .internalError("the write sequence numbers are used up")
        }
        let length = content.count + 1 + Self.tagLength
        let header: [UInt8] = [ContentType.applicationData, 3, 3, UInt8(length >> 8), UInt8(length & 0xFF)]
        let nonce = writeKeys.nextNonce()
        var sealed = false
        let start = records.writerIndex
        records.writeBytes(header)
        records.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { output in
            let out = output.baseAddress!.assumingMemoryBound(to: UInt8.self)
            var type = contentType
            var written: Int32 = 0
            var total = 0
            guard context.start(nonce: nonce), context.addAuthenticatedData(header) else { return 0 }
            if content.count > 0 {
                guard
                    EVP_CipherUpdate(
                        context.pointer, out, &written, content.baseAddress!.assumingMemoryBound(to: UInt8.self),
                        Int32(content.count)) == 1
                else { return 0 }
                total += Int(written)
            }
            guard EVP_CipherUpdate(context.pointer, out + total, &written, &type, 1) == 1 else { return 0 }
            total += Int(written)
            guard EVP_CipherFinal_ex(context.pointer, out + total, &written) == 1 else { return 0 }
            total += Int(written)
            guard total == length - Self.tagLength,
                EVP_CIPHER_CTX_ctrl(context.pointer, EVP_CTRL_AEAD_GET_TAG, Int32(Self.tagLength), out + total) == 1
            else { return 0 }
            sealed = true
            return length
        }
        guard sealed else {
            records.moveWriterIndex(to: start)
            throw .internalError(OpenSSLErrorQueue.drainedReason(or: "the AEAD failed to seal a record"))
        }
    }

    /// Decrypts one record's `body` onto `plaintext` and strips its padding and content type;
    /// returns the content type and how many of the appended bytes are its content.
    private func open(
        _ body: UnsafeRawBufferPointer, header: [UInt8], with context: AEADContext, appendingTo plaintext: inout ByteBuffer
    ) -> Result<(type: UInt8, length: Int), Failure> {
        let ciphertextLength = body.count - Self.tagLength
        guard ciphertextLength <= Self.maximumPlaintextLength + 1 else {
            return .failure(.recordOverflow("a record of \(ciphertextLength) bytes of plaintext"))
        }
        guard readKeys.sequenceNumber < UInt64.max else {
            return .failure(.internalError("the read sequence numbers are used up"))
        }
        var tag = Array(body[ciphertextLength...])
        let nonce = readKeys.nextNonce()
        var opened = false
        plaintext.writeWithUnsafeMutableBytes(minimumWritableBytes: ciphertextLength) { output in
            let out = output.baseAddress!.assumingMemoryBound(to: UInt8.self)
            var written: Int32 = 0
            guard context.start(nonce: nonce), context.addAuthenticatedData(header),
                EVP_CipherUpdate(
                    context.pointer, out, &written, body.baseAddress!.assumingMemoryBound(to: UInt8.self),
                    Int32(ciphertextLength)) == 1,
                Int(written) == ciphertextLength,
                EVP_CIPHER_CTX_ctrl(context.pointer, EVP_CTRL_AEAD_SET_TAG, Int32(Self.tagLength), &tag) == 1,
                EVP_CipherFinal_ex(context.pointer, out + Int(written), &written) == 1
            else { return 0 }
            opened = true
            return ciphertextLength
        }
        guard opened else {
            ERR_clear_error()
            return .failure(
                .badRecordMAC("a record failed to authenticate (sequence number \(readKeys.sequenceNumber - 1))"))
        }
        // The inner plaintext is content, its type, then zeros (RFC 8446 §5.2).
        var end = plaintext.writerIndex
        let start = end - ciphertextLength
        while end > start, plaintext.getInteger(at: end - 1, as: UInt8.self) == 0 {
            end -= 1
        }
        guard end > start, let type = plaintext.getInteger(at: end - 1, as: UInt8.self) else {
            return .failure(.unexpectedMessage("a record that is all padding"))
        }
        plaintext.moveWriterIndex(to: end - 1)
        return .success((type, end - 1 - start))
    }

    private static func alertName(_ description: UInt8) -> String {
        switch description {
        case 10: return " (unexpected_message)"
        case 20: return " (bad_record_mac)"
        case 22: return " (record_overflow)"
        case 50: return " (decode_error)"
        case 80: return " (internal_error)"
        default: return ""
        }
    }
}

/// One batch's AEAD context, keyed once; each record only sets its nonce.
private final class AEADContext {
    let pointer: OpaquePointer

    init(keys: TLS13TrafficKeys, encrypting: Bool) throws(TLS13RecordLayer.Failure) {
        guard let pointer = EVP_CIPHER_CTX_new() else {
            throw .internalError("EVP_CIPHER_CTX_new: out of memory")
        }
        self.pointer = pointer
        let keyed = keys.key.withUnsafeBufferPointer { key in
            EVP_CipherInit_ex2(pointer, keys.suite.cipher, key.baseAddress, nil, encrypting ? 1 : 0, nil)
        }
        guard keyed == 1 else {
            throw .internalError(OpenSSLErrorQueue.drainedReason(or: "the AEAD could not be keyed"))
        }
    }

    deinit {
        EVP_CIPHER_CTX_free(pointer)
    }

    func start(nonce: [UInt8]) -> Bool {
        nonce.withUnsafeBufferPointer { EVP_CipherInit_ex2(pointer, nil, nil, $0.baseAddress, -1, nil) } == 1
    }

    func addAuthenticatedData(_ data: [UInt8]) -> Bool {
        var written: Int32 = 0
        return data.withUnsafeBufferPointer {
            EVP_CipherUpdate(pointer, nil, &written, $0.baseAddress, Int32($0.count))
        } == 1
    }
}
