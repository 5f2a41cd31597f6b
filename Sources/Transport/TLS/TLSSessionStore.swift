import COpenSSL
import Glibc
import Synchronization

/// A bounded, thread-safe cache of client TLS sessions, one per peer, evicting the least recently used.
///
/// The store owns one reference to every `SSL_SESSION` it holds and releases it on replacement,
/// eviction or deinit. `session(for:)` hands out a reference of the caller's own, so a session
/// evicted by another thread meanwhile stays valid until the caller frees it.
final class TLSSessionStore: Sendable {
    /// A session to offer, as a reference the caller must release with `SSL_SESSION_free`.
    struct CachedSession {
        var session: OpaquePointer
        /// Whether the server answered TLS 1.2 to a ClientHello that offered TLS 1.3 (see
        /// `OpenSSLHandler`): resuming the session then needs no TLS 1.3 offer.
        var serverLimitedToTLS12: Bool
    }

    /// An owned `SSL_SESSION` reference; OpenSSL sessions are reference counted and safe to share between threads.
    private struct SessionReference: @unchecked Sendable {
        var session: OpaquePointer
    }

    private struct Entry {
        var reference: SessionReference
        var serverLimitedToTLS12: Bool
        var lastUse: UInt64
    }

    private struct Storage {
        var entries: [String: Entry] = [:]
        var useCounter: UInt64 = 0

        mutating func nextUse() -> UInt64 {
            useCounter &+= 1
            return useCounter
        }
    }

    let capacity: Int
    private let storage = Mutex(Storage())

    init(capacity: Int) {
        precondition(capacity > 0, "a TLS session store needs room for at least one session")
        self.capacity = capacity
    }

    deinit {
        storage.withLock { storage in
            for entry in storage.entries.values {
                SSL_SESSION_free(entry.reference.session)
            }
            storage.entries.removeAll()
        }
    }

    var count: Int {
        storage.withLock { $0.entries.count }
    }

    /// Keeps `session` for `key`, taking a reference of its own; the caller's reference is untouched.
    func insert(_ session: OpaquePointer, for key: String, serverLimitedToTLS12: Bool = false) {
        SSL_SESSION_up_ref(session)
        let entry = Entry(
            reference: SessionReference(session: session), serverLimitedToTLS12: serverLimitedToTLS12, lastUse: 0)
        let released: SessionReference? = storage.withLock { storage in
            var entry = entry
            entry.lastUse = storage.nextUse()
            if let previous = storage.entries.updateValue(entry, forKey: key) {
                return previous.reference
            }
            guard storage.entries.count > capacity,
                let oldest = storage.entries.min(by: { $0.value.lastUse < $1.value.lastUse })
            else { return nil }
            storage.entries.removeValue(forKey: oldest.key)
            return oldest.value.reference
        }
        if let released {
            SSL_SESSION_free(released.session)
        }
    }

    /// A resumable, unexpired session for `key`; expired or unresumable entries are dropped on the way.
    func session(for key: String, now: Int = Int(time(nil))) -> CachedSession? {
        let (found, expired): (CachedSession?, SessionReference?) = storage.withLock { storage in
            guard let entry = storage.entries[key] else { return (nil, nil) }
            let session = entry.reference.session
            let expiry = Int(SSL_SESSION_get_time(session)) + Int(SSL_SESSION_get_timeout(session))
            guard SSL_SESSION_is_resumable(session) == 1, now < expiry else {
                storage.entries.removeValue(forKey: key)
                return (nil, entry.reference)
            }
            let use = storage.nextUse()
            storage.entries[key]?.lastUse = use
            SSL_SESSION_up_ref(session)
            return (CachedSession(session: session, serverLimitedToTLS12: entry.serverLimitedToTLS12), nil)
        }
        if let expired {
            SSL_SESSION_free(expired.session)
        }
        return found
    }

    /// Forgets the session for `key`, if any.
    func removeSession(for key: String) {
        let removed = storage.withLock { $0.entries.removeValue(forKey: key)?.reference }
        if let removed {
            SSL_SESSION_free(removed.session)
        }
    }
}
