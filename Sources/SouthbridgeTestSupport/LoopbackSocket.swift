import Glibc
import SouthbridgeSwarm

/// A socket bound to a port on 127.0.0.1, by default one the kernel chose (bind to port 0, read back):
/// how the test peers find free ports. The caller owns `fd`.
public struct LoopbackSocket {
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

    /// A port that was free a moment ago, for a listener a test starts later (nginx, dnsmasq, a
    /// restarted daemon). It is picked below the kernel's ephemeral range: a port from that range
    /// can become the local port of any test's outgoing connection before the listener binds it.
    public static func freePort(type: __socket_type = SOCK_STREAM, attempts: Int = 100) throws -> Int {
        try pickPort(attempts: attempts) { port in
            guard let socket = try? bind(type: type, port: port) else { return false }
            close(socket.fd)
            return true
        }
    }

    /// A port free a moment ago for both UDP and TCP, as a DNS server needs: a free UDP port
    /// says nothing of TCP's, which the many listeners of a swarm may hold.
    static func freeUDPAndTCPPort(attempts: Int = 100) throws -> Int {
        try pickPort(attempts: attempts) { port in
            guard let udp = try? bind(type: SOCK_DGRAM, port: port) else { return false }
            defer { close(udp.fd) }
            guard let tcp = try? bind(type: SOCK_STREAM, port: port) else { return false }
            close(tcp.fd)
            return true
        }
    }

    private static func pickPort(attempts: Int, isFree: (Int) -> Bool) throws -> Int {
        let ports = portsTheKernelNeverPicks()
        for _ in 0..<attempts {
            let port = Int.random(in: ports)
            if isFree(port) { return port }
        }
        throw FileSupportError("no port in \(ports) on 127.0.0.1 was free in \(attempts) attempts")
    }

    /// From 10000 up to the start of `net.ipv4.ip_local_port_range` (32768 by default).
    private static func portsTheKernelNeverPicks() -> ClosedRange<Int> {
        let range = readFileText("/proc/sys/net/ipv4/ip_local_port_range")
        let low = range.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first.flatMap { Int($0) } ?? 32768
        return 10_000...max(10_100, low - 1)
    }

    static func address(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return address
    }
}
