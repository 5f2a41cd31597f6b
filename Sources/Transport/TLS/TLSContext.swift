import COpenSSL

/// Shared OpenSSL configuration (`SSL_CTX`) from which `OpenSSLHandler` creates one session per connection.
///
/// A client context verifies every peer (`SSL_VERIFY_PEER`) against the system trust store or
/// a single CA file, speaks TLS 1.2 or newer, offers ALPN "http/1.1", and remembers the latest
/// session per peer in a bounded LRU store so that a reconnect can resume instead of paying
/// for a full handshake. A server context (used by tests and fake homeservers) presents one
/// certificate chain and selects "http/1.1". The configuration is fixed once the factory
/// returns, which is what makes sharing one context between event loops safe.
public final class TLSContext: @unchecked Sendable {
    enum Role {
        case client
        case server
    }

    let sslContext: OpaquePointer
    let role: Role
    /// Client sessions by peer; nil for server contexts.
    let sessionStore: TLSSessionStore?

    private init(sslContext: OpaquePointer, role: Role, sessionStore: TLSSessionStore?) {
        self.sslContext = sslContext
        self.role = role
        self.sessionStore = sessionStore
    }

    deinit {
        SSL_CTX_free(sslContext)
    }

    /// How many peers currently have a session ready to resume (always 0 for a server context).
    public var cachedSessionCount: Int {
        sessionStore?.count ?? 0
    }

    /// A client context that trusts the system's default CA paths, or only the CAs in `caFile` (PEM) when given.
    ///
    /// - Parameter sessionCacheCapacity: how many peers' sessions are kept for resumption; the
    ///   least recently used is dropped first.
    public static func client(caFile: String?, sessionCacheCapacity: Int = 256) throws(TLSError) -> TLSContext {
        precondition(sessionCacheCapacity > 0, "sessionCacheCapacity must be at least 1, got \(sessionCacheCapacity)")
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_client_method()) else {
            throw .setupFailed(operation: "SSL_CTX_new", reason: OpenSSLErrorQueue.drainedReason(or: "out of memory"))
        }
        let context = TLSContext(
            sslContext: ctx, role: .client, sessionStore: TLSSessionStore(capacity: sessionCacheCapacity))
        try context.applyVersions(minimum: .tls12, maximum: nil)
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        if let caFile {
            guard SSL_CTX_load_verify_file(ctx, caFile) == 1 else {
                throw .unreadableCAFile(
                    path: caFile, reason: OpenSSLErrorQueue.drainedReason(or: "no certificates found"))
            }
        } else {
            guard SSL_CTX_set_default_verify_paths(ctx) == 1 else {
                throw .setupFailed(
                    operation: "SSL_CTX_set_default_verify_paths",
                    reason: OpenSSLErrorQueue.drainedReason(or: "system trust store unavailable"))
            }
        }
        let alpnResult = alpnWireFormat.withUnsafeBufferPointer { protocols in
            SSL_CTX_set_alpn_protos(ctx, protocols.baseAddress, UInt32(protocols.count))
        }
        // SSL_CTX_set_alpn_protos is the one OpenSSL setter that returns 0 on success.
        guard alpnResult == 0 else {
            throw .setupFailed(
                operation: "SSL_CTX_set_alpn_protos", reason: OpenSSLErrorQueue.drainedReason(or: "rejected"))
        }
        // OpenSSL's own cache never serves client lookups; the store does, fed by the new-session
        // callback, which also sees TLS 1.3 tickets that arrive after the handshake.
        southbridge_SSL_CTX_set_session_cache_mode(ctx, Int(SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE))
        SSL_CTX_sess_set_new_cb(ctx, openSSLHandlerNewSessionCallback)
        // The application traffic secrets let an idle TLS 1.3 connection drop OpenSSL's object
        // and keep its record layer alone (see `OpenSSLHandler`).
        SSL_CTX_set_keylog_callback(ctx, openSSLHandlerKeylogCallback)
        SSL_CTX_set_msg_callback(ctx, openSSLHandlerMessageCallback)
        // Idle keep-alive connections then hold no record buffers, which matters with many peers on a small machine.
        southbridge_SSL_CTX_set_mode(ctx, Int(SSL_MODE_RELEASE_BUFFERS))
        return context
    }

    /// A server context presenting `certificateChainPEM` (leaf first, then intermediates) with `privateKeyPEM`.
    public static func server(
        certificateChainPEM: String,
        privateKeyPEM: String,
        minimumVersion: TLSVersion = .tls12,
        maximumVersion: TLSVersion? = nil
    ) throws(TLSError) -> TLSContext {
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_server_method()) else {
            throw .setupFailed(operation: "SSL_CTX_new", reason: OpenSSLErrorQueue.drainedReason(or: "out of memory"))
        }
        let context = TLSContext(sslContext: ctx, role: .server, sessionStore: nil)
        try context.applyVersions(minimum: minimumVersion, maximum: maximumVersion)
        try context.useCertificateChain(pem: certificateChainPEM)
        try context.usePrivateKey(pem: privateKeyPEM)
        let sessionIDContext: [UInt8] = Array("southbridge".utf8)
        _ = sessionIDContext.withUnsafeBufferPointer { bytes in
            SSL_CTX_set_session_id_context(ctx, bytes.baseAddress, UInt32(bytes.count))
        }
        SSL_CTX_set_alpn_select_cb(ctx, selectHTTP11, nil)
        return context
    }

    private func applyVersions(minimum: TLSVersion, maximum: TLSVersion?) throws(TLSError) {
        guard southbridge_SSL_CTX_set_min_proto_version(sslContext, minimum.openSSLValue) == 1 else {
            throw .setupFailed(
                operation: "SSL_CTX_set_min_proto_version(\(minimum))",
                reason: OpenSSLErrorQueue.drainedReason(or: "unsupported"))
        }
        if let maximum {
            guard southbridge_SSL_CTX_set_max_proto_version(sslContext, maximum.openSSLValue) == 1 else {
                throw .setupFailed(
                    operation: "SSL_CTX_set_max_proto_version(\(maximum))",
                    reason: OpenSSLErrorQueue.drainedReason(or: "unsupported"))
            }
        }
    }

    private func useCertificateChain(pem: String) throws(TLSError) {
        let ctx = sslContext
        try withMemoryBIO(containing: pem) { (bio) throws(TLSError) in
            guard let leaf = PEM_read_bio_X509(bio, nil, nil, nil) else {
                throw .invalidCertificateChain(
                    reason: OpenSSLErrorQueue.drainedReason(or: "no PEM certificate found"))
            }
            defer { X509_free(leaf) }
            guard SSL_CTX_use_certificate(ctx, leaf) == 1 else {
                throw .invalidCertificateChain(reason: OpenSSLErrorQueue.drainedReason(or: "leaf certificate refused"))
            }
            while let intermediate = PEM_read_bio_X509(bio, nil, nil, nil) {
                // On success the context owns the intermediate.
                guard southbridge_SSL_CTX_add_extra_chain_cert(ctx, intermediate) == 1 else {
                    X509_free(intermediate)
                    throw .invalidCertificateChain(
                        reason: OpenSSLErrorQueue.drainedReason(or: "intermediate certificate refused"))
                }
            }
            // The loop ends on PEM_R_NO_START_LINE at the end of the text, which is not an error.
            ERR_clear_error()
        }
    }

    private func usePrivateKey(pem: String) throws(TLSError) {
        let ctx = sslContext
        try withMemoryBIO(containing: pem) { (bio) throws(TLSError) in
            guard let key = PEM_read_bio_PrivateKey(bio, nil, nil, nil) else {
                throw .invalidPrivateKey(reason: OpenSSLErrorQueue.drainedReason(or: "no PEM private key found"))
            }
            defer { EVP_PKEY_free(key) }
            guard SSL_CTX_use_PrivateKey(ctx, key) == 1 else {
                throw .invalidPrivateKey(reason: OpenSSLErrorQueue.drainedReason(or: "key refused"))
            }
        }
        guard SSL_CTX_check_private_key(ctx) == 1 else {
            throw .invalidPrivateKey(
                reason: OpenSSLErrorQueue.drainedReason(or: "key does not match the certificate"))
        }
    }
}

/// ALPN protocol list in wire format: each name prefixed by its length.
private let alpnWireFormat: [UInt8] = [UInt8("http/1.1".utf8.count)] + Array("http/1.1".utf8)

/// Server-side ALPN selection: "http/1.1" if the client offers it; otherwise no ALPN, which
/// lets clients that offer nothing we know still talk HTTP/1.1.
private func selectHTTP11(
    _ ssl: OpaquePointer?,
    _ out: UnsafeMutablePointer<UnsafePointer<UInt8>?>?,
    _ outLength: UnsafeMutablePointer<UInt8>?,
    _ offered: UnsafePointer<UInt8>?,
    _ offeredLength: UInt32,
    _ argument: UnsafeMutableRawPointer?
) -> Int32 {
    guard let out, let outLength, let offered else { return SSL_TLSEXT_ERR_NOACK }
    let wanted = alpnWireFormat.dropFirst()
    var index = 0
    let total = Int(offeredLength)
    while index < total {
        let length = Int(offered[index])
        let start = index + 1
        guard start + length <= total else { break }
        if length == wanted.count, UnsafeBufferPointer(start: offered + start, count: length).elementsEqual(wanted) {
            // OpenSSL copies the selection before `offered` goes away.
            out.pointee = offered + start
            outLength.pointee = UInt8(length)
            return SSL_TLSEXT_ERR_OK
        }
        index = start + length
    }
    return SSL_TLSEXT_ERR_NOACK
}
