import Glibc
import NIOConcurrencyHelpers
import SouthbridgeSwarm

/// A destination on loopback that is there in name only, like the servers of a real room
/// that went away: it never speaks TLS, so a sender learns of it only through its timeouts
/// or a refused connect.
public final class FaultyServer: Sendable {
    public enum Fault: String, Sendable {
        /// A host that drops every SYN, like a dead address or a firewall that drops: a socket
        /// that listens with a backlog of 0 and never accepts, its one queue slot taken by a
        /// connection of our own, so the kernel drops every later SYN and connects time out.
        case blackholed
        /// A server that accepts TCP and then never says a word: a socket that listens with a
        /// backlog of 0 and never accepts; the first connect completes at the TCP level and
        /// then hears nothing (later SYNs are dropped).
        case silent
        /// A free port with nothing listening: every connect is refused (`ECONNREFUSED`).
        case refusing
    }

    public let fault: Fault
    public let port: Int
    /// The sockets held until `stop`: the listener of a blackholed or silent server, and the
    /// blackholed server's own connection that fills its queue.
    private let fds: NIOLockedValueBox<[Int32]>

    /// The server name other servers use for it: `127.0.0.1:<port>`.
    public var serverName: String { "127.0.0.1:\(port)" }

    private init(fault: Fault, port: Int, fds: [Int32]) {
        self.fault = fault
        self.port = port
        self.fds = NIOLockedValueBox(fds)
    }

    /// Takes a free port on 127.0.0.1. Start refusing servers after every real listener, so
    /// no later `bind` to port 0 is handed the port they gave back.
    public static func start(_ fault: Fault) throws -> FaultyServer {
        let socket = try LoopbackSocket.bind(type: SOCK_STREAM)
        let (fd, port) = (socket.fd, socket.port)
        switch fault {
        case .blackholed, .silent:
            guard listen(fd, 0) == 0 else {
                let reason = String(cString: strerror(errno))
                close(fd)
                throw FileSupportError("cannot listen on 127.0.0.1:\(port): \(reason)")
            }
            guard fault == .blackholed else { return FaultyServer(fault: fault, port: port, fds: [fd]) }
            do {
                let filler = try fillAcceptQueue(of: LoopbackSocket.address(port: port))
                return FaultyServer(fault: fault, port: port, fds: [fd, filler])
            } catch {
                close(fd)
                throw error
            }
        case .refusing:
            close(fd)
            return FaultyServer(fault: fault, port: port, fds: [])
        }
    }

    /// Connects once to the listener at `address` and waits (at most a second) until the
    /// connection is established, so it holds the listener's only queue slot.
    private static func fillAcceptQueue(of address: sockaddr_in) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw FileSupportError("cannot create a TCP socket: \(String(cString: strerror(errno)))") }
        var target = address
        let started = withUnsafePointer(to: &target) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 || errno == EINPROGRESS
            }
        }
        var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        guard started, poll(&poller, 1, 1000) == 1, poller.revents & Int16(POLLOUT) != 0 else {
            close(fd)
            throw FileSupportError("cannot fill the accept queue of 127.0.0.1:\(UInt16(bigEndian: address.sin_port))")
        }
        return fd
    }

    /// Closes the sockets a blackholed or silent server holds.
    public func stop() {
        fds.withLockedValue { fds in
            for fd in fds { close(fd) }
            fds = []
        }
    }
}
