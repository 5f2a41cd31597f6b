import Glibc
import SouthbridgeSwarm

/// A socket bound to a port on 127.0.0.1 that the kernel chose (bind to port 0, read back):
/// how the test peers find free ports. The caller owns `fd`.
struct LoopbackSocket {
    let fd: Int32
    let port: Int

    /// `type` is `SOCK_STREAM` or `SOCK_DGRAM`; `port` 0 lets the kernel choose.
    static func bind(type: __socket_type, port: Int = 0) throws -> LoopbackSocket {
        let fd = socket(AF_INET, Int32(type.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw FileSupportError("cannot create a socket: \(String(cString: strerror(errno)))") }
        var address = Self.address(port: port)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard bound else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw FileSupportError("cannot bind \(port == 0 ? "a port" : "port \(port)") on 127.0.0.1: \(reason)")
        }
        return LoopbackSocket(fd: fd, port: Int(UInt16(bigEndian: address.sin_port)))
    }

    /// A port that was free a moment ago: bound, read back, released.
    static func freePort(type: __socket_type) throws -> Int {
        let socket = try bind(type: type)
        close(socket.fd)
        return socket.port
    }

    /// A port free a moment ago for both UDP and TCP, as a DNS server needs: a free UDP port
    /// says nothing of TCP's, which the many listeners of a swarm may hold.
    static func freeUDPAndTCPPort(attempts: Int = 50) throws -> Int {
        for _ in 0..<attempts {
            let udp = try bind(type: SOCK_DGRAM)
            defer { close(udp.fd) }
            guard let tcp = try? bind(type: SOCK_STREAM, port: udp.port) else { continue }
            close(tcp.fd)
            return udp.port
        }
        throw FileSupportError("no port on 127.0.0.1 was free for both UDP and TCP in \(attempts) attempts")
    }

    static func address(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return address
    }
}
