import Glibc
import NIOCore

/// Orders destinations by liveliness, so that a dead or slow server never takes a
/// connection slot a healthy one is waiting for.
///
/// A pure value: it is told the outcome of each exchange and connection attempt together
/// with the time, and answers with a score; it reads no clock.
///
/// Ranking rule. Each host gets a score, an estimate of how long it holds a connection slot
/// for each exchange that succeeds; the lower score is served first, and equal scores keep
/// arrival order:
///
///     score        = latency ÷ successRatio
///     latency      = (Σ weighted latencies of successful exchanges + 500 ms) ÷ (S + 1)
///     successRatio = (S + 1) ÷ (S + 1 + F + 2·T)
///
/// S, F and T are the host's recent successes, failures and timeouts. Every outcome starts
/// with weight 1 and its weight halves every half-life (5 minutes), so the latency is an
/// exponentially weighted moving average over time and old trouble is forgiven. A failure
/// is a refused or reset connection, a TLS failure, a malformed answer or an HTTP 5xx; a
/// timeout (connect, handshake or response) counts twice, because it also held a slot for
/// the whole timeout. A host never seen, or not seen for a long time, scores 500 ms, so a
/// new destination ranks after hosts known to answer faster than that and before hosts
/// that are slower or failing. Both a dead host (failures pile up, the ratio drops towards
/// 0) and a slow one (the latency grows) end up behind every healthy one.
public struct HostRanker: Sendable {
    /// What happened on one exchange or connection attempt with a host.
    public enum Outcome: Sendable, Hashable {
        /// A complete answer arrived after `latency`.
        case success(latency: TimeAmount)
        /// The host refused, reset, failed TLS, answered malformed, or answered with a 5xx.
        case failure
        /// Connecting, the handshake or the response did not finish in time.
        case timeout
    }

    /// The constants of the ranking rule.
    public struct Parameters: Sendable, Equatable {
        /// How long until an outcome counts half as much.
        public var halfLife: TimeAmount
        /// The latency assumed for a host with no recent successes.
        public var neutralLatency: TimeAmount
        /// How many failures one timeout counts as.
        public var timeoutWeight: Double
        /// The most hosts remembered: past it the records updated longest ago are forgotten
        /// (they score as neutral again), so meeting many hosts costs memory once, not per host.
        public var maxHosts: Int

        public init(halfLife: TimeAmount = .minutes(5), neutralLatency: TimeAmount = .milliseconds(500),
                    timeoutWeight: Double = 2, maxHosts: Int = 4_096) {
            self.halfLife = halfLife
            self.neutralLatency = neutralLatency
            self.timeoutWeight = timeoutWeight
            self.maxHosts = max(1, maxHosts)
        }
    }

    /// The decayed counts of one host, as of `updated`.
    struct Record: Sendable, Equatable {
        var successes = 0.0
        var failures = 0.0
        var timeouts = 0.0
        /// Σ weight × latency in seconds, over successes.
        var latencySeconds = 0.0
        var updated: NIODeadline

        func decayed(to now: NIODeadline, halfLife: TimeAmount) -> Record {
            let elapsed = now - updated
            guard elapsed > .zero else { return self }
            let factor = exp2(-Double(elapsed.nanoseconds) / Double(halfLife.nanoseconds))
            return Record(successes: successes * factor, failures: failures * factor, timeouts: timeouts * factor,
                          latencySeconds: latencySeconds * factor, updated: now)
        }

        var weight: Double { successes + failures + timeouts }
    }

    public let parameters: Parameters
    private(set) var records: [String: Record] = [:]
    private var lastPruned: NIODeadline?

    public init(parameters: Parameters = Parameters()) {
        self.parameters = parameters
    }

    /// Records what happened with `host` at `now`.
    public mutating func record(_ outcome: Outcome, for host: String, at now: NIODeadline) {
        var record = records[host]?.decayed(to: now, halfLife: parameters.halfLife) ?? Record(updated: now)
        switch outcome {
        case .success(let latency):
            record.successes += 1
            record.latencySeconds += Double(max(latency, .zero).nanoseconds) / 1e9
        case .failure:
            record.failures += 1
        case .timeout:
            record.timeouts += 1
        }
        records[host] = record
        pruneForgottenHosts(at: now)
    }

    /// The host's score in seconds at `now`; lower is served first.
    public func score(of host: String, at now: NIODeadline) -> Double {
        let neutral = Double(parameters.neutralLatency.nanoseconds) / 1e9
        guard let record = records[host]?.decayed(to: now, halfLife: parameters.halfLife) else { return neutral }
        let latency = (record.latencySeconds + neutral) / (record.successes + 1)
        let successRatio = (record.successes + 1)
            / (record.successes + 1 + record.failures + parameters.timeoutWeight * record.timeouts)
        return latency / successRatio
    }

    /// How many hosts have outcomes recent enough to still count.
    public var trackedHosts: Int { records.count }

    /// Drops hosts whose outcomes have all decayed below 1/64 (six half-lives): their score
    /// is the neutral one again, and the table stays as small as the set of recent hosts.
    private mutating func pruneForgottenHosts(at now: NIODeadline) {
        let full = records.count > parameters.maxHosts
        if !full, let lastPruned, now - lastPruned < parameters.halfLife { return }
        lastPruned = now
        let halfLife = parameters.halfLife
        records = records.filter { $0.value.decayed(to: now, halfLife: halfLife).weight >= 1.0 / 64 }
        guard records.count > parameters.maxHosts else { return }
        // Down to three quarters, so that the sort is paid once per quarter of the bound.
        let kept = records.sorted { $0.value.updated > $1.value.updated }.prefix(parameters.maxHosts * 3 / 4)
        records = Dictionary(uniqueKeysWithValues: kept.map { ($0.key, $0.value) })
    }
}
