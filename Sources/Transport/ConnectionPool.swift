import Logging
import NIOCore
import Resolver

/// The only place that opens outbound connections, with hard caps on how many exist.
///
/// Guarantees: never more than `maxConnections` open (idle ones included), never more
/// than `maxTLSHandshakes` connections being set up at once, at most one idle connection
/// kept per `connectionKey` (one TLS identity at one set of addresses). A request that
/// finds a cap reached waits in line (first come, first served); when it needs a slot held
/// by an idle connection of another destination, the least recently used idle connection
/// is closed to make room.
public actor ConnectionPool {
    /// The caps and timeouts, all from configuration.
    public struct Limits: Sendable {
        public var maxConnections: Int
        public var maxTLSHandshakes: Int
        public var connectTimeout: TimeAmount
        public var tlsHandshakeTimeout: TimeAmount
        public var idleTimeout: TimeAmount

        public init(maxConnections: Int, maxTLSHandshakes: Int, connectTimeout: TimeAmount,
                    tlsHandshakeTimeout: TimeAmount, idleTimeout: TimeAmount = .seconds(120)) {
            self.maxConnections = maxConnections
            self.maxTLSHandshakes = maxTLSHandshakes
            self.connectTimeout = connectTimeout
            self.tlsHandshakeTimeout = tlsHandshakeTimeout
            self.idleTimeout = idleTimeout
        }
    }

    /// A snapshot for metrics and tests.
    public struct Counts: Sendable, Equatable {
        public var open: Int
        public var idle: Int
        public var handshaking: Int
        public var waiting: Int
        public var peakOpen: Int
        public var peakHandshaking: Int
        public var handshakesCompleted: Int
    }

    /// A leased connection, and whether it had been kept idle (the peer may have closed it meanwhile).
    public struct Lease: Sendable {
        public var connection: HTTPClientConnection
        public var wasIdle: Bool
    }

    private struct IdleConnection {
        var connection: HTTPClientConnection
        var since: NIODeadline
    }

    private let limits: Limits
    private let tlsContext: TLSContext
    private let group: any EventLoopGroup
    private let logger: Logger

    private var open = 0
    private var handshaking = 0
    private var idle: [String: IdleConnection] = [:]
    private var slotWaiters: [CheckedContinuation<Void, Never>] = []
    private var handshakeWaiters: [CheckedContinuation<Void, Never>] = []
    private var peakOpen = 0
    private var peakHandshaking = 0
    private var handshakesCompleted = 0

    public init(limits: Limits, tlsContext: TLSContext, group: any EventLoopGroup, logger: Logger) {
        self.limits = limits
        self.tlsContext = tlsContext
        self.group = group
        self.logger = logger
    }

    /// How long an idle connection is kept.
    public nonisolated var idleTimeout: TimeAmount { limits.idleTimeout }

    public var counts: Counts {
        Counts(open: open, idle: idle.count, handshaking: handshaking,
               waiting: slotWaiters.count + handshakeWaiters.count,
               peakOpen: peakOpen, peakHandshaking: peakHandshaking, handshakesCompleted: handshakesCompleted)
    }

    /// A connection to `address`, reused when an idle one is kept (`reusingIdle` false asks
    /// for a fresh one), opened within the caps otherwise. Give it back with
    /// `release(_:for:)` once the response has been read.
    public func lease(for address: ResolvedFederationAddress, reusingIdle: Bool = true) async throws -> Lease {
        let key = address.connectionKey
        closeIdleConnections(idleSince: .now() - limits.idleTimeout)
        if let kept = idle.removeValue(forKey: key) {
            if kept.connection.isReusable, reusingIdle { return Lease(connection: kept.connection, wasIdle: true) }
            discard(kept.connection)
        }
        await acquireSlot()
        await acquireHandshakeTurn()
        defer { releaseHandshakeTurn() }
        do {
            let connection = try await connect(to: address)
            handshakesCompleted += 1
            return Lease(connection: connection, wasIdle: false)
        } catch {
            releaseSlot()
            throw error
        }
    }

    /// Takes a connection back: kept for reuse if its last exchange ended cleanly and no
    /// one waits for its slot, closed otherwise.
    public func release(_ connection: HTTPClientConnection, for address: ResolvedFederationAddress) {
        let key = address.connectionKey
        guard connection.isReusable, idle[key] == nil, slotWaiters.isEmpty else {
            discard(connection)
            return
        }
        idle[key] = IdleConnection(connection: connection, since: .now())
    }

    /// Closes idle connections unused since `idleSince` (all of them by default): the
    /// daemon calls this periodically with the idle timeout, and at shutdown.
    public func closeIdleConnections(idleSince cutoff: NIODeadline = .distantFuture) {
        for (key, kept) in idle where kept.since < cutoff || !kept.connection.isReusable {
            idle.removeValue(forKey: key)
            discard(kept.connection)
        }
    }

    /// Waits for a connection slot. Slots are handed over in arrival order: a waiter is
    /// resumed already owning the slot it waited for, so a newcomer cannot overtake it.
    private func acquireSlot() async {
        if open < limits.maxConnections {
            open += 1
            peakOpen = max(peakOpen, open)
            return
        }
        if let victim = idle.min(by: { $0.value.since < $1.value.since }) {
            idle.removeValue(forKey: victim.key)
            let connection = victim.value.connection
            Task { await connection.close() }
            return
        }
        await withCheckedContinuation { slotWaiters.append($0) }
    }

    private func releaseSlot() {
        if slotWaiters.isEmpty {
            open -= 1
        } else {
            slotWaiters.removeFirst().resume()
        }
    }

    private func acquireHandshakeTurn() async {
        if handshaking < limits.maxTLSHandshakes {
            handshaking += 1
            peakHandshaking = max(peakHandshaking, handshaking)
            return
        }
        await withCheckedContinuation { handshakeWaiters.append($0) }
    }

    private func releaseHandshakeTurn() {
        if handshakeWaiters.isEmpty {
            handshaking -= 1
        } else {
            handshakeWaiters.removeFirst().resume()
        }
    }

    private func discard(_ connection: HTTPClientConnection) {
        releaseSlot()
        Task { await connection.close() }
    }

    /// Tries each resolved address in order; the error of the last one is reported.
    private func connect(to address: ResolvedFederationAddress) async throws -> HTTPClientConnection {
        let peer: TLSPeer = switch address.certificateName {
        case .hostname(let name): .hostname(name)
        case .ipAddress(let ip): .ipAddress(ip)
        }
        var lastError: (any Error)?
        for endpoint in address.endpoints {
            do {
                let socketAddress = try SocketAddress(ipAddress: endpoint.ipAddress, port: endpoint.port)
                return try await HTTPClientConnection.connect(
                    to: socketAddress, peer: peer, tlsContext: tlsContext, on: group,
                    connectTimeout: limits.connectTimeout, handshakeTimeout: limits.tlsHandshakeTimeout)
            } catch {
                logger.debug("connection attempt failed", metadata: [
                    "destination": "\(address.destination)", "address": "\(endpoint)", "error": "\(error)",
                ])
                lastError = error
            }
        }
        throw lastError ?? ResolutionError.noAddresses(host: address.destination.description, reason: "no addresses to try")
    }
}
