import NIOCore
import Outbox
import Resolver
import Sender

/// Asks each part that must never stall whether it still answers: every event loop,
/// the Outbox writer thread and the sender actor.
///
/// The watchdog pings systemd only after a probe passed, so a wedged loop or writer
/// stops the pings and systemd restarts the daemon.
public struct HealthProbe: Sendable {
    /// One part to ask, by name.
    public struct Check: Sendable {
        public var part: String
        public var answer: @Sendable () async throws -> Void

        public init(part: String, answer: @escaping @Sendable () async throws -> Void) {
            self.part = part
            self.answer = answer
        }
    }

    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var part: String
        public var description: String { "\(part) did not answer the health probe in time" }
    }

    private let checks: [Check]

    public init(checks: [Check]) {
        self.checks = checks
    }

    /// The daemon's probe: every event loop runs a task, the Outbox writer and the sender answer.
    public static func daemon(group: any EventLoopGroup, outbox: Outbox, sender: FederationSender) -> HealthProbe {
        HealthProbe(checks: eventLoopChecks(group) + [
            Check(part: "outbox writer") { try await outbox.probe() },
            Check(part: "sender") { await sender.probe() },
        ])
    }

    public static func eventLoopChecks(_ group: any EventLoopGroup) -> [Check] {
        group.makeIterator().enumerated().map { index, loop in
            Check(part: "event loop \(index)") { try await loop.submit {}.get() }
        }
    }

    /// Throws `Failure` naming the first part that did not answer within `timeout`.
    public func check(timeout: Duration) async throws(Failure) {
        for check in checks {
            let answered = await withDeadline(TimeAmount(timeout)) { (try? await check.answer()) != nil }
            guard answered == true else { throw Failure(part: check.part) }
        }
    }
}
