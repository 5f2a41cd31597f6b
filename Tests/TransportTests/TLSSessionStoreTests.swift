import COpenSSL
import Testing

@testable import Transport

/// The per-peer session cache: bounded, least recently used first out, reference counts balanced.
struct TLSSessionStoreTests {
    private func makeSession(timeout: Int = 300) -> OpaquePointer {
        let session = SSL_SESSION_new()!
        SSL_SESSION_set_protocol_version(session, TLS1_3_VERSION)
        SSL_SESSION_set_timeout(session, timeout)
        // Only a session with an ID or a ticket counts as resumable.
        let id: [UInt8] = (0..<32).map { _ in UInt8.random(in: 0...255) }
        SSL_SESSION_set1_id(session, id, UInt32(id.count))
        return session
    }

    @Test func evictsTheLeastRecentlyUsedPeer() throws {
        let store = TLSSessionStore(capacity: 2)
        let sessions = (0..<3).map { _ in makeSession() }
        defer { sessions.forEach { SSL_SESSION_free($0) } }
        store.insert(sessions[0], for: "dns:a.example")
        store.insert(sessions[1], for: "dns:b.example")
        let touched = store.session(for: "dns:a.example")
        #expect(touched?.session == sessions[0])
        touched.map { SSL_SESSION_free($0.session) }
        store.insert(sessions[2], for: "dns:c.example")
        #expect(store.count == 2)
        #expect(store.session(for: "dns:b.example") == nil)
        for key in ["dns:a.example", "dns:c.example"] {
            let found = store.session(for: key)
            #expect(found != nil, "\(key)")
            found.map { SSL_SESSION_free($0.session) }
        }
    }

    @Test func replacingAPeersSessionKeepsOnePerPeer() {
        let store = TLSSessionStore(capacity: 4)
        let older = makeSession()
        let newer = makeSession()
        defer {
            SSL_SESSION_free(older)
            SSL_SESSION_free(newer)
        }
        store.insert(older, for: "ip:127.0.0.1")
        store.insert(newer, for: "ip:127.0.0.1")
        #expect(store.count == 1)
        let found = store.session(for: "ip:127.0.0.1")
        #expect(found?.session == newer)
        found.map { SSL_SESSION_free($0.session) }
        store.removeSession(for: "ip:127.0.0.1")
        #expect(store.count == 0)
    }

    @Test func aSessionKeepsWhatItSaysOfTheServersVersions() {
        let store = TLSSessionStore(capacity: 4)
        let sessions = (0..<2).map { _ in makeSession() }
        defer { sessions.forEach { SSL_SESSION_free($0) } }
        store.insert(sessions[0], for: "dns:old.example", serverLimitedToTLS12: true)
        store.insert(sessions[1], for: "dns:new.example")
        for (key, limited) in [("dns:old.example", true), ("dns:new.example", false)] {
            let found = store.session(for: key)
            #expect(found?.serverLimitedToTLS12 == limited, "\(key)")
            found.map { SSL_SESSION_free($0.session) }
        }
    }

    @Test func expiredSessionsAreDropped() {
        let store = TLSSessionStore(capacity: 4)
        let session = makeSession(timeout: 10)
        defer { SSL_SESSION_free(session) }
        store.insert(session, for: "dns:a.example")
        let created = Int(SSL_SESSION_get_time(session))
        #expect(store.session(for: "dns:a.example", now: created + 11) == nil)
        #expect(store.count == 0)
    }
}
