import NIOConcurrencyHelpers
import NIOCore

/// A clock for `WellKnownResolver`'s cache that moves only when a test advances it.
final class WellKnownTestClock: Sendable {
    private let current = NIOLockedValueBox(NIODeadline.uptimeNanoseconds(1_000_000_000_000))

    func now() -> NIODeadline {
        current.withLockedValue { $0 }
    }

    func advance(by amount: TimeAmount) {
        current.withLockedValue { $0 = $0 + amount }
    }
}
