import Glibc
import SouthbridgeSwarm

/// A socket bound to a port on 127.0.0.1 that the kernel chose (bind to port 0, read back):
/// how the test peers find free ports. The caller owns `fd`.
struct LoopbackSocket {
    let fd: Int32
    let port: Int

    /// `type` is `SOCK_STREAM` or `SOCK_DGRAM`.
    static func bind(type: __socket_type) throws -> LoopbackSocket {
        let fd = socket(AF_INET, Int32(type.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw FileSupportError("cannot create a socket: \(String(cString: strerror(errno)))") }
        var address = Self.address(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard bound else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw FileSupportError("cannot bind a port on 127.0.0.1: \(reason)")
        }
        return LoopbackSocket(fd: fd, port: Int(UInt16(bigEndian: address.sin_port)))
    }

    /// A port that was free a moment ago: bound, read back, released.
    static func freePort(type: __socket_type) throws -> Int {
        let socket = try bind(type: type)
        close(socket.fd)
        return socket.port
    }

    static func address(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return address
    }
}
