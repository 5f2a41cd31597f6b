import Testing
@testable import Replication

@Suite struct ReplicationConnectionStateTests {
    func lines(_ state: inout ReplicationConnectionState, _ text: String, at nowMS: Int64 = 0) -> [ReplicationConnectionState.Action] {
        state.lineReceived(Array(text.utf8), nowMS: nowMS)
    }

    @Test func greetsWithServerAndPing() {
        var state = ReplicationConnectionState(secret: nil, pingIntervalMS: 5_000, nowMS: 0)
        #expect(state.connected(serverName: "hs.example", nowMS: 0) == [.send(.server("hs.example")), .sendPing])
    }

    @Test func withASecretOnlyTheRightAuthLetsAFollowerIn() {
        var early = ReplicationConnectionState(secret: Array("s3cret".utf8), pingIntervalMS: 5_000, nowMS: 0)
        #expect(lines(&early, "PING 1") == [.closeWithError("AUTH required before PING", reason: "auth_failed")])
        #expect(lines(&early, "AUTH s3cret").isEmpty, "nothing is taken once closing")

        var wrong = ReplicationConnectionState(secret: Array("s3cret".utf8), pingIntervalMS: 5_000, nowMS: 0)
        #expect(lines(&wrong, "AUTH s3cre") == [.closeWithError("AUTH: wrong secret", reason: "auth_failed")])

        var right = ReplicationConnectionState(secret: Array("s3cret".utf8), pingIntervalMS: 5_000, nowMS: 0)
        #expect(lines(&right, "").isEmpty)
        #expect(lines(&right, "AUTH s3cret").isEmpty)
        #expect(right.isAuthenticated)
        #expect(lines(&right, "REPLICATE ALL NOW") == [.replicate(.federation, .now), .replicate(.destinations, .now)])
    }

    @Test(arguments: [("", "a", false), ("abc", "abc", true), ("abc", "abd", false), ("abc", "abcd", false), ("abcd", "abc", false)])
    func comparesSecretsWholly(given: String, secret: String, equal: Bool) {
        #expect(ReplicationConnectionState.constantTimeEqual(Array(given.utf8), Array(secret.utf8)) == equal)
    }

    @Test func pingsWhenIdleAndTimesOutOnlyAFollowerThatPinged() {
        var state = ReplicationConnectionState(secret: nil, pingIntervalMS: 5_000, nowMS: 0)
        state.sent(nowMS: 0)
        #expect(state.timerFired(nowMS: 4_999).isEmpty)
        #expect(state.timerFired(nowMS: 5_000) == [.sendPing])
        state.sent(nowMS: 5_000)
        // Silent for a minute without having pinged: still kept.
        #expect(state.timerFired(nowMS: 60_000) == [.sendPing])
        #expect(lines(&state, "PING 1", at: 60_000).isEmpty)
        state.sent(nowMS: 60_000)
        #expect(state.timerFired(nowMS: 85_000) == [.sendPing])
        #expect(state.timerFired(nowMS: 85_001) == [.closeWithError("ping timeout", reason: "ping_timeout")])
        #expect(state.timerFired(nowMS: 90_000).isEmpty)
    }

    @Test func refusedLinesKeepTheConnectionAndAnOverlongOneClosesIt() {
        var state = ReplicationConnectionState(secret: nil, pingIntervalMS: 5_000, nowMS: 0)
        #expect(lines(&state, "RDATA federation 1 {}") == [.send(.error("RDATA is sent by the server, not by a client"))])
        #expect(lines(&state, "REMOTE_SERVER_UP exa_mple.org") == [.send(.error(
            "REMOTE_SERVER_UP: \"exa_mple.org\" is not a valid server name: '_' is not allowed in a DNS name (letters, digits, '-' and '.' only)"))])
        #expect(lines(&state, "REMOTE_SERVER_UP example.org:8448") == [.remoteServerUp("example.org:8448")])
        #expect(state.lineTooLong() == [.closeWithError("Line length exceeded: longer than 16384 bytes", reason: "line_too_long")])
    }
}
