import COpenSSL
import Federation
import NIOCore

/// A SwiftNIO channel handler that runs TLS over the channel with the system OpenSSL.
///
/// Ciphertext travels between the channel and OpenSSL through two memory BIOs: bytes read
/// from the socket are written into one, records OpenSSL produces are drained from the other
/// into a single buffer per flush. Plaintext writes made before the handshake finishes are
/// held back and sent once the peer is verified; a `TLSHandshakeCompleted` user event marks
/// that moment. The handshake's last flight waits until the tasks already queued on the event
/// loop have run, so a request written meanwhile leaves in the same segment. A client verifies
/// the server's certificate against its `TLSContext`'s trust and the `TLSPeer` name or address;
/// any failure is fired as a `TLSError` and the channel is closed. Closing sends close_notify;
/// a close_notify from the peer is answered and closes the channel; a TCP close without one is
/// reported as `TLSError.uncleanShutdown`. The `SSL` object is freed as soon as the connection
/// is closed, by either side.
///
/// A TLS 1.3 client connection leaves OpenSSL once it is idle after its first answer: the `SSL`
/// is freed and `TLS13RecordLayer` carries on with the application traffic secrets OpenSSL
/// logged and the sequence numbers counted from the records each way. That is most of what an
/// idle keep-alive connection costs (BENCHMARKS.md, "Idle TLS connections"). A connection that
/// saw a KeyUpdate while OpenSSL held it, or whose last record was not application data (part
/// of a session ticket may sit inside OpenSSL), waits; TLS 1.2 connections stay with OpenSSL.
///
/// A client resuming a session with a server that answered TLS 1.2 when offered TLS 1.3 offers
/// TLS 1.2 alone: a TLS 1.3 offer carries an X25519 key share, generated for nothing when the
/// answer is TLS 1.2, and it is about half of the client's CPU in a resumed handshake (see
/// BENCHMARKS.md). The session's own handshake had TLS 1.3's downgrade protection, so this offers
/// nothing that server did not already choose. Only a session learned that way is offered like
/// this: when the server refuses it and a full TLS 1.2 handshake follows, the next connection
/// offers TLS 1.3 again, so a server that has since moved to TLS 1.3 gets it back.
public final class OpenSSLHandler: ChannelDuplexHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private enum State {
        case idle
        case handshaking
        case active
        case closed
    }

    private enum Mode {
        case client(TLSPeer)
        case server
    }

    private enum ReadOutcome {
        case needMoreInput
        case closeNotify
        case failed(TLSError)
    }

    private struct PendingWrite {
        var data: ByteBuffer
        var promise: EventLoopPromise<Void>?
    }

    /// The most room reserved for one `SSL_read`: one full TLS record of plaintext.
    private static let plaintextChunk = 16 * 1024
    /// The least room reserved for one `SSL_read`.
    private static let minimumPlaintextChunk = 512

    private let tlsContext: TLSContext
    private let mode: Mode
    private var ssl: OpaquePointer?
    /// Ciphertext from the network, read by OpenSSL; owned by `ssl`.
    private var networkInput: OpaquePointer
    /// Records produced by OpenSSL, to be sent; owned by `ssl`.
    private var networkOutput: OpaquePointer
    private var state: State = .idle
    private var pendingWrites = CircularBuffer<PendingWrite>(initialCapacity: 4)
    private var flushRequested = false
    /// Whether records wait in the output BIO for the send scheduled at the end of this loop tick.
    private var outputDeferred = false
    /// Whether this client offered TLS 1.2 alone, to resume a session from a TLS 1.2 server.
    private var offeredOnlyTLS12 = false
    /// TLS 1.3's application traffic secrets as OpenSSL's handshake logged them, kept until the
    /// connection moves to `recordLayer`.
    private var clientTrafficSecret: [UInt8]?
    private var serverTrafficSecret: [UInt8]?
    /// The records each way since the application keys took over: their sequence numbers.
    private var inboundRecords: TLSRecordCounter?
    private var outboundRecords: TLSRecordCounter?
    /// Whether OpenSSL has given any application data since the handshake; the server's session
    /// tickets come before its first answer, so by then OpenSSL has made its resumable sessions.
    private var receivedApplicationData = false
    /// Whether OpenSSL sent or received a KeyUpdate, which would make the logged secrets stale:
    /// such a connection stays with OpenSSL.
    private var keyUpdateSeen = false
    /// The inner content type of the last record OpenSSL opened: a handover waits until it is
    /// application data, since OpenSSL may hold part of a handshake message no call reports.
    private var lastOpenedRecordType: UInt8 = 0
    /// The record layer of an idle TLS 1.3 client connection once the `SSL` is freed.
    private var recordLayer: TLS13RecordLayer?
    /// How many records the record layer seals under one key (`TLS13RecordLayer.recordsPerKey`);
    /// tests lower it.
    var recordsPerKey: UInt64 = 1 << 24

    /// A client handler that verifies the server as `peer` with `clientContext`'s trust, resuming
    /// a cached session for that peer when there is one.
    public convenience init(clientContext: TLSContext, peer: TLSPeer) throws(TLSError) {
        precondition(clientContext.role == .client, "OpenSSLHandler(clientContext:) needs a TLSContext.client(...)")
        try self.init(context: clientContext, mode: .client(peer))
    }

    /// A server handler presenting `serverContext`'s certificate chain.
    public convenience init(serverContext: TLSContext) throws(TLSError) {
        precondition(serverContext.role == .server, "OpenSSLHandler(serverContext:) needs a TLSContext.server(...)")
        try self.init(context: serverContext, mode: .server)
    }

    private init(context: TLSContext, mode: Mode) throws(TLSError) {
        ERR_clear_error()
        guard let ssl = SSL_new(context.sslContext) else {
            throw .setupFailed(operation: "SSL_new", reason: OpenSSLErrorQueue.drainedReason(or: "out of memory"))
        }
        guard let input = BIO_new(BIO_s_mem()), let output = BIO_new(BIO_s_mem()) else {
            SSL_free(ssl)
            throw .setupFailed(operation: "BIO_new", reason: OpenSSLErrorQueue.drainedReason(or: "out of memory"))
        }
        SSL_set_bio(ssl, input, output)
        var offeredOnlyTLS12 = false
        do throws(TLSError) {
            switch mode {
            case .client(let peer):
                SSL_set_connect_state(ssl)
                try Self.configureVerification(of: ssl, for: peer)
                if let cached = context.sessionStore?.session(for: peer.sessionCacheKey) {
                    SSL_set_session(ssl, cached.session)
                    SSL_SESSION_free(cached.session)
                    if cached.serverLimitedToTLS12 {
                        offeredOnlyTLS12 = southbridge_SSL_set_max_proto_version(ssl, TLS1_2_VERSION) == 1
                    }
                }
            case .server:
                SSL_set_accept_state(ssl)
            }
        } catch {
            SSL_free(ssl)
            throw error
        }
        self.offeredOnlyTLS12 = offeredOnlyTLS12
        self.tlsContext = context
        self.mode = mode
        self.ssl = ssl
        self.networkInput = input
        self.networkOutput = output
        // Unretained: the handler owns the SSL, so it outlives every callback OpenSSL makes for it.
        SSL_set_ex_data(ssl, openSSLHandlerExDataIndex, Unmanaged.passUnretained(self).toOpaque())
    }

    deinit {
        if let ssl {
            SSL_free(ssl)
        }
        forgetTrafficSecrets()
    }

    private static func configureVerification(of ssl: OpaquePointer, for peer: TLSPeer) throws(TLSError) {
        switch peer {
        case .hostname(let name):
            guard !name.isEmpty, southbridge_SSL_set_tlsext_host_name(ssl, name) == 1 else {
                throw .invalidPeer(
                    peer: name, reason: OpenSSLErrorQueue.drainedReason(or: "not usable as a TLS server name"))
            }
            SSL_set_hostflags(ssl, UInt32(X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS))
            guard SSL_set1_host(ssl, name) == 1 else {
                throw .invalidPeer(peer: name, reason: OpenSSLErrorQueue.drainedReason(or: "not usable as a host name"))
            }
        case .ipAddress(let address):
            guard X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), address) == 1 else {
                ERR_clear_error()
                throw .invalidPeer(peer: address, reason: "not an IPv4 or IPv6 address")
            }
        }
    }

    private var peerName: String {
        switch mode {
        case .client(let peer): return peer.description
        case .server: return "client"
        }
    }

    /// Whether the connection runs on `TLS13RecordLayer`, its `SSL` freed.
    var usesOwnRecordLayer: Bool {
        recordLayer != nil
    }

    /// Called by OpenSSL (through the context's new-session callback) whenever the server hands
    /// out a resumable session, including TLS 1.3 tickets that arrive after the handshake.
    fileprivate func didReceiveSession(_ session: OpaquePointer, on ssl: OpaquePointer) {
        guard case .client(let peer) = mode else { return }
        // A TLS 1.2 answer says the server lacks TLS 1.3 only if TLS 1.3 was offered, or if this
        // resumes a session whose handshake offered it.
        let serverLimitedToTLS12 =
            SSL_SESSION_get_protocol_version(session) == TLS1_2_VERSION
            && (!offeredOnlyTLS12 || SSL_session_reused(ssl) == 1)
        tlsContext.sessionStore?.insert(session, for: peer.sessionCacheKey, serverLimitedToTLS12: serverLimitedToTLS12)
    }

    /// Called by OpenSSL (through the client context's keylog callback) with each secret the
    /// handshake derives, as an NSS key log line; the application traffic secrets are kept.
    fileprivate func didLogSecret(_ line: UnsafePointer<CChar>) {
        guard case .client = mode, !keyUpdateSeen else { return }
        // "LABEL <client random> <secret>", read in place: the line holds secrets and is not copied.
        let isClient = strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0
        guard isClient || strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) == 0,
            let secretHex = strrchr(line, Int32(UInt8(ascii: " "))).map({ $0 + 1 }),
            let secret = Self.bytes(fromHex: secretHex)
        else { return }
        if isClient {
            clientTrafficSecret = secret
        } else {
            serverTrafficSecret = secret
        }
    }

    /// Called by OpenSSL (through the client context's message callback) for a KeyUpdate either way.
    fileprivate func didSeeKeyUpdate() {
        keyUpdateSeen = true
        forgetTrafficSecrets()
        inboundRecords = nil
        outboundRecords = nil
    }

    /// Called by OpenSSL (through the client context's message callback) with the content type
    /// of each record it opens.
    fileprivate func didOpenRecord(ofType contentType: UInt8) {
        lastOpenedRecordType = contentType
    }

    /// The bytes of a NUL-terminated hex string of at most 64 bytes' worth (a SHA-384 secret is 48).
    private static func bytes(fromHex hex: UnsafePointer<CChar>) -> [UInt8]? {
        let digitCount = strlen(hex)
        guard digitCount > 0, digitCount % 2 == 0, digitCount <= 128 else { return nil }
        var bytes = [UInt8](repeating: 0, count: digitCount / 2)
        for index in bytes.indices {
            guard let high = UInt8(bitPattern: hex[2 * index]).hexDigitValue,
                let low = UInt8(bitPattern: hex[2 * index + 1]).hexDigitValue
            else {
                wipe(&bytes)
                return nil
            }
            bytes[index] = high << 4 | low
        }
        return bytes
    }

    private func forgetTrafficSecrets() {
        if clientTrafficSecret != nil { wipe(&clientTrafficSecret!) }
        if serverTrafficSecret != nil { wipe(&serverTrafficSecret!) }
        clientTrafficSecret = nil
        serverTrafficSecret = nil
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive {
            startHandshake(context: context)
        }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        state = .closed
        failPendingWrites(ChannelError.ioOnClosedChannel)
        freeSSL()
    }

    /// Frees the `SSL` (and the BIOs it owns) once the connection is closed: nothing is read or
    /// written after that, and the pipeline's teardown, which would free it otherwise, runs only
    /// after everything already queued on the event loop. Every use of `ssl` or the BIOs checks
    /// `state` or `ssl` first.
    private func freeSSL() {
        recordLayer = nil
        forgetTrafficSecrets()
        guard let ssl else { return }
        SSL_free(ssl)
        self.ssl = nil
    }

    public func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
        startHandshake(context: context)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        let previous = state
        state = .closed
        switch previous {
        case .handshaking:
            let error = TLSError.handshakeFailed(peer: peerName, reason: "the connection closed during the handshake")
            failPendingWrites(error)
            context.fireErrorCaught(error)
        case .active:
            let error = TLSError.uncleanShutdown(peer: peerName)
            failPendingWrites(error)
            context.fireErrorCaught(error)
        case .idle, .closed:
            failPendingWrites(ChannelError.ioOnClosedChannel)
        }
        freeSSL()
        context.fireChannelInactive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard state != .closed else { return }
        let ciphertext = unwrapInboundIn(data)
        if let recordLayer {
            receiveRecords(ciphertext, with: recordLayer, context: context)
            return
        }
        ciphertext.withUnsafeReadableBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = BIO_write(
                    networkInput, bytes.baseAddress! + offset, Int32(clamping: bytes.count - offset))
                // A memory BIO takes everything unless allocation fails.
                guard written > 0 else { break }
                inboundRecords?.consume(UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + Int(written)]))
                offset += Int(written)
            }
        }
        switch state {
        case .idle:
            startHandshake(context: context)
        case .handshaking:
            advanceHandshake(context: context)
        case .active:
            readPlaintext(context: context)
        case .closed:
            break
        }
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard state != .closed else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        pendingWrites.append(PendingWrite(data: unwrapOutboundIn(data), promise: promise))
    }

    public func flush(context: ChannelHandlerContext) {
        switch state {
        case .active:
            encryptPendingWrites(context: context)
        case .idle, .handshaking:
            flushRequested = true
        case .closed:
            break
        }
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        switch mode {
        case .input:
            context.close(mode: mode, promise: promise)
            return
        case .output:
            // Half-closing would need close_notify without ending reads; no caller needs that.
            promise?.fail(ChannelError.operationUnsupported)
            return
        case .all:
            break
        }
        let previous = state
        state = .closed
        failPendingWrites(ChannelError.ioOnClosedChannel)
        if previous == .active, let ssl {
            ERR_clear_error()
            // Sends close_notify without waiting for the peer's: the socket closes right after.
            SSL_shutdown(ssl)
            ERR_clear_error()
            sendNetworkOutput(context: context, promise: nil)
        } else if previous == .active, let recordLayer {
            sendAlert(0, with: recordLayer, context: context)
        }
        freeSSL()
        context.close(mode: mode, promise: promise)
    }

    private func startHandshake(context: ChannelHandlerContext) {
        guard state == .idle else { return }
        state = .handshaking
        advanceHandshake(context: context)
    }

    private func advanceHandshake(context: ChannelHandlerContext) {
        guard let ssl else { return }
        ERR_clear_error()
        let result = SSL_do_handshake(ssl)
        if result == 1 {
            state = .active
            startCountingRecords(ssl)
            // The handshake's last flight (the client's Finished) stays in the output BIO until
            // the tasks queued on this loop have run: a first request written meanwhile, by a
            // caller that runs on this loop and resumes from the event below, leaves with it in
            // one segment. Any earlier send takes it along.
            outputDeferred = BIO_ctrl_pending(networkOutput) > 0
            context.fireUserInboundEventTriggered(handshakeCompleted(ssl))
            guard state == .active else { return }
            if flushRequested {
                encryptPendingWrites(context: context)
            }
            // A failed write frees the `SSL`.
            guard state == .active, let ssl = self.ssl else { return }
            // Application data may have arrived in the same read as the last handshake message.
            if BIO_ctrl_pending(networkInput) > 0 || SSL_has_pending(ssl) == 1 {
                readPlaintext(context: context)
            }
            scheduleDeferredOutput(context: context)
            return
        }
        let sslError = SSL_get_error(ssl, result)
        if sslError == SSL_ERROR_WANT_READ || sslError == SSL_ERROR_WANT_WRITE {
            sendNetworkOutput(context: context, promise: nil)
            return
        }
        let failure = handshakeFailure(ssl: ssl, sslError: sslError)
        // The alert tells the peer why; send it before closing.
        sendNetworkOutput(context: context, promise: nil)
        fail(context: context, error: failure)
    }

    private func handshakeCompleted(_ ssl: OpaquePointer) -> TLSHandshakeCompleted {
        var selected: UnsafePointer<UInt8>?
        var selectedLength: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &selected, &selectedLength)
        let negotiatedProtocol = selected.map {
            String(decoding: UnsafeBufferPointer(start: $0, count: Int(selectedLength)), as: UTF8.self)
        }
        return TLSHandshakeCompleted(
            negotiatedProtocol: negotiatedProtocol,
            sessionReused: SSL_session_reused(ssl) == 1,
            protocolVersion: String(cString: SSL_get_version(ssl)))
    }

    private func handshakeFailure(ssl: OpaquePointer, sslError: Int32) -> TLSError {
        if case .client(let peer) = mode {
            // A peer that fails a handshake may be refusing the session we offered; start afresh next time.
            tlsContext.sessionStore?.removeSession(for: peer.sessionCacheKey)
            let verifyResult = SSL_get_verify_result(ssl)
            if verifyResult != X509_V_OK {
                ERR_clear_error()
                return .certificateVerificationFailed(
                    peer: peerName, reason: String(cString: X509_verify_cert_error_string(verifyResult)))
            }
        }
        let firstError = ERR_peek_error()
        var reason = OpenSSLErrorQueue.drainedReason(or: Self.describe(sslError))
        // OpenSSL's words for this ("tlsv1 alert protocol version") do not say what went wrong.
        if ERR_GET_LIB(firstError) == ERR_LIB_SSL,
            [SSL_R_TLSV1_ALERT_PROTOCOL_VERSION, SSL_R_UNSUPPORTED_PROTOCOL].contains(ERR_GET_REASON(firstError))
        {
            reason = "unsupported protocol version: the peer offers no TLS version this side accepts (\(reason))"
        }
        if offeredOnlyTLS12 {
            reason += "; TLS 1.2 alone was offered, to resume a TLS 1.2 session,"
                + " and the next connection offers TLS 1.3 too"
        }
        return .handshakeFailed(peer: peerName, reason: reason)
    }

    private func readPlaintext(context: ChannelHandlerContext) {
        guard let ssl else { return }
        // Sized by the ciphertext waiting (plaintext is never longer) and not kept between
        // reads: an idle keep-alive connection holds no plaintext buffer, where keeping one
        // record's worth cost 16 KiB per connection.
        let chunk = min(Self.plaintextChunk, max(Self.minimumPlaintextChunk, Int(BIO_ctrl_pending(networkInput))))
        var buffer = context.channel.allocator.buffer(capacity: chunk)
        var outcome = ReadOutcome.needMoreInput
        // A successful SSL_read queues no error, so one clearing serves the whole loop.
        ERR_clear_error()
        reading: while true {
            var result: Int32 = 0
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: chunk) { space in
                result = SSL_read(ssl, space.baseAddress, Int32(clamping: space.count))
                return result > 0 ? Int(result) : 0
            }
            if result > 0 {
                receivedApplicationData = true
                continue
            }
            let sslError = SSL_get_error(ssl, result)
            switch sslError {
            case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
                outcome = .needMoreInput
            case SSL_ERROR_ZERO_RETURN:
                outcome = .closeNotify
            default:
                outcome = .failed(
                    .protocolFailure(
                        peer: peerName, reason: OpenSSLErrorQueue.drainedReason(or: Self.describe(sslError))))
            }
            break reading
        }
        // Post-handshake messages (key updates, alerts) can leave records to send.
        if !outputDeferred, BIO_ctrl_pending(networkOutput) > 0 {
            sendNetworkOutput(context: context, promise: nil)
        }
        if buffer.readableBytes > 0 {
            context.fireChannelRead(wrapInboundOut(buffer))
        }
        switch outcome {
        case .needMoreInput:
            // The read may have led a handler further on to close the connection, freeing `ssl`.
            guard state == .active, let ssl = self.ssl else { return }
            if !moveToRecordLayer(ssl) {
                releaseIdleBuffers(ssl)
            }
        case .closeNotify:
            answerCloseNotify(context: context)
        case .failed(let error):
            fail(context: context, error: error)
        }
    }

    private func answerCloseNotify(context: ChannelHandlerContext) {
        guard state == .active else { return }
        state = .closed
        if let ssl {
            ERR_clear_error()
            SSL_shutdown(ssl)
            ERR_clear_error()
            sendNetworkOutput(context: context, promise: nil)
        } else if let recordLayer {
            sendAlert(0, with: recordLayer, context: context)
        }
        failPendingWrites(ChannelError.outputClosed)
        freeSSL()
        context.close(promise: nil)
    }

    private func encryptPendingWrites(context: ChannelHandlerContext) {
        flushRequested = false
        guard !pendingWrites.isEmpty, ssl != nil || recordLayer != nil else { return }
        // With the record layer, the records go straight into one buffer; OpenSSL's go to its BIO.
        var records: ByteBuffer? = recordLayer.map { _ in
            context.channel.allocator.buffer(capacity: pendingWrites.reduce(64) { $0 + $1.data.readableBytes + 32 })
        }
        // One promise completes when the coalesced ciphertext is written and cascades to the others.
        var combined: EventLoopPromise<Void>?
        while let write = pendingWrites.popFirst() {
            if let error = encrypt(write.data, into: &records) {
                write.promise?.fail(error)
                combined?.fail(error)
                fail(context: context, error: error)
                return
            }
            if let promise = write.promise {
                if let combined {
                    combined.futureResult.cascade(to: promise)
                } else {
                    combined = promise
                }
            }
        }
        if let records {
            context.writeAndFlush(wrapOutboundOut(records), promise: combined)
        } else {
            sendNetworkOutput(context: context, promise: combined)
        }
    }

    /// Encrypts `data` with the record layer into `records`, or with OpenSSL into its output BIO;
    /// returns why it could not.
    private func encrypt(_ data: ByteBuffer, into records: inout ByteBuffer?) -> TLSError? {
        if let recordLayer, records != nil {
            do {
                try recordLayer.sealApplicationData(data, into: &records!)
                return nil
            } catch {
                return .protocolFailure(peer: peerName, reason: error.reason)
            }
        }
        guard let ssl else { return .protocolFailure(peer: peerName, reason: "the connection is closed") }
        var data = data
        while data.readableBytes > 0 {
            ERR_clear_error()
            let written = data.withUnsafeReadableBytes { bytes in
                SSL_write(ssl, bytes.baseAddress, Int32(clamping: bytes.count))
            }
            guard written > 0 else {
                return .protocolFailure(
                    peer: peerName,
                    reason: OpenSSLErrorQueue.drainedReason(or: Self.describe(SSL_get_error(ssl, written))))
            }
            data.moveReaderIndex(forwardBy: Int(written))
        }
        return nil
    }

    /// Sends the deferred records once the tasks already queued on the loop have run, unless
    /// another send took them along first.
    private func scheduleDeferredOutput(context: ChannelHandlerContext) {
        guard outputDeferred else { return }
        context.eventLoop.assumeIsolated().execute {
            guard self.outputDeferred else { return }
            self.outputDeferred = false
            guard self.state == .active else { return }
            self.sendNetworkOutput(context: context, promise: nil)
        }
    }

    /// Moves every record OpenSSL has queued into one buffer and writes and flushes it.
    private func sendNetworkOutput(context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        outputDeferred = false
        // The BIOs went with the `SSL`.
        guard ssl != nil else {
            promise?.succeed()
            return
        }
        var pending = Int(BIO_ctrl_pending(networkOutput))
        guard pending > 0 else {
            promise?.succeed()
            return
        }
        var records = context.channel.allocator.buffer(capacity: pending)
        while pending > 0 {
            let read = records.writeWithUnsafeMutableBytes(minimumWritableBytes: pending) { space in
                Int(max(0, BIO_read(networkOutput, space.baseAddress, Int32(clamping: space.count))))
            }
            guard read > 0 else { break }
            pending = Int(BIO_ctrl_pending(networkOutput))
        }
        if outboundRecords != nil {
            records.withUnsafeReadableBytes { outboundRecords?.consume($0) }
        }
        context.writeAndFlush(wrapOutboundOut(records), promise: promise)
    }

    /// At the end of a TLS 1.3 client handshake: from here the records each way are protected
    /// with the application keys, numbered from 0. What the input holds beyond the handshake is
    /// the server's first such records; what the output holds is the handshake's last flight.
    private func startCountingRecords(_ ssl: OpaquePointer) {
        guard case .client = mode, SSL_version(ssl) == TLS1_3_VERSION, clientTrafficSecret != nil,
            serverTrafficSecret != nil
        else {
            forgetTrafficSecrets()
            return
        }
        var inbound = TLSRecordCounter()
        var unread: UnsafeMutablePointer<CChar>?
        let unreadCount = southbridge_BIO_get_mem_data(networkInput, &unread)
        if let unread, unreadCount > 0 {
            inbound.consume(UnsafeRawBufferPointer(start: unread, count: unreadCount))
        }
        inboundRecords = inbound
        outboundRecords = TLSRecordCounter(skippingFirst: Int(BIO_ctrl_pending(networkOutput)))
    }

    /// Frees the `SSL` of an idle TLS 1.3 client connection and carries on with `recordLayer`,
    /// when nothing is in flight inside OpenSSL: no partial record either way, no plaintext or
    /// records waiting, no key update pending, and the session tickets taken. OpenSSL's
    /// connection object and what its handshake left are most of an idle connection's cost
    /// (BENCHMARKS.md, "Idle TLS connections"); the record layer keeps the keys alone.
    private func moveToRecordLayer(_ ssl: OpaquePointer) -> Bool {
        guard receivedApplicationData, !keyUpdateSeen, lastOpenedRecordType == TLS13RecordLayer.ContentType.applicationData,
            SSL_in_init(ssl) == 0, SSL_get_read_ahead(ssl) == 0, let clientSecret = clientTrafficSecret,
            let serverSecret = serverTrafficSecret, let inbound = inboundRecords, inbound.isAtRecordBoundary,
            let outbound = outboundRecords, outbound.isAtRecordBoundary,
            pendingWrites.isEmpty, !outputDeferred, BIO_ctrl_pending(networkInput) == 0,
            BIO_ctrl_pending(networkOutput) == 0, SSL_has_pending(ssl) == 0,
            SSL_get_key_update_type(ssl) == SSL_KEY_UPDATE_NONE,
            let cipher = SSL_get_current_cipher(ssl),
            let suite = TLS13CipherSuite(protocolID: SSL_CIPHER_get_protocol_id(cipher))
        else { return false }
        var readKeys: TLS13TrafficKeys
        let writeKeys: TLS13TrafficKeys
        do {
            readKeys = try TLS13TrafficKeys(suite: suite, secret: serverSecret, sequenceNumber: inbound.completeRecords)
        } catch {
            return false
        }
        do {
            writeKeys = try TLS13TrafficKeys(
                suite: suite, secret: clientSecret, sequenceNumber: outbound.completeRecords)
        } catch {
            readKeys.wipe()
            return false
        }
        forgetTrafficSecrets()
        inboundRecords = nil
        outboundRecords = nil
        recordLayer = TLS13RecordLayer(readKeys: readKeys, writeKeys: writeKeys, recordsPerKey: recordsPerKey)
        // Freed without a shutdown, OpenSSL would mark the session unresumable; it stays resumable.
        SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN)
        SSL_free(ssl)
        self.ssl = nil
        return true
    }

    private func receiveRecords(_ ciphertext: ByteBuffer, with recordLayer: TLS13RecordLayer, context: ChannelHandlerContext)
    {
        let received = recordLayer.receive(ciphertext, allocator: context.channel.allocator)
        if let plaintext = received.applicationData, plaintext.readableBytes > 0 {
            context.fireChannelRead(wrapInboundOut(plaintext))
        }
        if let failure = received.failure {
            fail(context: context, error: .protocolFailure(peer: peerName, reason: failure.reason), alert: failure.alert)
        } else if received.closeNotify {
            answerCloseNotify(context: context)
        }
    }

    /// Sends an alert through the record layer (close_notify is 0), best effort: the connection closes after it.
    private func sendAlert(_ description: UInt8, with recordLayer: TLS13RecordLayer, context: ChannelHandlerContext) {
        var records = context.channel.allocator.buffer(capacity: 32)
        guard (try? recordLayer.sealAlert(description, into: &records)) != nil else { return }
        context.writeAndFlush(wrapOutboundOut(records), promise: nil)
    }

    /// Gives back what an idle keep-alive connection does not need: OpenSSL's record buffers
    /// (about 16 KiB, kept after the last read) and the memory BIOs' buffers, which keep the
    /// size of the largest flight or request they ever held. Nothing pending is dropped.
    private func releaseIdleBuffers(_ ssl: OpaquePointer) {
        _ = SSL_free_buffers(ssl)
        if BIO_ctrl_pending(networkInput) == 0, let fresh = BIO_new(BIO_s_mem()) {
            // Takes the new BIO and frees the old one.
            SSL_set0_rbio(ssl, fresh)
            networkInput = fresh
        }
        if !outputDeferred, BIO_ctrl_pending(networkOutput) == 0, let fresh = BIO_new(BIO_s_mem()) {
            SSL_set0_wbio(ssl, fresh)
            networkOutput = fresh
        }
    }

    /// Ends the connection with `error`; `alert` tells the peer why when the record layer runs it
    /// (OpenSSL sends its own).
    private func fail(context: ChannelHandlerContext, error: TLSError, alert: UInt8? = nil) {
        guard state != .closed else { return }
        state = .closed
        // Before the error goes on: a handler further on may close the channel when it sees it.
        if let recordLayer {
            if let alert {
                sendAlert(alert, with: recordLayer, context: context)
            }
            // As OpenSSL does for a connection that failed: its session is not offered again.
            if case .client(let peer) = mode {
                tlsContext.sessionStore?.removeSession(for: peer.sessionCacheKey)
            }
        }
        failPendingWrites(error)
        context.fireErrorCaught(error)
        freeSSL()
        context.close(promise: nil)
    }

    private func failPendingWrites(_ error: any Error) {
        flushRequested = false
        while let write = pendingWrites.popFirst() {
            write.promise?.fail(error)
        }
    }

    private static func describe(_ sslError: Int32) -> String {
        switch sslError {
        case SSL_ERROR_SYSCALL: return "the connection ended unexpectedly"
        case SSL_ERROR_ZERO_RETURN: return "the peer closed the TLS session"
        case SSL_ERROR_SSL: return "protocol error"
        default: return "OpenSSL error \(sslError)"
        }
    }
}

/// The ex_data slot of every `SSL` created by `OpenSSLHandler`, holding an unretained pointer to its handler.
let openSSLHandlerExDataIndex: Int32 = CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_SSL, 0, nil, nil, nil, nil)

/// `SSL_CTX_sess_set_new_cb` target: hands each new client session to the handler that owns the connection.
/// Returns 0, so OpenSSL keeps its own reference and the store takes one of its own.
func openSSLHandlerNewSessionCallback(_ ssl: OpaquePointer?, _ session: OpaquePointer?) -> Int32 {
    guard let ssl, let session, let handler = SSL_get_ex_data(ssl, openSSLHandlerExDataIndex) else { return 0 }
    Unmanaged<OpenSSLHandler>.fromOpaque(handler).takeUnretainedValue().didReceiveSession(session, on: ssl)
    return 0
}

/// `SSL_CTX_set_keylog_callback` target: hands each secret line to the handler that owns the connection.
func openSSLHandlerKeylogCallback(_ ssl: OpaquePointer?, _ line: UnsafePointer<CChar>?) {
    guard let ssl, let line, let handler = SSL_get_ex_data(ssl, openSSLHandlerExDataIndex) else { return }
    Unmanaged<OpenSSLHandler>.fromOpaque(handler).takeUnretainedValue().didLogSecret(line)
}

/// `SSL_CTX_set_msg_callback` target: tells the handler when a KeyUpdate passes either way, and
/// the content type of each TLS 1.3 record OpenSSL opens.
func openSSLHandlerMessageCallback(
    _ written: Int32, _ version: Int32, _ contentType: Int32, _ message: UnsafeRawPointer?, _ length: Int,
    _ ssl: OpaquePointer?, _ argument: UnsafeMutableRawPointer?
) {
    guard length > 0, let message, let ssl else { return }
    let opened = contentType == SSL3_RT_INNER_CONTENT_TYPE && written == 0
    let keyUpdate = contentType == SSL3_RT_HANDSHAKE && message.load(as: UInt8.self) == UInt8(SSL3_MT_KEY_UPDATE)
    guard opened || keyUpdate, let handler = SSL_get_ex_data(ssl, openSSLHandlerExDataIndex) else { return }
    let openSSLHandler = Unmanaged<OpenSSLHandler>.fromOpaque(handler).takeUnretainedValue()
    if opened {
        openSSLHandler.didOpenRecord(ofType: message.load(as: UInt8.self))
    } else {
        openSSLHandler.didSeeKeyUpdate()
    }
}
