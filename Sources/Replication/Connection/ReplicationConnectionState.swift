import Federation

/// One follower's connection as a state machine: lines, timer ticks and what was sent go in with the time, and
/// what to send, whom to tell and when to close come out. The handler only carries the actions out.
///
/// Guarantees:
/// - with a secret configured, nothing but `AUTH <secret>` is taken before it: any other line, or a wrong
///   secret (compared in constant time), gets `ERROR` and the connection is closed;
/// - every refused line gets one `ERROR` naming what was wrong; only a line over `ClientCommand.maxLineBytes`
///   also closes the connection;
/// - `PING` goes out whenever nothing was sent for `pingIntervalMS`; once the follower has sent a `PING`,
///   `pingTimeoutMS` without a line from it closes the connection with `ERROR ping timeout`.
struct ReplicationConnectionState {
    enum Action: Equatable {
        case send(ServerCommand)
        /// Send a `PING` with the wall-clock time.
        case sendPing
        /// Send `ERROR <text>`, then close; `reason` labels the disconnect in `/metrics`.
        case closeWithError(String, reason: String)
        case rename(String)
        case replicate(ReplicationStream, ReplicationToken)
        case remoteServerUp(String)
        /// Log what the follower reported.
        case logError(String)
    }

    private let secret: [UInt8]?
    let pingIntervalMS: Int64
    let pingTimeoutMS: Int64
    private(set) var isAuthenticated: Bool
    private var lastReceivedMS: Int64
    private var lastSentMS: Int64 = .min
    private var receivedPing = false
    private(set) var isClosing = false

    init(secret: [UInt8]?, pingIntervalMS: Int64, nowMS: Int64) {
        self.secret = secret
        self.pingIntervalMS = pingIntervalMS
        self.pingTimeoutMS = pingIntervalMS * 5
        self.isAuthenticated = secret == nil
        self.lastReceivedMS = nowMS
    }

    /// The greeting: `SERVER <name>` and a first `PING`, so the follower can time the server out.
    mutating func connected(serverName: String, nowMS: Int64) -> [Action] {
        [.send(.server(serverName)), .sendPing]
    }

    mutating func sent(nowMS: Int64) {
        lastSentMS = nowMS
    }

    mutating func lineReceived(_ bytes: some Collection<UInt8>, nowMS: Int64) -> [Action] {
        guard !isClosing else { return [] }
        let command: ClientCommand
        do throws(ReplicationProtocolError) {
            guard let parsed = try ClientCommand.parse(bytes) else { return [] }
            command = parsed
        } catch {
            guard isAuthenticated else { return close("AUTH required before any other command: \(error)", reason: "auth_failed") }
            lastReceivedMS = nowMS
            return [.send(.error(error.description))]
        }
        lastReceivedMS = nowMS
        if case .auth(let given) = command {
            guard let secret else { return [.send(.error("AUTH: no secret is configured; nothing to authenticate"))] }
            guard !isAuthenticated else { return [.send(.error("AUTH: already authenticated"))] }
            guard Self.constantTimeEqual(Array(given.utf8), secret) else { return close("AUTH: wrong secret", reason: "auth_failed") }
            isAuthenticated = true
            return []
        }
        guard isAuthenticated else { return close("AUTH required before \(command.commandName)", reason: "auth_failed") }
        switch command {
        case .name(let name): return [.rename(name)]
        case .ping:
            receivedPing = true
            return []
        case .replicate(let stream?, let token): return [.replicate(stream, token)]
        case .replicate(nil, let token): return ReplicationStream.allCases.map { .replicate($0, token) }
        case .remoteServerUp(let server):
            do {
                _ = try ServerName(server)
            } catch {
                return [.send(.error("REMOTE_SERVER_UP: \(error)"))]
            }
            return [.remoteServerUp(server)]
        case .error(let text): return [.logError(text)]
        case .auth: return []
        }
    }

    mutating func lineTooLong() -> [Action] {
        guard !isClosing else { return [] }
        return close(ReplicationProtocolError.lineTooLong(limit: ClientCommand.maxLineBytes).description, reason: "line_too_long")
    }

    /// Called every `pingIntervalMS`.
    mutating func timerFired(nowMS: Int64) -> [Action] {
        guard !isClosing else { return [] }
        if receivedPing, nowMS - lastReceivedMS > pingTimeoutMS { return close("ping timeout", reason: "ping_timeout") }
        if lastSentMS == .min || nowMS - lastSentMS >= pingIntervalMS { return [.sendPing] }
        return []
    }

    private mutating func close(_ text: String, reason: String) -> [Action] {
        isClosing = true
        return [.closeWithError(text, reason: reason)]
    }

    /// Compares every byte whatever the first difference, so the time taken says nothing about the secret.
    static func constantTimeEqual(_ given: [UInt8], _ secret: [UInt8]) -> Bool {
        var difference = UInt8(truncatingIfNeeded: given.count ^ secret.count)
        for index in 0..<secret.count {
            difference |= secret[index] ^ (index < given.count ? given[index] : 0)
        }
        return difference == 0
    }
}
