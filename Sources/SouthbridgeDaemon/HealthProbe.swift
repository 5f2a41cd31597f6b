import NIOConcurrencyHelpers
import NIOCore
import Outbox
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
            guard await answersWithin(timeout, check.answer) else { throw Failure(part: check.part) }
        }
    }
}

/// Whether `operation` finished within `timeout`. A stuck operation is left behind rather
/// than awaited, so the caller always gets an answer in time.
func answersWithin(_ timeout: Duration, _ operation: @escaping @Sendable () async throws -> Void) async -> Bool {
    let race = FirstAnswer()
    return await withCheckedContinuation { continuation in
        race.install(continuation)
        Task { race.answer((try? await operation()) != nil) }
        Task {
            try? await Task.sleep(for: timeout)
            race.answer(false)
        }
    }
}

/// Resumes a continuation once, with whichever answer comes first.
private final class FirstAnswer: @unchecked Sendable {
    private let lock = NIOLock()
    private var continuation: CheckedContinuation<Bool, Never>?
    private var early: Bool?

    func install(_ continuation: CheckedContinuation<Bool, Never>) {
        lock.withLock {
            if let value = early { continuation.resume(returning: value) } else { self.continuation = continuation }
        }
    }

    func answer(_ value: Bool) {
        lock.withLock {
            if let continuation {
                continuation.resume(returning: value)
                self.continuation = nil
                early = value
            } else if early == nil {
                early = value
            }
        }
    }
}
