import Logging
import NIOCore
import Resolver

/// The only place that opens outbound connections, with hard caps on how many exist.
///
/// Every decision (who gets a connection, when one is opened, kept, handed over or closed)
/// is made by `ConnectionPoolStateMachine`, which documents the guarantees: at most
/// `maxConnections` open, at most `maxTLSHandshakes` being opened, at most
/// `maxNewConnectionsPerSecond` new ones per second, one connection per `connectionKey`,
/// one request per connection at a time, waiters served by `RequestClass` then by
/// `HostRanker` score then in arrival order. This actor only carries out its actions: it
/// opens and closes sockets, resumes waiting leases and runs the one timer.
public actor ConnectionPool {
    /// A leased connection, and whether it carried a request before (the peer may have
    /// closed it while it sat idle).
    public struct Lease: Sendable {
        public var connection: HTTPClientConnection
        public var wasIdle: Bool
    }

    private typealias StateMachine = ConnectionPoolStateMachine

    private struct Waiter {
        let address: ResolvedFederationAddress
        let requestClass: RequestClass
        let continuation: CheckedContinuation<Lease, any Error>
    }

    private struct OpenConnection {
        let connection: HTTPClientConnection
        var exchanges = 0
        var leased = false
    }

    private let limits: Limits
    private let tlsContext: TLSContext
    private let group: any EventLoopGroup
    private let logger: Logger

    private var state: StateMachine
    private var nextRequestNumber = 0
    private var waiters: [StateMachine.RequestID: Waiter] = [:]
    /// The address to open for each key that has waiters, and how many wait for it.
    private var addresses: [String: (address: ResolvedFederationAddress, waiters: Int)] = [:]
    /// The TCP connect or TLS handshake running for a connection being opened.
    private var opening: [StateMachine.ConnectionID: Task<Void, Never>] = [:]
    /// Connections whose TCP is up, waiting for a handshake slot, with the name to verify.
    private var awaitingHandshake: [StateMachine.ConnectionID: (tcp: TCPConnection, address: ResolvedFederationAddress)] = [:]
    /// Connections the state machine closed while their connect or handshake ran: closed when that ends.
    private var closeWhenOpened: Set<StateMachine.ConnectionID> = []
    private var open: [StateMachine.ConnectionID: OpenConnection] = [:]
    private var connectionIDs: [ObjectIdentifier: StateMachine.ConnectionID] = [:]
    /// The error of a failed attempt, kept while the waiters it fails are resumed.
    private var connectErrors: [StateMachine.ConnectionID: any Error] = [:]
    private var timer: Task<Void, Never>?
    /// Where the pool's own tasks run: the sender's event loop in the daemon, so a connection's
    /// steps and the tasks waiting on them share one thread.
    private let taskExecutor: (any TaskExecutor)?

    public init(limits: Limits, tlsContext: TLSContext, group: any EventLoopGroup,
                taskExecutor: (any TaskExecutor)? = nil, logger: Logger) {
        self.limits = limits
        self.taskExecutor = taskExecutor
        self.tlsContext = tlsContext
        self.group = group
        self.logger = logger
        self.state = StateMachine(limits: limits)
    }

    /// How long an idle connection is kept.
    public nonisolated var idleTimeout: TimeAmount { limits.idleTimeout }

    public var counts: Counts {
        state.counts(at: .now())
    }

    /// A connection to `address`: the idle one kept for it (unless `reusingIdle` is false),
    /// or a new one opened within the caps, waiting until `deadline` (by default
    /// `limits.waitTimeout` from now). Give it back with `release(_:for:outcome:)` once the
    /// response has been read. Cancelling the calling task stops the wait.
    ///
    /// Throws the `HTTPClientError` of a failed connection attempt, `HTTPClientError.cancelled`,
    /// or `ConnectionPoolError.waitTimeout`.
    public func lease(for address: ResolvedFederationAddress, class requestClass: RequestClass = .pduTransaction,
                      reusingIdle: Bool = true, deadline: NIODeadline? = nil) async throws -> Lease {
        if Task.isCancelled { throw HTTPClientError.cancelled }
        let now = NIODeadline.now()
        let id = StateMachine.RequestID(nextRequestNumber)
        nextRequestNumber += 1
        let deadline = deadline ?? now + limits.waitTimeout
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                enqueue(Waiter(address: address, requestClass: requestClass, continuation: continuation), id: id,
                        deadline: deadline, reusingIdle: reusingIdle, now: now)
            }
        } onCancel: {
            Task(executorPreference: taskExecutor) { await self.cancel(id) }
        }
    }

    /// Not inlined into `lease`: whatever it would bring into that async function's frame,
    /// every waiting request would hold for as long as it waits.
    @inline(never)
    private func enqueue(_ waiter: Waiter, id: StateMachine.RequestID, deadline: NIODeadline, reusingIdle: Bool, now: NIODeadline) {
        let key = waiter.address.connectionKey
        waiters[id] = waiter
        addresses[key] = (waiter.address, (addresses[key]?.waiters ?? 0) + 1)
        run(state.request(id, key: key, class: waiter.requestClass, deadline: deadline, reusingIdle: reusingIdle, now: now))
    }

    /// Takes a connection back after its request. It is handed to the next request for the
    /// same destination, kept idle, or closed, as the state machine decides; a connection
    /// whose exchange did not end cleanly is always closed. `outcome` feeds the `HostRanker`.
    public func release(_ connection: HTTPClientConnection, for address: ResolvedFederationAddress,
                        outcome: HostRanker.Outcome? = nil) {
        guard let id = connectionIDs[ObjectIdentifier(connection)], open[id]?.leased == true else { return }
        open[id]?.leased = false
        run(state.connectionReleased(id, reusable: connection.isReusable, outcome: outcome, now: .now()))
    }

    /// Closes idle connections unused since `idleSince` (all of them by default). Idle
    /// connections also close on their own after the idle timeout; the daemon calls this at
    /// shutdown.
    public func closeIdleConnections(idleSince cutoff: NIODeadline = .distantFuture) {
        run(state.closeIdleConnections(idleSince: cutoff, now: .now()))
    }

    private func cancel(_ id: StateMachine.RequestID) {
        run(state.cancel(id, now: .now()))
    }

    private func timerFired() {
        run(state.timerFired(now: .now()))
    }

    private func tcpConnectFinished(_ id: StateMachine.ConnectionID, address: ResolvedFederationAddress,
                                    _ result: Result<TCPConnection, any Error>) {
        guard !closedWhileOpening(id, result.map { tcp in tcp.startClosing }) else { return }
        switch result {
        case .success(let tcp):
            awaitingHandshake[id] = (tcp, address)
            run(state.connectionTCPConnected(id, now: .now()))
        case .failure(let error):
            connectionFailed(id, error)
        }
    }

    private func handshakeFinished(_ id: StateMachine.ConnectionID, _ result: Result<HTTPClientConnection, any Error>) {
        guard !closedWhileOpening(id, result.map { connection in connection.startClosing }) else { return }
        switch result {
        case .success(let connection):
            open[id] = OpenConnection(connection: connection)
            connectionIDs[ObjectIdentifier(connection)] = id
            // Noticed as it happens, so no request has to look through every open connection.
            // A close the pool asked for is reported by `closeSocket`: no task for it.
            connection.closeFuture.whenComplete { [weak connection] _ in
                guard connection?.closeRequested != true else { return }
                Task(executorPreference: self.taskExecutor) { await self.connectionClosedByPeer(id) }
            }
            run(state.connectionEstablished(id, now: .now()))
        case .failure(let error):
            connectionFailed(id, error)
        }
    }

    /// Ends a connect or handshake step; when the state machine closed the connection while
    /// the step ran, closes what the step opened (`close`) and returns true.
    private func closedWhileOpening(_ id: StateMachine.ConnectionID,
                                    _ close: Result<() -> EventLoopFuture<Void>, any Error>) -> Bool {
        opening[id] = nil
        guard closeWhenOpened.remove(id) != nil else { return false }
        if case .success(let close) = close {
            closeSocket(id, close)
        } else {
            run(state.connectionClosed(id, now: .now()))
        }
        return true
    }

    private func handshakeProgressed(_ id: StateMachine.ConnectionID) {
        run(state.handshakeProgressed(id, now: .now()))
    }

    private func connectionFailed(_ id: StateMachine.ConnectionID, _ error: any Error) {
        connectErrors[id] = error
        let timedOut = switch error as? HTTPClientError {
        case .connectTimeout, .tlsHandshakeTimeout: true
        default: false
        }
        run(state.connectionFailed(id, timedOut: timedOut, now: .now()))
        connectErrors[id] = nil
    }

    /// Closes a socket the state machine has let go of and reports it closed once it is:
    /// until then it still counts against `maxConnections`. No task waits for the close: a
    /// fan-out evicting idle connections has hundreds of closes running at once.
    private func closeSocket(_ id: StateMachine.ConnectionID, _ startClosing: () -> EventLoopFuture<Void>) {
        startClosing().whenComplete { _ in
            Task(executorPreference: self.taskExecutor) { await self.socketClosed(id) }
        }
    }

    private func socketClosed(_ id: StateMachine.ConnectionID) {
        run(state.connectionClosed(id, now: .now()))
    }

    /// The peer closed a connection (or it failed) while it sat idle: its socket is free.
    /// A leased connection comes back through `release`, which sees it is not reusable.
    private func connectionClosedByPeer(_ id: StateMachine.ConnectionID) {
        guard let entry = open[id], !entry.leased else { return }
        open[id] = nil
        connectionIDs[ObjectIdentifier(entry.connection)] = nil
        run(state.connectionClosed(id, now: .now()))
    }

    private func run(_ actions: [StateMachine.Action]) {
        for action in actions {
            switch action {
            case .createConnection(let id, let key):
                guard let address = addresses[key]?.address else {
                    preconditionFailure("\(id) is to be opened for \(key), which no request waits for")
                }
                let (limits, group, logger) = (limits, group, logger)
                opening[id] = Task(executorPreference: taskExecutor) {
                    let result: Result<TCPConnection, any Error>
                    do {
                        result = .success(try await Self.openTCP(to: address, limits: limits, group: group, logger: logger))
                    } catch {
                        result = .failure(error)
                    }
                    await self.tcpConnectFinished(id, address: address, result)
                }
            case .startHandshake(let id):
                guard let (tcp, address) = awaitingHandshake.removeValue(forKey: id) else { continue }
                let (limits, tlsContext) = (limits, tlsContext)
                opening[id] = Task(executorPreference: taskExecutor) {
                    let result: Result<HTTPClientConnection, any Error>
                    do {
                        result = .success(try await HTTPClientConnection.handshake(
                            over: tcp, peer: address.tlsPeer, tlsContext: tlsContext, timeout: limits.tlsHandshakeTimeout,
                            onServerAnswer: { Task(executorPreference: self.taskExecutor) { await self.handshakeProgressed(id) } }))
                    } catch {
                        result = .failure(error)
                    }
                    await self.handshakeFinished(id, result)
                }
            case .executeOnConnection(let requestID, let connectionID):
                guard let waiter = takeWaiter(requestID), var entry = open[connectionID] else { continue }
                let wasUsed = entry.exchanges > 0
                entry.exchanges += 1
                entry.leased = true
                open[connectionID] = entry
                waiter.continuation.resume(returning: Lease(connection: entry.connection, wasIdle: wasUsed))
            case .closeConnection(let id):
                if let task = opening[id] {
                    closeWhenOpened.insert(id)
                    task.cancel()
                } else if let (tcp, _) = awaitingHandshake.removeValue(forKey: id) {
                    closeSocket(id, tcp.startClosing)
                } else if let entry = open.removeValue(forKey: id) {
                    connectionIDs[ObjectIdentifier(entry.connection)] = nil
                    closeSocket(id, entry.connection.startClosing)
                }
            case .failRequest(let requestID, let failure):
                guard let waiter = takeWaiter(requestID) else { continue }
                waiter.continuation.resume(throwing: error(for: failure, of: waiter))
            case .scheduleTimer(let deadline):
                timer?.cancel()
                timer = Task(executorPreference: taskExecutor) { [weak self] in
                    let delay = deadline - .now()
                    if delay > .zero {
                        do { try await Task.sleep(nanoseconds: UInt64(delay.nanoseconds)) } catch { return }
                    }
                    await self?.timerFired()
                }
            }
        }
    }

    private func takeWaiter(_ id: StateMachine.RequestID) -> Waiter? {
        guard let waiter = waiters.removeValue(forKey: id) else { return nil }
        let key = waiter.address.connectionKey
        if let entry = addresses[key], entry.waiters > 1 {
            addresses[key] = (entry.address, entry.waiters - 1)
        } else {
            addresses[key] = nil
        }
        return waiter
    }

    private func error(for failure: StateMachine.Failure, of waiter: Waiter) -> any Error {
        switch failure {
        case .connectFailed(let id):
            connectErrors[id] ?? HTTPClientError.connectionClosed(address: waiter.address.connectionKey)
        case .connectAbandoned(let after):
            ConnectionPoolError.connectAbandoned(destination: waiter.address.destination.description, after: after)
        case .waitTimedOut(let waited, let reason):
            ConnectionPoolError.waitTimeout(destination: waiter.address.destination.description,
                                            requestClass: waiter.requestClass, waited: waited, reason: reason)
        case .cancelled:
            HTTPClientError.cancelled
        }
    }

    /// Opens TCP to each resolved address in order until one answers; the error of the last
    /// one is reported.
    private static func openTCP(to address: ResolvedFederationAddress, limits: Limits, group: any EventLoopGroup,
                                logger: Logger) async throws -> TCPConnection {
        var lastError: (any Error)?
        for endpoint in address.endpoints {
            do {
                let socketAddress = try SocketAddress(ipAddress: endpoint.ipAddress, port: endpoint.port)
                return try await TCPConnection.open(to: socketAddress, on: group, timeout: limits.connectTimeout)
            } catch {
                if Task.isCancelled { throw error }
                logger.debug("connection attempt failed", metadata: [
                    "destination": "\(address.destination)", "address": "\(endpoint)", "error": "\(error)",
                ])
                lastError = error
            }
        }
        throw lastError ?? ResolutionError.noAddresses(host: address.destination.description, reason: "no addresses to try")
    }
}

extension ResolvedFederationAddress {
    /// The identity the server's certificate must prove.
    var tlsPeer: TLSPeer {
        switch certificateName {
        case .hostname(let name): .hostname(name)
        case .ipAddress(let ip): .ipAddress(ip)
        }
    }
}
