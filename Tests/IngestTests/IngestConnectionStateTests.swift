import NIOCore
import Testing

@testable import Ingest

/// The deadlines of one ingest connection, event by event, with the time given.
struct IngestConnectionStateTests {
    static let idle = TimeAmount.seconds(300)
    static let request = TimeAmount.seconds(30)
    static let start = NIODeadline.uptimeNanoseconds(1_000_000_000_000)

    private func connection() -> IngestConnectionState {
        IngestConnectionState(idleTimeout: Self.idle, requestTimeout: Self.request, now: Self.start)
    }

    private func at(_ seconds: Int64) -> NIODeadline {
        Self.start + .seconds(seconds)
    }

    @Test func anUnusedConnectionIsClosedQuietlyAfterTheIdleTimeout() {
        var state = connection()
        #expect(state.firstDeadline == at(300))
        // A timer that fires early is armed again for the deadline: the connection still ends at it.
        #expect(state.timerFired(now: at(299)) == .arm(at(300)))
        #expect(state.timerFired(now: at(300)) == .close)
        #expect(state.hasEnded)
    }

    @Test func aRequestHasTheRequestTimeoutFromItsFirstByte() {
        var state = connection()
        #expect(state.bytesReceived(now: at(10)) == .arm(at(40)))
        // More bytes, and the head, do not move the deadline: trickling buys no time.
        #expect(state.bytesReceived(now: at(20)) == IngestConnectionState.Action.none)
        #expect(state.headReceived(now: at(25)) == IngestConnectionState.Action.none)
        #expect(state.timerFired(now: at(40)) == .refuseSlowRequest)
    }

    @Test func aRequestStillInItsHeadIsClosedWithoutAnAnswer() {
        var state = connection()
        _ = state.bytesReceived(now: at(1))
        #expect(state.timerFired(now: at(31)) == .close)
    }

    @Test func noDeadlineRunsWhileTheAPIHandlesARequestThenTheIdleTimeoutAgain() {
        var state = connection()
        _ = state.bytesReceived(now: at(1))
        _ = state.headReceived(now: at(1))
        #expect(state.requestReceived() == .cancelTimer)
        #expect(state.timerFired(now: at(1000)) == IngestConnectionState.Action.none)
        #expect(state.mayKeepAlive)
        #expect(state.responded(keepAlive: true, now: at(1000)) == .arm(at(1300)))
    }

    @Test func aPipelinedRequestStartsItsTimeWhenTheOneBeforeIsAnswered() {
        var state = connection()
        _ = state.bytesReceived(now: at(1))
        _ = state.requestReceived()
        #expect(state.bytesReceived(now: at(2)) == IngestConnectionState.Action.none)
        #expect(state.responded(keepAlive: true, now: at(50)) == .arm(at(80)))
        #expect(state.timerFired(now: at(80)) == .close)
    }

    @Test func aClientThatClosesItsSideIsAnsweredThenDisconnected() {
        var state = connection()
        _ = state.bytesReceived(now: at(1))
        _ = state.requestReceived()
        #expect(state.clientClosedInput() == IngestConnectionState.Action.none)
        #expect(!state.mayKeepAlive)
        #expect(state.responded(keepAlive: false, now: at(2)) == .cancelTimer)
        #expect(state.hasEnded)

        var idle = connection()
        #expect(idle.clientClosedInput() == .close)
        var receiving = connection()
        _ = receiving.bytesReceived(now: at(1))
        #expect(receiving.clientClosedInput() == .close)
    }

    @Test func aStaleTimerOnlyArmsTheDeadlineThatApplies() {
        var state = connection()
        _ = state.bytesReceived(now: at(1))
        _ = state.requestReceived()
        _ = state.responded(keepAlive: true, now: at(5))
        // The timer armed for the request's deadline at 31 s fires after the idle one replaced it.
        #expect(state.timerFired(now: at(31)) == .arm(at(305)))
        #expect(state.timerFired(now: at(305)) == .close)
    }

    @Test func aMalformedRequestEndsTheConnection() {
        var state = connection()
        _ = state.bytesReceived(now: at(1))
        #expect(state.failed() == .cancelTimer)
        #expect(state.hasEnded && !state.mayKeepAlive)
        #expect(state.timerFired(now: at(100)) == IngestConnectionState.Action.none)
        #expect(state.bytesReceived(now: at(2)) == IngestConnectionState.Action.none)
        #expect(state.requestReceived() == IngestConnectionState.Action.none)
    }
}
