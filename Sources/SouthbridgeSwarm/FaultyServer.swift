import Glibc
import NIOConcurrencyHelpers

/// A destination on loopback that is there in name only, like the servers of a real room
/// that went away: it never speaks TLS, so a sender learns of it only through its timeouts
/// or a refused connect.
public final class FaultyServer: Sendable {
    public enum Fault: String, Sendable {
        /// A socket that listens with a backlog of 0 and never accepts: the first connect
        /// completes at the TCP level and then hears nothing; later SYNs are dropped, so
        /// those connects time out.
        case blackholed
        /// A free port with nothing listening: every connect is refused (`ECONNREFUSED`).
        case refusing
    }

    public let fault: Fault
    public let port: Int
    /// The listening socket of a blackholed server until `stop`; -1 for a refusing one.
    private let fd: NIOLockedValueBox<Int32>

    /// The server name other servers use for it: `127.0.0.1:<port>`.
    public var serverName: String { "127.0.0.1:\(port)" }

    private init(fault: Fault, port: Int, fd: Int32) {
        self.fault = fault
        self.port = port
        self.fd = NIOLockedValueBox(fd)
    }

    /// Takes a free port on 127.0.0.1. Start refusing servers after every real listener, so
    /// no later `bind` to port 0 is handed the port they gave back.
    public static func start(_ fault: Fault) throws -> FaultyServer {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw FileSupportError("cannot create a TCP socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard bound else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw FileSupportError("cannot bind a port on 127.0.0.1: \(reason)")
        }
        let port = Int(UInt16(bigEndian: address.sin_port))
        switch fault {
        case .blackholed:
            guard listen(fd, 0) == 0 else {
                let reason = String(cString: strerror(errno))
                close(fd)
                throw FileSupportError("cannot listen on 127.0.0.1:\(port): \(reason)")
            }
            return FaultyServer(fault: fault, port: port, fd: fd)
        case .refusing:
            close(fd)
            return FaultyServer(fault: fault, port: port, fd: -1)
        }
    }

    /// Closes the listening socket of a blackholed server.
    public func stop() {
        fd.withLockedValue { fd in
            if fd >= 0 { close(fd) }
            fd = -1
        }
    }
}
