import NIOCore

/// The life of one ingest connection, with no I/O: which deadline applies, and when the
/// connection ends. `IngestHTTPHandler` reports what happened, with the time, and carries out
/// the action it gets back.
///
/// - Between requests a connection may wait `idleTimeout` for the first byte of the next
///   request; then it is closed quietly, as an unused keep-alive connection is.
/// - From that byte, the request's head and body must all arrive within `requestTimeout`. A
///   request whose head was read is then answered 408; one still in its head is closed, since
///   its sender is not a working HTTP client (a connection held open with partial headers).
/// - While the API handles a request no deadline runs: the answer waits for the outbox.
/// - When the client closes its side, a request being handled is still answered and the
///   connection closed after that; a connection with nothing to answer is closed at once.
struct IngestConnectionState {
    enum Action: Equatable {
        case none
        /// Make the connection's one timer fire at this deadline, replacing any other.
        case arm(NIODeadline)
        case cancelTimer
        /// Close the connection without an answer.
        case close
        /// Answer the request 408 (or with the refusal already known for it) and close.
        case refuseSlowRequest
    }

    private enum Phase: Equatable {
        case idle(deadline: NIODeadline)
        case receiving(deadline: NIODeadline, headReceived: Bool)
        case handling(nextRequestStarted: Bool)
        case closed
    }

    let idleTimeout: TimeAmount
    let requestTimeout: TimeAmount
    private var phase: Phase
    private var inputClosed = false

    init(idleTimeout: TimeAmount, requestTimeout: TimeAmount, now: NIODeadline) {
        self.idleTimeout = idleTimeout
        self.requestTimeout = requestTimeout
        phase = .idle(deadline: now + idleTimeout)
    }

    /// The deadline to arm when the connection opens.
    var firstDeadline: NIODeadline? {
        if case .idle(let deadline) = phase { return deadline }
        return nil
    }

    /// Whether the connection is closing: it answers nothing more.
    var hasEnded: Bool { phase == .closed }

    /// Whether the answer being written may leave the connection open for another request.
    var mayKeepAlive: Bool { !inputClosed && phase != .closed }

    /// Bytes arrived from the client.
    mutating func bytesReceived(now: NIODeadline) -> Action {
        switch phase {
        case .idle:
            let deadline = now + requestTimeout
            phase = .receiving(deadline: deadline, headReceived: false)
            return .arm(deadline)
        case .handling:
            // A pipelined request: its time starts once the current one is answered.
            phase = .handling(nextRequestStarted: true)
            return .none
        case .receiving, .closed:
            return .none
        }
    }

    /// The request's head was parsed.
    mutating func headReceived(now: NIODeadline) -> Action {
        switch phase {
        case .idle, .handling:
            let deadline = now + requestTimeout
            phase = .receiving(deadline: deadline, headReceived: true)
            return .arm(deadline)
        case .receiving(let deadline, _):
            phase = .receiving(deadline: deadline, headReceived: true)
            return .none
        case .closed:
            return .none
        }
    }

    /// The request arrived whole and goes to the API.
    mutating func requestReceived() -> Action {
        guard phase != .closed else { return .none }
        phase = .handling(nextRequestStarted: false)
        return .cancelTimer
    }

    /// The answer is being written; `keepAlive` says whether the connection stays open after it.
    mutating func responded(keepAlive: Bool, now: NIODeadline) -> Action {
        guard keepAlive, mayKeepAlive else {
            phase = .closed
            return .cancelTimer
        }
        if case .handling(nextRequestStarted: true) = phase {
            let deadline = now + requestTimeout
            phase = .receiving(deadline: deadline, headReceived: false)
            return .arm(deadline)
        }
        let deadline = now + idleTimeout
        phase = .idle(deadline: deadline)
        return .arm(deadline)
    }

    /// The request was malformed and is answered with an error; the connection closes after it.
    mutating func failed() -> Action {
        phase = .closed
        return .cancelTimer
    }

    /// The client closed its side of the connection.
    mutating func clientClosedInput() -> Action {
        inputClosed = true
        switch phase {
        case .handling, .closed:
            return .none
        case .idle, .receiving:
            phase = .closed
            return .close
        }
    }

    /// The timer fired; it may be one armed for a deadline since replaced.
    mutating func timerFired(now: NIODeadline) -> Action {
        switch phase {
        case .idle(let deadline) where deadline <= now:
            phase = .closed
            return .close
        case .receiving(let deadline, let headReceived) where deadline <= now:
            phase = .closed
            return headReceived ? .refuseSlowRequest : .close
        case .idle(let deadline), .receiving(let deadline, _):
            // Early for the deadline that applies now (a timer armed for an older one, or a
            // clock read a hair before it): the connection's timer must still end at it.
            return .arm(deadline)
        case .handling, .closed:
            return .none
        }
    }
}
